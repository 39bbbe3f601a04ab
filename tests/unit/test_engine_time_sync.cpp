// Time sync: a peer ahead of the others WAITs until the frame counters are together again; a
// pause between episodes or a network outage does not cause WAITs afterwards.
#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

namespace {
constexpr double kFrameMs = 1000.0 / 30.0;
}  // namespace

// ================================================================================ 9. time sync

TEST_CASE("time sync: a peer 10 frames ahead waits, the other never does; counters converge", "[engine]") {
  LinkProfile link{20, 4, 0, 0, 0, 20};
  Session w(SessionOptions::over(2, "", link, 11));
  w.nextAt[0] = 1;
  w.nextAt[1] = 2;
  w.pausedUntil[0] = 10 * kFrameMs + 1.5;  // peer 1 runs 10 frames alone first
  while (w.peers[0]->engine->frame() == 0) w.tick();
  const int64_t lead = static_cast<int64_t>(w.peers[1]->engine->frame()) - static_cast<int64_t>(w.peers[0]->engine->frame());
  CHECK(lead >= 9);
  std::vector<int64_t> diffs;
  size_t mostFrames0 = 0;  // the most new frames peer 0 ran in one advance (catch-up)
  w.afterStep = [&](size_t i) {
    diffs.push_back(static_cast<int64_t>(w.peers[1]->engine->frame()) - static_cast<int64_t>(w.peers[0]->engine->frame()));
    if (i == 0) mostFrames0 = std::max(mostFrames0, w.peers[0]->plan.advances(false).size());
  };
  w.runFrames(900);
  // The peer behind catches up (several frames per advance), the one ahead WAITs: together they
  // close the 10-frame gap.
  CHECK(w.peers[0]->waits == 0);
  CHECK(mostFrames0 >= 2);
  CHECK(w.peers[1]->waits >= 2);
  CHECK(w.peers[1]->waits <= 14);
  const int64_t d = static_cast<int64_t>(w.peers[1]->engine->frame()) - static_cast<int64_t>(w.peers[0]->engine->frame());
  CHECK(std::abs(d) <= 2);
  int64_t worstLate = 0;
  for (size_t i = diffs.size() / 2; i < diffs.size(); ++i) worstLate = std::max(worstLate, std::abs(diffs[i]));
  CHECK(worstLate <= 3);
  CHECK(w.events("desync") == 0);
}

TEST_CASE("time sync: a peer whose clock runs faster waits; the frame counters stay together", "[engine]") {
  LinkProfile link{20, 4, 0, 0, 0, 20};
  Session w(SessionOptions::over(2, "", link, 12));
  w.period[1] = 1000.0 / 31.5;  // 5% faster
  std::vector<int64_t> diffs;
  w.afterStep = [&](size_t) { diffs.push_back(static_cast<int64_t>(w.peers[1]->engine->frame()) - static_cast<int64_t>(w.peers[0]->engine->frame())); };
  w.runFrames(1800);
  const uint64_t extraTicks = w.peers[1]->runs + w.peers[1]->waits + w.peers[1]->stalls -
                              (w.peers[0]->runs + w.peers[0]->waits + w.peers[0]->stalls);
  CHECK(extraTicks > 60);  // it really ran faster
  CHECK(w.peers[1]->waits >= 60);
  CHECK(w.peers[0]->waits <= 2);
  int64_t worstLate = 0;
  for (size_t i = diffs.size() / 4; i < diffs.size(); ++i) worstLate = std::max(worstLate, std::abs(diffs[i]));
  CHECK(worstLate <= 4);
  CHECK(w.peers[1]->stalls == 0);
  CHECK(w.events("desync") == 0);
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
