// Time sync: a page that fell behind catches up, a faster clock is paced back (or WAITs when the
// page ignores the pacing hint); a pause between episodes or a network outage causes no WAITs.
#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

// ================================================================================ 9. time sync

TEST_CASE("time sync: a page frozen for 10 frames mid-episode catches up; nobody is left behind", "[engine]") {
  // The episode's start barrier makes the peers start together, so a lead comes from a hiccup:
  // peer 0's frame loop does not run for 10 frames (a long GC pause, a busy tab) at frame 100.
  LinkProfile link{20, 4, 0, 0, 0, 20};
  Session w(SessionOptions::over(2, "", link, 11));
  w.runFrames(100);
  w.pausedUntil[0] = w.now + 10 * kFrameMs;
  while (w.now < w.pausedUntil[0]) w.tick();
  const int64_t gap = w.peers[1]->engine->frame() - w.peers[0]->engine->frame();
  CHECK(gap >= 7);  // peer 1 ran on (within the prediction limit)
  std::vector<int64_t> diffs;
  size_t mostFrames0 = 0;  // the most new frames peer 0 ran in one advance (catch-up)
  w.afterStep = [&](size_t i) {
    diffs.push_back(w.peers[1]->engine->frame() - w.peers[0]->engine->frame());
    if (i == 0) mostFrames0 = std::max(mostFrames0, w.peers[0]->plan.advances(false).size());
  };
  const uint64_t waits1 = w.peers[1]->waits;
  w.runFrames(w.minFrame() + 600);
  // The peer behind catches up (several frames per advance): the one ahead hardly WAITs.
  CHECK(w.peers[0]->waits == 0);
  CHECK(mostFrames0 >= 2);
  CHECK(w.peers[1]->waits - waits1 <= 4);
  // within a second the counters are together again, and stay so
  size_t together = diffs.size();
  for (size_t k = 0; k < diffs.size(); ++k)
    if (std::abs(diffs[k]) <= 2) {
      together = k;
      break;
    }
  CHECK(together < 60);  // steps of both peers: 30 frames each
  int64_t worstLate = 0;
  for (size_t k = diffs.size() / 2; k < diffs.size(); ++k) worstLate = std::max(worstLate, std::abs(diffs[k]));
  CHECK(worstLate <= 2);
  CHECK(w.events("desync") == 0);
}

TEST_CASE("time sync: a peer whose clock runs 5% faster is paced back; without pacing it WAITs", "[engine]") {
  for (bool pacing : {true, false}) {
    CAPTURE(pacing);
    LinkProfile link{20, 4, 0, 0, 0, 20};
    Session w(SessionOptions::over(2, "", link, 12));
    w.pacing = pacing;
    w.period[1] = 1000.0 / 31.5;  // 5% faster
    std::vector<int64_t> diffs;
    double stretch[2] = {0, 0};
    uint64_t stretched[2] = {0, 0};
    w.afterStep = [&](size_t i) {
      diffs.push_back(w.peers[1]->engine->frame() - w.peers[0]->engine->frame());
      if (diffs.size() > 600) {
        stretch[i] += w.peers[i]->pacingMs;
        ++stretched[i];
      }
    };
    w.runFrames(1800);
    int64_t worstLate = 0;
    for (size_t i = diffs.size() / 4; i < diffs.size(); ++i) worstLate = std::max(worstLate, std::abs(diffs[i]));
    CHECK(w.peers[1]->stalls == 0);
    CHECK(w.events("desync") == 0);
    CHECK(w.peers[0]->waits <= 2);
    if (pacing) {
      // The faster page's frames are stretched and the slower page's shrunk, by about the 5% the
      // one clock gains on the other (1.6 ms of 31.7) together: the counters stay together with
      // hardly a WAIT.
      const double mean1 = stretch[1] / static_cast<double>(stretched[1]);
      const double mean0 = stretch[0] / static_cast<double>(stretched[0]);
      CHECK(mean1 > 0.3);
      CHECK(mean0 < -0.3);
      CHECK(mean1 - mean0 > 1.2);
      CHECK(mean1 - mean0 < 2.0);
      CHECK(w.peers[1]->waits <= 6);
      CHECK(worstLate <= 2);
    } else {
      // A page that ignores the pacing hint: the whole-frame WAITs keep it with the other.
      const uint64_t extraTicks = w.peers[1]->runs + w.peers[1]->waits + w.peers[1]->stalls -
                                  (w.peers[0]->runs + w.peers[0]->waits + w.peers[0]->stalls);
      CHECK(extraTicks > 60);  // it really ran faster
      CHECK(w.peers[1]->waits >= 60);
      CHECK(worstLate <= 4);
    }
  }
}

TEST_CASE("time sync: a pause between episodes does not make anyone WAIT in the next one", "[engine]") {
  for (uint64_t seed = 13; seed < 19; ++seed) {
  CAPTURE(seed);
  LinkProfile link{20, 4, 0, 0, 0, 20};
  Session w(SessionOptions::over(2, "", link, seed));
  const Frame E = 299;
  for (auto& n : w.peers) n->game.endAtFrame = E;
  std::vector<bool> seen(2, false);
  bool reset = false;
  std::vector<uint64_t> waitsAtReset(2, 0);
  w.afterStep = [&](size_t i) {
    Peer& n = w[static_cast<int>(i)];
    if (!seen[i] && std::any_of(n.events.begin(), n.events.end(), [](const json& j) { return j["type"] == "episodeEnd"; }))
      seen[i] = true;
    if (!reset && seen[0] && seen[1]) {
      // both pages show a between-episode screen for 3 s (no advance), then start the next episode
      reset = true;
      for (size_t k = 0; k < 2; ++k) {
        REQUIRE(w.peers[k]->engine->resetEpisode(-1) == "");
        w.peers[k]->resetGame();
        w.peers[k]->game.endAtFrame = -1;  // episode 1 does not end
        w.pausedUntil[k] = w.now + 3000;
        waitsAtReset[k] = w.peers[k]->waits;
      }
    }
  };
  for (uint64_t t = 0; t < 1000000 && !reset; ++t) w.tick();
  REQUIRE(reset);
  CHECK(waitsAtReset[0] + waitsAtReset[1] == 0);
  const Frame start1 = w.peers[0]->engine->episodeStart();
  w.runFrames(start1 + 600);
  CHECK(w.peers[0]->waits == 0);
  CHECK(w.peers[1]->waits == 0);
  CHECK(std::abs(static_cast<int64_t>(w.peers[0]->engine->frame()) - static_cast<int64_t>(w.peers[1]->engine->frame())) <= 1);
  }
}

TEST_CASE("time sync: a network outage that stalls both peers does not make them WAIT afterwards", "[engine]") {
  // After the outage the peers resume in the order the first packets reach them, so one may
  // come back a couple of frames ahead; time sync may then WAIT it back (a real lead), but the
  // stale headers of the outage never make a peer WAIT while it is not ahead.
  for (uint64_t seed = 30; seed < 42; ++seed) {
    CAPTURE(seed);
    LinkProfile link{20, 4, 0, 0, 0, 20};
    Session w(SessionOptions::over(2, "", link, seed));
    std::vector<uint64_t> waitsSeen(2, 0);
    uint64_t unjustified = 0;
    w.afterStep = [&](size_t i) {
      if (w.peers[i]->waits == waitsSeen[i]) return;
      waitsSeen[i] = w.peers[i]->waits;
      const Frame lead = w.peers[i]->engine->frame() - w.peers[1 - i]->engine->frame();
      if (lead < 2) ++unjustified;
    };
    w.runFrames(300);
    CHECK(w.peers[0]->waits + w.peers[1]->waits == 0);
    w.net.blackoutFrom = w.now;
    w.net.blackoutUntil = w.now + 2000;
    std::vector<uint64_t> stalls0 = {w.peers[0]->stalls, w.peers[1]->stalls};
    w.runFrames(330);
    while (w.now < w.net.blackoutUntil + 500) w.tick();
    for (size_t k = 0; k < 2; ++k) CHECK(w.peers[k]->stalls > stalls0[k] + 20);  // both stalled
    w.runFrames(w.minFrame() + 300);
    CHECK(unjustified == 0);
    CHECK(w.peers[0]->waits + w.peers[1]->waits <= 3);
    CHECK(std::abs(w.peers[0]->engine->frame() - w.peers[1]->engine->frame()) <= 1);
    CHECK(w.events("desync") == 0);
  }
}

TEST_CASE("time sync: peers with different input delays see each other's inputs arrive equally early", "[engine]") {
  // Peer 0 plays the second episode with input delay 1, peer 1 with 5. Balancing the frame
  // counters would leave peer 1's inputs 4 frames earlier at peer 0 than peer 0's at peer 1 (peer 0
  // would predict and roll back, peer 1 never); time sync balances the margins instead: peer 0
  // runs (5 - 1) / 2 = 2 frames ahead and both see remote inputs arrive equally early.
  LinkProfile link{20, 4, 0, 0, 0, 20};
  Session w(SessionOptions::over(2, "", link, 21));
  for (auto& n : w.peers) n->game.endAtFrame = 149;
  bool reset = false;
  std::vector<bool> ended(2, false);
  w.afterStep = [&](size_t i) {
    Peer& n = w[static_cast<int>(i)];
    if (std::any_of(n.events.begin(), n.events.end(), [](const json& j) { return j["type"] == "episodeEnd"; })) ended[i] = true;
    if (!reset && ended[0] && ended[1]) {
      reset = true;
      for (int k = 0; k < 2; ++k) {
        REQUIRE(w[k].engine->resetEpisode(k == 0 ? 1 : 5) == "");
        w[k].resetGame();
        w[k].game.endAtFrame = -1;
      }
    }
  };
  for (uint64_t t = 0; t < 1000000 && !reset; ++t) w.tick();
  REQUIRE(reset);
  const uint64_t waits0 = w[0].waits + w[1].waits;
  std::vector<double> offsets;
  w.afterStep = [&](size_t i) {
    if (i == 1) offsets.push_back(static_cast<double>(w[0].engine->frame() - w[1].engine->frame()));
  };
  const Frame start = w[0].engine->episodeStart();
  w.runFrames(start + 900);
  const double m0 = w[0].engine->timeSync().margin(1);  // how early peer 1's inputs reach peer 0
  const double m1 = w[1].engine->timeSync().margin(0);
  CAPTURE(m0, m1);
  CHECK(std::fabs(m0 - m1) <= 0.6);
  CHECK(m0 > 0.5);  // nobody predicts on this calm link
  CHECK(m1 > 0.5);
  double mean = 0;
  for (size_t k = offsets.size() / 2; k < offsets.size(); ++k) mean += offsets[k];
  mean /= static_cast<double>(offsets.size() - offsets.size() / 2);
  CAPTURE(mean);
  CHECK(mean > 1.0);
  CHECK(mean < 3.0);
  CHECK(w[0].waits + w[1].waits - waits0 <= 6);
  CHECK(w.events("desync") == 0);
}
