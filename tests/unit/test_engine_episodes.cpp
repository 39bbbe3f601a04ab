// Episodes: the engine owns the episode's end (terminal frame kept, forgotten by a rollback that
// reaches it, relearned by the replay; END once confirmed; never a frame planned past it; a
// peer's END adopted on a mismatch), resetEpisode, and a sweep of whole multi-episode sessions.
#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

// ================================================================================ 7. episodes

TEST_CASE("episode reset: clears frame state, keeps session metrics, new delay, stale packets rejected", "[engine]") {
  LinkProfile link{30, 10, 0.10, 0.05, 0.02, 20};
  Session w(SessionOptions::over(2, "", link, 21));
  const uint32_t E = 599;  // the env terminates after stepping frame 599 (episode frame)
  for (auto& n : w.peers) n->game.endAtFrame = E;
  std::vector<Packet> oldInputs;  // INPUT packets of episode 0, replayed after the reset
  std::vector<uint32_t> oldStart(2), endFrame(2, 0);
  std::vector<json> metricsAtEnd(2);
  std::vector<uint64_t> rollbacksAtEnd(2);
  std::vector<bool> reset(2, false);
  std::vector<std::vector<uint8_t>> ep0Log(2);
  w.afterStep = [&](size_t i) {
    Peer& n = w[static_cast<int>(i)];
    if (!reset[i]) {
      auto it = std::find_if(n.events.begin(), n.events.end(), [](const json& j) { return j["type"] == "episodeEnd"; });
      if (it != n.events.end()) {
        endFrame[i] = (*it)["frame"].get<uint32_t>();
        oldStart[i] = n.engine->episodeStart();
        metricsAtEnd[i] = n.engine->exportSessionMetrics();
        rollbacksAtEnd[i] = n.engine->metrics().rollbackCount();
        CHECK(n.engine->resetEpisode(4) == "");
        reset[i] = true;
        // frame state cleared
        const Frame start = n.engine->episodeStart();
        CHECK(start == endFrame[i] + 1 + 64);
        CHECK(n.engine->frame() == start);
        CHECK(n.engine->confirmedFrame() == static_cast<int64_t>(start) - 1);
        CHECK(n.engine->episode() == 1);
        CHECK(n.engine->config().inputDelay == 4);
        uint8_t x;
        CHECK_FALSE(n.engine->inputKnown(1 - static_cast<int>(i), E - 5, x));
        std::vector<uint8_t> log;
        CHECK(n.engine->actionLog(E - 50, E, log, false) == 0);
        // session metrics kept
        json now = n.engine->exportSessionMetrics();
        CHECK(now["p2pMetrics"]["inputsReceivedViaP2P"] == metricsAtEnd[i]["p2pMetrics"]["inputsReceivedViaP2P"]);
        CHECK(now["rollbacks"]["count"] == metricsAtEnd[i]["rollbacks"]["count"]);
        CHECK(n.engine->metrics().rollbackCount() == rollbacksAtEnd[i]);
        ep0Log[i] = n.executedLog(0, E);
        n.resetGame();
        n.game.endAtFrame = -1;  // episode 1 does not end
      }
    }
  };
  // capture some of player 1's INPUT packets near the end of episode 0
  auto capture = [&]() {
    for (uint64_t t = 0; t < 100000 && !(reset[0] && reset[1]); ++t) {
      w.tick();
      if (oldInputs.size() < 40 && w.peers[1]->engine->frame() > E - 20 && !reset[1]) {
        // re-create the packet B would send: its newest inputs
        std::vector<std::pair<uint32_t, uint8_t>> v;
        for (uint32_t f = w.peers[1]->engine->frame() - 5; f < w.peers[1]->engine->frame(); ++f) {
          uint8_t a;
          if (w.peers[1]->engine->inputKnown(1, f, a)) v.emplace_back(f, a);
        }
        if (!v.empty()) {
          Packet p;
          p.from = 1;
          p.to = 0;
          p.bytes = Solo::inputPacket(1, v);
          oldInputs.push_back(p);
        }
      }
    }
  };
  capture();
  REQUIRE(reset[0]);
  REQUIRE(reset[1]);
  CHECK(endFrame[0] == E);
  CHECK(endFrame[1] == E);
  CHECK(oldStart[0] == 0);
  CHECK(oldStart[1] == 0);
  // both games executed the same inputs for every frame of episode 0
  CHECK(ep0Log[0].size() == (E + 1) * 2);
  CHECK(ep0Log[0] == ep0Log[1]);
  CHECK(w.events("desync") == 0);
  REQUIRE_FALSE(oldInputs.empty());
  const uint32_t start1 = w.peers[0]->engine->episodeStart();
  CHECK(w.peers[1]->engine->episodeStart() == start1);
  CHECK(start1 > E);
  // stale INPUT packets of episode 0 are rejected by the new episode
  for (Packet& p : oldInputs) CHECK(w.peers[0]->receive(p, w.now) == RxResult::StaleEpisode);
  // episode 1 runs (frames are session-wide) and is symmetric
  w.runFrames(start1 + 1500);
  int64_t c = w.minConfirmed();
  REQUIRE(c > static_cast<int64_t>(start1) + 1400);
  auto l0 = w.peers[0]->executedLog(start1, static_cast<uint32_t>(c));
  REQUIRE(l0.size() == static_cast<size_t>(c - start1 + 1) * 2);
  CHECK(l0 == w.peers[1]->executedLog(start1, static_cast<uint32_t>(c)));
  // the first 4 frames of episode 1: each player's delayed default input (action 0)
  for (uint32_t f = start1; f < start1 + 4; ++f) {
    CHECK(l0[(f - start1) * 2] == 0);
    CHECK(l0[(f - start1) * 2 + 1] == 0);
  }
  CHECK(w.events("desync") == 0);
  for (auto& n : w.peers) {
    CHECK(n->engine->verifiedFrame() > static_cast<int64_t>(start1) + 1300);
    json m = n->engine->exportSessionMetrics();
    CHECK(m["session"]["episode"] == 1);
    CHECK(m["episodes"].size() == 1);
    CHECK(m["p2pMetrics"]["inputsReceivedViaP2P"].get<uint64_t>() > 1800);  // both episodes
  }
}


// ================================================================================ the episode end

namespace {
Message endMessage(uint32_t episodeFrame, uint32_t episode = 0) {
  Message m;
  m.type = MsgType::EpisodeEnd;
  m.frame = episodeFrame;
  m.episode = episode;
  return m;
}
// The EPISODE_END packets of the last step, by episode frame.
std::vector<uint32_t> endsSent(const Peer& p) {
  std::vector<uint32_t> v;
  for (const Packet& k : p.lastSent)
    if (k.type() == kEnd) v.push_back(dec(k.bytes).frame);
  return v;
}
}  // namespace

TEST_CASE("episode end: a predicted terminal frame is forgotten by a rollback that reaches it, relearned by the replay; END once confirmed",
          "[episode]") {
  Solo s;
  s.a.game.endActor = 1;  // the episode ends when player 1 reaches |pos| >= 20 (action 3: +7)
  s.a.game.endAtDistance = 20;
  REQUIRE(s.inRange(0, 4, 0) == RxResult::Ok);
  REQUIRE(s.in({{5, 3}}) == RxResult::Ok);  // then predicted 3 (its previous action): 7, 14, 21
  s.stepTo(8);
  CHECK(s.e().terminalFrame() == 7);  // on a predicted timeline
  CHECK(s.e().confirmedFrame() == 5);
  CHECK(s.step() == Status::Ended);
  CHECK(s.a.plan.requests.empty());  // nothing planned past the terminal frame
  CHECK(endsSent(s.a).empty());      // not confirmed: no END
  CHECK_FALSE(s.e().stateSync().localEnded());

  // Player 1 really did nothing at 6 and 7: the rollback to 6 reaches the terminal frame 7, the
  // engine forgets it, and the replay does not end the episode any more.
  REQUIRE(s.in({{6, 0}, {7, 0}}) == RxResult::Ok);
  CHECK(s.step() == Status::Run);
  CHECK(s.a.plan.str() == "L5 A5r A6r A7r A8 ");
  CHECK_FALSE(s.a.plan.ran.cut);
  CHECK(s.e().terminalFrame() == kNoFrame);
  CHECK(s.a.game.pos[1] == 7);
  CHECK(s.e().frame() == 9);

  // ... it did act at 8 and 9: the episode ends at 9, learned again by the replay, and END goes
  // out once frame 9 is confirmed.
  REQUIRE(s.in({{8, 3}, {9, 3}}) == RxResult::Ok);
  CHECK(s.step() == Status::Run);
  CHECK(s.a.plan.str() == "L5 A5r A6r A7r A8r A9 ");
  CHECK(s.e().terminalFrame() == 9);
  CHECK(s.e().confirmedFrame() == 9);
  CHECK(endsSent(s.a).empty());  // sent by the next advance
  CHECK(s.step() == Status::Ended);
  CHECK(endsSent(s.a) == std::vector<uint32_t>{9});
  CHECK(s.e().stateSync().localEnded());
  CHECK(s.e().stateSync().endMessagesSent() == 1);
  std::vector<Frame> terminals;
  for (const json& t : s.a.ofType("terminal")) terminals.push_back(t["frame"].get<Frame>());
  CHECK(terminals == std::vector<Frame>{7, 9});
  CHECK(s.a.episodeEnds.empty());  // the peer's END is not in yet
  CHECK(s.a.rxBytes(enc(endMessage(9)), 1, s.now) == RxResult::Ok);
  CHECK(s.step() == Status::Ended);
  REQUIRE(s.a.episodeEnds.size() == 1);
  CHECK(s.a.episodeEnds[0]["frame"] == 9);
  CHECK(s.a.episodeEnds[0]["truncated"] == false);
  CHECK(s.a.stepsPastEnd == 0);
  CHECK(s.a.count("error") == 0);
  CHECK(s.e().resetEpisode(-1).empty());
  CHECK(s.e().episodeStart() == 9 + 1 + 64);
}

TEST_CASE("episode end: no frame is planned past a peer's END; a timeline confirmed past it adopts it (end-mismatch)",
          "[episode]") {
  SECTION("the END arrives before this peer reaches it") {
    Solo s;
    REQUIRE(s.inRange(0, 40, 0) == RxResult::Ok);
    s.stepTo(5);
    CHECK(s.a.rxBytes(enc(endMessage(20)), 1, s.now) == RxResult::Ok);
    Frame newest = kNoFrame;
    for (int k = 0; k < 30; ++k) {
      s.step();
      for (const PlanCopy::Req& r : s.a.plan.requests) newest = std::max(newest, r.frame);
    }
    CHECK(newest == 20);
    CHECK(s.e().frame() == 21);
    // its env did not end there: a mismatch (a desync), reported once and adopted
    const auto errs = s.a.ofType("error");
    REQUIRE(errs.size() == 1);
    CHECK(errs[0]["reason"] == "end-mismatch");
    CHECK(errs[0]["frame"] == 20);
    CHECK(s.e().terminalFrame() == 20);
    REQUIRE(s.a.episodeEnds.size() == 1);
    CHECK(s.a.episodeEnds[0]["frame"] == 20);
  }
  SECTION("the END arrives after this peer confirmed past it") {
    Solo s;
    REQUIRE(s.inRange(0, 40, 0) == RxResult::Ok);
    s.stepTo(15);
    CHECK(s.e().confirmedFrame() == 14);
    CHECK(s.a.rxBytes(enc(endMessage(10)), 1, s.now) == RxResult::Ok);
    CHECK(s.step() == Status::Ended);
    CHECK(s.a.plan.requests.empty());
    const auto errs = s.a.ofType("error");
    REQUIRE(errs.size() == 1);
    CHECK(errs[0]["reason"] == "end-mismatch");
    CHECK(errs[0]["episodeFrame"] == 10);
    CHECK(s.e().terminalFrame() == 10);
    CHECK(endsSent(s.a) == std::vector<uint32_t>{10});  // every peer ends the episode on one frame
    REQUIRE(s.a.episodeEnds.size() == 1);
    CHECK(s.a.episodeEnds[0]["frame"] == 10);
    // the next episode starts after the adopted end (and after every frame already confirmed)
    CHECK(s.e().resetEpisode(-1).empty());
    CHECK(s.e().episodeStart() == 10 + 1 + 64);
  }
  SECTION("an END that agrees with this peer's own end is no mismatch") {
    Solo s;
    s.a.game.endAtFrame = 12;
    REQUIRE(s.inRange(0, 40, 0) == RxResult::Ok);
    s.stepTo(1);  // (the episode begins in state sync with its first snapshot)
    CHECK(s.a.rxBytes(enc(endMessage(12)), 1, s.now) == RxResult::Ok);
    s.stepTo(13);
    CHECK(s.step() == Status::Ended);
    CHECK(s.a.count("error") == 0);
    CHECK(endsSent(s.a) == std::vector<uint32_t>{12});
    REQUIRE(s.a.episodeEnds.size() == 1);
    CHECK(s.a.episodeEnds[0]["frame"] == 12);
  }
}
