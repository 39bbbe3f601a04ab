// The sync engine's core properties, with virtual time and scripted arrival orders: symmetry
// (identical per-frame action logs, no host), rollback only on a misprediction and from the
// earliest mispredicted frame, dedup across redundant packets and both paths, conflicts,
// spoofing / unknown players / window limits / bounded memory, INPUT_REQUEST gap filling.
// Engines are driven by the harness (Peer, Session, Solo: tests/unit/harness.hpp) through the
// one frame driver (driver.hpp); hand-made packets are built with encode().
#include <malloc.h>

#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

// ================================================================================ 1. symmetry

namespace {
void checkSessionSymmetry(Session& s, uint32_t frames) {
  s.runFrames(frames);
  for (size_t i = 0; i < s.peers.size(); ++i) s.collect(i);  // confirmations from the last deliveries
  size_t common = 0;
  REQUIRE(s.logsIdentical(&common));
  CHECK(s.totalDesyncs() == 0);
  int64_t minConfirmed = INT64_MAX;
  for (size_t i = 0; i < s.peers.size(); ++i) {
    SyncEngine& e = *s.peers[i]->engine;
    minConfirmed = std::min(minConfirmed, e.confirmedFrame());
    // the log holds every confirmed frame (nothing lost to ring eviction)
    CHECK(static_cast<int64_t>(s.logged[i]) == e.confirmedFrame() + 1);
    CHECK(s.peers[i]->nondeterminism == 0);
  }
  // identical up to the final confirmed frame of the slowest peer
  CHECK(static_cast<int64_t>(common) == minConfirmed + 1);
  CHECK(common + 40 > frames);
}
}  // namespace

TEST_CASE("symmetry: two engines, 100,000 frames over a lossy reordering duplicating link", "[engine][long]") {
  SessionOptions o;
  o.seed = 7;
  o.link = LinkProfile{30, 12, 0.10, 0.05, 0.02, 20};
  Session s(o);
  checkSessionSymmetry(s, 100000);
  uint64_t rollbacks = 0;
  for (auto& p : s.peers) rollbacks += p->rollbacks;
  CHECK(rollbacks > 1000);
  for (auto& p : s.peers) CHECK(p->engine->verifiedFrame() > 99000);
  // no host: both peers sent and received inputs the same way
  for (auto& p : s.peers) {
    CHECK(p->engine->metrics().inputsReceived(Path::P2P) > 90000);
    CHECK(p->engine->metrics().inputsSent(Path::P2P) > 90000);
  }
}

TEST_CASE("symmetry: 3 and 4 players, lossy link", "[engine]") {
  for (int players : {3, 4}) {
    CAPTURE(players);
    SessionOptions o;
    o.players = players;
    o.seed = 100 + static_cast<uint64_t>(players);
    o.link = LinkProfile{35, 15, 0.10, 0.05, 0.02, 20};
    Session s(o);
    checkSessionSymmetry(s, 4000);
  }
}

TEST_CASE("symmetry: 2 players + 2 bots, lossy link", "[engine]") {
  SessionOptions o;
  o.players = 2;
  o.bots = 2;
  o.seed = 31;
  o.link = LinkProfile{40, 15, 0.10, 0.05, 0.02, 20};
  Session s(o);
  checkSessionSymmetry(s, 3000);
  for (auto& p : s.peers) CHECK(p->rollbacks > 10);
}

TEST_CASE("symmetry: 3 players; what every game executed is identical and equals the action log", "[engine]") {
  LinkProfile link{30, 15, 0.10, 0.05, 0.02, 20};
  Session w(SessionOptions::over(3, "", link, 9));
  w.runFrames(1500);
  int64_t c = w.minConfirmed();
  REQUIRE(c > 1400);
  // Compare what each game really executed (live or in its last replay) over every confirmed frame.
  std::vector<uint8_t> first = w.peers[0]->executedLog(0, static_cast<uint32_t>(c));
  REQUIRE(first.size() == static_cast<size_t>(c + 1) * 3);
  for (auto& n : w.peers) {
    CHECK(n->executedLog(0, static_cast<uint32_t>(c)) == first);
    // the engine's log of the frames still in the ring is what the game executed
    std::vector<uint8_t> log;
    uint32_t from = static_cast<uint32_t>(c - 100);
    REQUIRE(n->engine->actionLog(from, static_cast<uint32_t>(c), log) == 101);
    CHECK(log == n->executedLog(from, static_cast<uint32_t>(c)));
  }
  CHECK(w.events("desync") == 0);
  CHECK(w.events("error") == 0);
}

// ================================================================================ 2. rollback

TEST_CASE("rollback: correct predictions cause no rollback", "[engine]") {
  Solo s;
  s.stepTo(10);  // frames 0..9 executed, player 1 predicted (default action 0)
  CHECK(s.in({{0, 0}, {1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}, {6, 0}, {7, 0}, {8, 0}, {9, 0}}) == RxResult::Ok);
  REQUIRE(s.step() == Status::Run);
  CHECK_FALSE(s.a.plan.rollback());
  CHECK(s.a.engine->confirmedFrame() == 9);  // player 1 known up to 9; frame 10 ran with a prediction
  // Future inputs arrive before their frames: used as known, no prediction, no rollback.
  CHECK(s.in({{11, 3}, {12, 3}}) == RxResult::Ok);
  s.stepTo(14);
  CHECK_FALSE(s.a.plan.rollback());
  REQUIRE(s.a.plan.current() != nullptr);
  CHECK((s.a.plan.current()->predictedMask & 2) != 0);  // frame 13 predicted: previous submitted (3)
  CHECK(s.a.plan.current()->actions[1] == 3);
  // Late but correctly predicted inputs (previous submitted action) -> still no rollback.
  CHECK(s.in({{10, 0}, {13, 3}}) == RxResult::Ok);
  s.step();
  CHECK_FALSE(s.a.plan.rollback());
  CHECK(s.a.engine->metrics().rollbackCount() == 0);
  CHECK(s.a.rollbacks == 0);
}

TEST_CASE("rollback: two late inputs in one receive batch -> one rollback from the earliest", "[engine]") {
  for (int variant = 0; variant < 3; ++variant) {
    CAPTURE(variant);
    Solo s;
    s.stepTo(20);  // frames 0..19 ran with player 1 predicted 0
    REQUIRE(s.inRange(0, 9, 0) == RxResult::Ok);
    s.step();  // frame 20
    REQUIRE_FALSE(s.a.plan.rollback());
    if (variant == 0) {  // later first, then earlier (two packets, no advance between)
      CHECK(s.in({{15, 2}}) == RxResult::Ok);
      CHECK(s.in({{12, 1}}) == RxResult::Ok);
    } else if (variant == 1) {  // earlier first
      CHECK(s.in({{12, 1}}) == RxResult::Ok);
      CHECK(s.in({{15, 2}}) == RxResult::Ok);
    } else {  // same packet
      CHECK(s.in({{12, 1}, {15, 2}}) == RxResult::Ok);
    }
    REQUIRE(s.step() == Status::Run);  // frame 21
    REQUIRE(s.a.plan.rollback());
    CHECK(s.a.plan.rollbackTarget == 12);
    CHECK(s.a.plan.loadFrame == 10);  // latest snapshot at or before 12 (interval 5)
    CHECK(s.a.plan.replayCount == 11);  // frames 10..20
    // replayed actions of player 1: 10,11 = 0 (known), 12 = 1, 13,14 predicted 1, 15.. = 2
    auto p1 = [&](Frame f) {
      const PlanCopy::Req* r = s.a.plan.advanceOf(f);
      REQUIRE(r != nullptr);
      CHECK(r->replay());
      return r->actions[1];
    };
    CHECK(p1(10) == 0);
    CHECK(p1(11) == 0);
    CHECK(p1(12) == 1);
    CHECK(p1(13) == 1);
    CHECK(p1(14) == 1);
    CHECK(p1(15) == 2);
    CHECK(p1(20) == 2);
    REQUIRE(s.a.plan.current() != nullptr);
    CHECK(s.a.plan.current()->frame == 21);
    CHECK(s.a.plan.current()->actions[1] == 2);  // frame 21 predicted from the newest known input
    CHECK(s.a.engine->metrics().rollbackCount() == 1);
    s.step();
    CHECK_FALSE(s.a.plan.rollback());  // nothing pending
    CHECK(s.a.engine->metrics().rollbackCount() == 1);
    CHECK(s.a.rollbacks == 1);
  }
}

TEST_CASE("rollback: a late input during a replay is not lost", "[engine]") {
  struct Case {
    uint32_t frame;
    uint8_t action;
    int32_t expect;  // next plan's rollback target, -1 = none
  };
  // First rollback: player 1's frame 12 = 1 (predicted 0). The replay re-predicts 13.. as 1.
  for (Case c : {Case{8, 3, 8}, Case{16, 4, 16}, Case{16, 1, -1}, Case{21, 2, 21}, Case{12, 1, -1}}) {
    CAPTURE(c.frame, c.action);
    Solo s;
    s.stepTo(21);
    REQUIRE(s.inRange(0, 7, 0) == RxResult::Ok);
    CHECK(s.in({{12, 1}}) == RxResult::Ok);
    REQUIRE(s.step(/*run=*/false) == Status::Run);  // executes frame 21 after a rollback
    REQUIRE(s.a.plan.rollback());
    REQUIRE(s.a.plan.rollbackTarget == 12);
    // ... the page is replaying (advance returned, the next advance not yet called):
    RxResult r = s.in({{c.frame, c.action}});
    if (c.frame == 12) CHECK(r == RxResult::Duplicate);
    else CHECK(r == RxResult::Ok);
    s.a.run();
    REQUIRE(s.step() == Status::Run);
    if (c.expect < 0) {
      CHECK_FALSE(s.a.plan.rollback());
    } else {
      REQUIRE(s.a.plan.rollback());
      CHECK(s.a.plan.rollbackTarget == c.expect);
      CHECK(s.a.plan.loadFrame <= c.expect);
    }
  }
}

TEST_CASE("rollback: a late input after the episode's end still produces the rollback; the replay ends it again", "[engine]") {
  for (int order = 0; order < 2; ++order) {
    CAPTURE(order);
    Solo s;
    s.a.game.endAtFrame = 19;  // the env terminates after stepping frame 19
    s.stepTo(20);
    CHECK(s.e().terminalFrame() == 19);
    REQUIRE(s.inRange(0, 9, 0) == RxResult::Ok);
    if (order == 1) REQUIRE(s.step() == Status::Ended);
    CHECK(s.in({{14, 3}}) == RxResult::Ok);  // late, mispredicted (0)
    // The rollback reaches the terminal frame: the engine forgets it (the replay decides again)
    // and plans on after the replay; the replay's step of 19 ends the episode again, which voids
    // the rest of the plan (frame 20 is never stepped).
    CHECK(s.step() == Status::Run);
    REQUIRE(s.a.plan.rollback());
    CHECK(s.a.plan.rollbackTarget == 14);
    CHECK(s.a.plan.loadFrame == 10);
    CHECK(s.a.plan.replayCount == 10);  // 10..19: nothing past the end was ever simulated
    REQUIRE(s.a.plan.advanceOf(20) != nullptr);
    CHECK_FALSE(s.a.plan.advanceOf(20)->replay());
    CHECK(s.a.plan.ran.cut);
    CHECK(s.a.plan.ran.steps == 10);
    CHECK(s.a.executed.count(20) == 0);
    CHECK(s.a.executed.at(14)[1] == 3);
    CHECK(s.e().terminalFrame() == 19);
    CHECK(s.e().frame() == 20);
    CHECK(s.step() == Status::Ended);
    CHECK_FALSE(s.a.plan.rollback());
    CHECK(s.a.plan.requests.empty());
    CHECK(s.e().metrics().rollbackCount() == 1);
    CHECK(s.a.stepsPastEnd == 0);
    CHECK(s.a.count("terminal") == 2);
  }
}

// ================================================================================ 3. dedup

TEST_CASE("dedup: redundant packets and both paths count once; the first path is recorded", "[engine]") {
  Solo s;
  s.stepTo(3);
  auto pkt = Solo::inputPacket(1, {{0, 1}, {1, 1}, {2, 2}, {3, 2}, {4, 3}});
  CHECK(s.a.rxBytes(pkt, 1, s.now) == RxResult::Ok);
  CHECK(s.a.rxBytes(pkt, 1, s.now) == RxResult::Duplicate);
  CHECK(s.a.rxBytes(pkt, 1, s.now + 1) == RxResult::Duplicate);
  // the next redundant packet overlaps (3 old + 1 new)
  CHECK(s.in({{2, 2}, {3, 2}, {4, 3}, {5, 3}}) == RxResult::Ok);
  const Metrics& m = s.a.engine->metrics();
  CHECK(m.inputsReceived(Path::P2P) == 6);
  CHECK(m.duplicates(Path::P2P) == 13);
  CHECK(m.inputsReceived(Path::Relay) == 0);
  // the same input by the relay (pyodide_player_action) after P2P
  std::string j = formatPlayerAction(json(1), 2, 3, s.now);
  CHECK(s.a.engine->receiveRelayJson(RelayEvent::PlayerAction, j.data(), j.size(), 1, s.now + 20) == RxResult::Duplicate);
  CHECK(m.inputsReceived(Path::Relay) == 0);
  CHECK(m.duplicates(Path::Relay) == 1);
  // relay first, then P2P
  j = formatPlayerAction(json(1), 4, 6, s.now);
  CHECK(s.a.engine->receiveRelayJson(RelayEvent::PlayerAction, j.data(), j.size(), 1, s.now) == RxResult::Ok);
  CHECK(s.in({{5, 3}, {6, 4}}) == RxResult::Duplicate);
  CHECK(m.inputsReceived(Path::Relay) == 1);
  CHECK(m.inputsReceived(Path::P2P) == 6);
  CHECK(m.duplicates(Path::P2P) == 15);
  json pm = s.a.engine->p2pMetrics();
  CHECK(pm["inputsReceivedViaP2P"] == 6);
  CHECK(pm["inputsReceivedViaSocketIO"] == 1);
  json in = s.a.engine->exportSessionMetrics()["inputs"];
  CHECK(in["duplicatesViaP2P"] == 15);
  CHECK(in["duplicatesViaSocketIO"] == 1);
  CHECK(in["firstDelivery"]["relayLagAfterP2P"]["count"] == 1);
  CHECK(in["firstDelivery"]["p2pLagAfterRelay"]["count"] == 1);
  // every input is known exactly once with its action
  for (auto [f, a] : std::vector<std::pair<uint32_t, uint8_t>>{{0, 1}, {2, 2}, {4, 3}, {5, 3}, {6, 4}}) {
    uint8_t got = 99;
    CHECK(s.a.engine->inputKnown(1, f, got));
    CHECK(got == a);
  }
  // the engine rolled back once for the mispredicted frames 0..2 (one rollback, from frame 0)
  s.step();
  REQUIRE(s.a.plan.rollback());
  CHECK(s.a.plan.rollbackTarget == 0);
}

// ================================================================================ 4. conflict

TEST_CASE("conflict: a different input for a known frame is rejected and history is kept", "[engine]") {
  Solo s;
  s.stepTo(12);
  REQUIRE(s.in({{0, 0}, {1, 0}, {2, 0}, {3, 2}, {4, 2}, {5, 2}, {6, 2}, {7, 2}, {8, 2}, {9, 2}, {10, 2}, {11, 2}, {12, 2}, {13, 2}}) == RxResult::Ok);
  s.step();
  REQUIRE(s.a.plan.rollback());
  CHECK(s.a.plan.rollbackTarget == 3);
  s.step();
  std::vector<uint8_t> before;
  REQUIRE(s.a.engine->actionLog(0, 13, before) == 14);
  const uint64_t rejected = s.a.engine->metrics().rejectedCount(RxResult::Conflict);
  // P2P: executed frame, confirmed
  CHECK(s.in({{3, 4}}) == RxResult::Conflict);
  // P2P: in a packet whose other entries are duplicates
  CHECK(s.in({{4, 2}, {5, 1}, {6, 2}}) == RxResult::Conflict);
  // relay
  std::string j = formatPlayerAction(json(1), 0, 7, s.now);
  CHECK(s.a.engine->receiveRelayJson(RelayEvent::PlayerAction, j.data(), j.size(), 1, s.now) == RxResult::Conflict);
  CHECK(s.a.engine->receiveRelayInput(1, 8, 3, s.now, 1) == RxResult::Conflict);
  // INPUT_RESPONSE
  Message r;
  r.type = MsgType::InputResponse;
  r.playerIndex = 1;
  r.count = 2;
  r.inputs[0] = {9, 2};
  r.inputs[1] = {10, 0};
  CHECK(s.a.rxBytes(enc(r), 1, s.now) == RxResult::Conflict);
  // a known future frame (not executed yet)
  CHECK(s.in({{15, 2}}) == RxResult::Ok);
  CHECK(s.in({{15, 3}}) == RxResult::Conflict);
  CHECK(s.a.engine->metrics().rejectedCount(RxResult::Conflict) == rejected + 6);
  for (auto [f, a] : std::vector<std::pair<uint32_t, uint8_t>>{{3, 2}, {5, 2}, {7, 2}, {8, 2}, {10, 2}, {15, 2}}) {
    uint8_t got = 99;
    REQUIRE(s.a.engine->inputKnown(1, f, got));
    CHECK(got == a);
  }
  s.step();
  CHECK_FALSE(s.a.plan.rollback());
  std::vector<uint8_t> after;
  REQUIRE(s.a.engine->actionLog(0, 13, after) == 14);
  CHECK(after == before);
  CHECK(s.a.engine->exportSessionMetrics()["rejected"]["CONFLICT"] == rejected + 6);
}

// ================================================================================ 5. junk

TEST_CASE("junk: spoofed / unknown players, frames outside the window, bounded memory", "[engine]") {
  Solo s(",\"timeSync\":false,\"catchUp\":false", 3);
  s.stepTo(2);
  SyncEngine& e = *s.a.engine;
  const size_t mem = e.memoryBytes();
  auto cnt = [&](RxResult r) { return e.metrics().rejectedCount(r); };

  // playerIndex of another peer
  CHECK(s.a.rxBytes(Solo::inputPacket(2, {{3, 1}}), 1, s.now) == RxResult::SpoofedPlayer);
  CHECK(s.a.rxBytes(Solo::inputPacket(0, {{3, 1}}), 1, s.now) == RxResult::SpoofedPlayer);  // claims to be us
  CHECK(e.receiveRelayInput(2, 3, 1, s.now, 1) == RxResult::SpoofedPlayer);
  std::string spoof = "{\"player_id\":2,\"action\":1,\"frame_number\":3,\"timestamp\":5,\"from\":1}";
  CHECK(e.receiveRelayJson(RelayEvent::PlayerAction, spoof.data(), spoof.size(), 1, s.now) == RxResult::SpoofedPlayer);
  Message resp;
  resp.type = MsgType::InputResponse;
  resp.playerIndex = 2;
  resp.count = 1;
  resp.inputs[0] = {3, 1};
  CHECK(s.a.rxBytes(enc(resp), 1, s.now) == RxResult::SpoofedPlayer);
  CHECK(cnt(RxResult::SpoofedPlayer) == 5);

  // out-of-range players
  CHECK(s.a.rxBytes(Solo::inputPacket(3, {{3, 1}}), 1, s.now) == RxResult::UnknownPlayer);
  CHECK(s.a.rxBytes(Solo::inputPacket(700, {{3, 1}}), 1, s.now) == RxResult::UnknownPlayer);
  CHECK(s.a.rxBytes(Solo::inputPacket(1, {{3, 1}}), 3, s.now) == RxResult::UnknownPlayer);   // no such peer
  CHECK(s.a.rxBytes(Solo::inputPacket(1, {{3, 1}}), -1, s.now) == RxResult::UnknownPlayer);
  CHECK(s.a.rxBytes(Solo::inputPacket(0, {{3, 1}}), 0, s.now) == RxResult::UnknownPlayer);   // from ourselves
  CHECK(e.receiveRelayInput(0, 3, 1, s.now, -1) == RxResult::UnknownPlayer);
  CHECK(e.receiveRelayInput(5, 3, 1, s.now, -1) == RxResult::UnknownPlayer);
  std::string unk = formatPlayerAction(json(9), 1, 3, 5);
  CHECK(e.receiveRelayJson(RelayEvent::PlayerAction, unk.data(), unk.size(), -1, s.now) == RxResult::UnknownPlayer);
  CHECK(cnt(RxResult::UnknownPlayer) == 8);
  uint8_t a;
  CHECK_FALSE(e.inputKnown(1, 3, a));
  CHECK_FALSE(e.inputKnown(2, 3, a));

  // frames beyond the window, future: the ring holds [windowLo, windowLo + bufferFrames)
  CHECK(s.in({{255, 1}}) == RxResult::Ok);  // windowLo is still 0
  CHECK(s.in({{256, 1}}) == RxResult::OutOfWindow);
  CHECK(s.in({{1000000, 1}}) == RxResult::OutOfWindow);
  CHECK(s.in({{0xFFFFFFF0u, 1}}) == RxResult::OutOfWindow);
  CHECK(s.a.rxBytes(Solo::inputPacket(1, {{3, 1}}, 0xFFFFFFFFu), 1, s.now) == RxResult::OutOfWindow);  // header far ahead
  CHECK(e.receiveRelayInput(1, 5000, 1, s.now, 1) == RxResult::OutOfWindow);
  CHECK_FALSE(e.inputKnown(1, 256, a));
  CHECK(cnt(RxResult::OutOfWindow) == 5);

  // ... and past: run 400 frames with both peers' inputs, then send inputs of evicted frames.
  for (uint32_t f = 0; f < 400; ++f) {
    if (f % 10 == 0) {
      s.inRange(f, f + 9, static_cast<uint8_t>(f % 3), 1);
      s.inRange(f, f + 9, static_cast<uint8_t>(f % 4), 2);
    }
    if (e.frame() < 390) s.step();
  }
  REQUIRE(e.frame() >= 380);
  REQUIRE(e.confirmedFrame() >= 370);
  const uint64_t oow = cnt(RxResult::OutOfWindow);
  CHECK(s.in({{10, 4}, {11, 4}}) == RxResult::OutOfWindow);
  CHECK(s.in({{100, 4}}, 2) == RxResult::OutOfWindow);
  CHECK(e.receiveRelayInput(2, 20, 4, s.now, 2) == RxResult::OutOfWindow);
  CHECK(cnt(RxResult::OutOfWindow) == oow + 3);
  CHECK(e.memoryBytes() == mem);

  // Floods of junk: random bytes, valid-but-rejected packets, relay garbage. Memory stays put.
  Rng rng(77);
  auto flood = [&](int n) {
    std::vector<uint8_t> b;
    for (int i = 0; i < n; ++i) {
      int from = 1 + rng.below(2);
      switch (rng.below(6)) {
        case 0: {  // random bytes with a plausible type byte
          b.resize(static_cast<size_t>(rng.below(1400)));
          for (auto& x : b) x = static_cast<uint8_t>(rng.next());
          static const uint8_t types[] = {0x01, 0x02, 0x03, 0x05, 0x06, 0x07, 0x12, 0x13, 0x14, 0x99};
          if (!b.empty()) b[0] = types[rng.below(10)];
          e.receive(b.data(), b.size(), from, rng.chance(0.5) ? Path::P2P : Path::Relay, s.now);
          break;
        }
        case 1:
          e.receive(Solo::inputPacket(rng.below(5), {{static_cast<uint32_t>(rng.next()), 1}}).data(), 14, rng.below(6) - 1, Path::P2P, s.now);
          break;
        case 2: {
          std::string t = "{\"player_id\":" + std::to_string(rng.below(4)) + ",\"action\":" + std::to_string(rng.below(300)) +
                          ",\"frame_number\":" + std::to_string(rng.next() % 5000) + ",\"timestamp\":1}";
          if (rng.chance(0.3)) t = t.substr(0, static_cast<size_t>(rng.below(static_cast<int>(t.size()))));
          e.receiveRelayJson(RelayEvent::PlayerAction, t.data(), t.size(), from, s.now);
          break;
        }
        case 3: {  // huge
          b.assign(70000, 0x13);
          e.receive(b.data(), b.size(), from, Path::P2P, s.now);
          break;
        }
        case 4: {
          Message m;
          m.type = rng.chance(0.5) ? MsgType::FocusState : MsgType::StateHash;
          m.frame = static_cast<uint32_t>(rng.next() % 100000) * 5 + 5;
          m.focused = 1;
          m.digest = rng.next();
          auto p = enc(m);
          e.receive(p.data(), p.size(), from, Path::P2P, s.now);
          break;
        }
        default: {
          Message m;
          m.type = MsgType::InputRequest;
          m.start = static_cast<uint32_t>(rng.next());
          m.end = m.start + static_cast<uint32_t>(rng.below(256));
          if (m.end < m.start) m.end = m.start;
          auto p = enc(m);
          e.receive(p.data(), p.size(), from, Path::P2P, s.now);
          break;
        }
      }
      if (i % 50 == 49) {  // a frame passes (flushes events, resets the flood budget)
        s.now += kFrameMs;
        s.a.step(s.now);
        s.a.sent.clear();
      }
    }
  };
  s.a.maxEventsKept = 0;  // the harness counts the events and keeps none (its memory stays put too)
  s.a.keepExecuted = false;
  flood(20000);  // warm up every bounded structure
  const size_t heap1 = mallinfo2().uordblks;
  flood(100000);
  const size_t heap2 = mallinfo2().uordblks;
  CHECK(e.memoryBytes() == mem);
  CHECK(heap2 <= heap1 + 64 * 1024);
  CHECK(cnt(RxResult::Flood) + cnt(RxResult::Oversized) + cnt(RxResult::BadRelayJson) > 0);
  CHECK(cnt(RxResult::Oversized) > 1000);
  // history untouched by the junk: frames 370..379 still hold the inputs we gave
  for (uint32_t f = 370; f < 380; ++f) {
    uint8_t got;
    if (e.inputKnown(1, f, got)) CHECK(got == static_cast<uint8_t>((f / 10 * 10) % 3));
  }
}

// ================================================================================ 6. gaps

TEST_CASE("gap: lost packets beyond the redundancy are requested and answered from history", "[engine]") {
  const std::string extra = ",\"redundancy\":2,\"timeSync\":false";
  Peer A(0, cfg(2, 0, extra), 1, 2), B(1, cfg(2, 1, extra), 2, 2);
  A.keepExecuted = B.keepExecuted = true;
  double now = 0;
  bool dropBtoA = false;
  uint64_t dropped = 0;
  std::vector<Packet> requests, responses;
  auto exchange = [&]() {
    for (Packet& p : A.sent) {
      Message m;
      if (p.path == Path::P2P && decodes(p.bytes, m) && m.type == MsgType::InputRequest) requests.push_back(p);
      B.receive(p, now);
    }
    A.sent.clear();
    for (Packet& p : B.sent) {
      Message m;
      bool isInput = p.path == Path::P2P && decodes(p.bytes, m) && m.type == MsgType::Input;
      if (dropBtoA && isInput) { ++dropped; continue; }
      if (p.path == Path::P2P && decodes(p.bytes, m) && m.type == MsgType::InputResponse) responses.push_back(p);
      A.receive(p, now);
    }
    B.sent.clear();
  };
  Rng rng(3);
  auto frame = [&]() {
    now += kFrameMs;
    A.forcedAction = rng.below(5);
    B.forcedAction = rng.below(5);
    A.step(now);
    exchange();
    B.step(now);
    exchange();
  };
  for (int i = 0; i < 20; ++i) frame();
  const int64_t knownBefore = [&] {
    int64_t k = 0;
    uint8_t x;
    while (A.engine->inputKnown(1, static_cast<uint32_t>(k), x)) ++k;
    return k - 1;
  }();
  REQUIRE(knownBefore >= 18);
  // (with redundancy 2 < inputDelay + 1 the first packet already left frame 0 out: that gap was
  // requested and filled at the start)
  requests.clear();
  responses.clear();
  const uint64_t gapsBefore = A.engine->exportSessionMetrics()["inputs"]["gapsFilled"].get<uint64_t>();
  dropBtoA = true;
  for (int i = 0; i < 6; ++i) frame();
  REQUIRE(dropped == 6);
  REQUIRE(requests.empty());
  dropBtoA = false;
  // B's next INPUT carries 2 frames: A sees the gap, asks for it in its next advance.
  now += kFrameMs;
  B.step(now);
  exchange();
  A.step(now);
  REQUIRE_FALSE(A.sent.empty());
  Message req;
  bool found = false;
  for (Packet& p : A.sent)
    if (decodes(p.bytes, req) && req.type == MsgType::InputRequest) { found = true; CHECK(p.to == 1); break; }
  REQUIRE(found);
  CHECK(req.start == static_cast<uint32_t>(knownBefore + 1));  // the first lost frame
  CHECK(req.end >= req.start + 4);
  const uint64_t requestsBefore = A.engine->exportSessionMetrics()["inputs"]["requestsSent"].get<uint64_t>() - 1;
  // B answers from its history: INPUT_RESPONSE with every frame of the range.
  exchange();
  REQUIRE(responses.size() == 1);
  Message resp;
  REQUIRE(decodes(responses[0].bytes, resp));
  CHECK(resp.type == MsgType::InputResponse);
  CHECK(resp.playerIndex == 1);
  CHECK(resp.inputs[0].frame == req.start);
  CHECK(resp.count == req.end - req.start + 1);
  CHECK(B.engine->exportSessionMetrics()["inputs"]["responsesSent"] == requestsBefore + 1);
  // the gap is filled
  for (uint32_t f = req.start; f <= req.end; ++f) {
    uint8_t x, y;
    REQUIRE(A.engine->inputKnown(1, f, x));
    REQUIRE(B.engine->inputKnown(1, f, y));
    CHECK(x == y);
  }
  CHECK(A.engine->exportSessionMetrics()["inputs"]["gapsFilled"].get<uint64_t>() == gapsBefore + (req.end - req.start + 1));
  // and the session goes on, symmetric
  for (int i = 0; i < 60; ++i) frame();
  int64_t c = std::min(A.engine->confirmedFrame(), B.engine->confirmedFrame());
  REQUIRE(c > 70);
  CHECK(A.executedLog(0, static_cast<uint32_t>(c)) == B.executedLog(0, static_cast<uint32_t>(c)));
  CHECK(A.count("desync") + B.count("desync") == 0);
}

