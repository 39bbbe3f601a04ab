// Engine-level health checker, fallback monitor and research metrics: pings and pongs, every
// fallback trigger and the relay-only policy, counters against what crossed the wire, the exact
// episode summary line.
#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

TEST_CASE("engine metrics: PINGs every pingIntervalMs, PONG samples, duplicate / out-of-order / unsent pongs",
          "[metrics-engine]") {
  Peer a(0, cfg(2, 0, ",\"pingIntervalMs\":100"), 1, 2);
  std::vector<double> pings;
  auto keepalive = [&](double now) {  // peer 1 stays alive (not silent) while its pongs are slow
    Message k;
    k.type = MsgType::Keepalive;
    const auto b = enc(k);
    return a.engine->receive(b.data(), b.size(), 1, Path::P2P, now);
  };
  for (int k = 0; k < 50; ++k) {  // 1 s at 20 ms per frame
    const double now = k * 20.0;
    CHECK(keepalive(now) == RxResult::Ok);
    a.step(now);
    for (const Packet& r : a.lastSent) {
      if (r.type() != kPing) continue;
      CHECK(r.path == Path::P2P);
      CHECK(r.to == 1);
      pings.push_back(dec(r.bytes).timestamp);
    }
  }
  CHECK(pings == std::vector<double>{0, 100, 200, 300, 400, 500, 600, 700, 800, 900});

  SyncEngine& e = *a.engine;
  auto pong = [&](double ts, double now) {
    Message m;
    m.type = MsgType::Pong;
    m.timestamp = ts;
    const auto b = enc(m);
    return e.receive(b.data(), b.size(), 1, Path::P2P, now);
  };
  CHECK(keepalive(995) == RxResult::Ok);
  CHECK(pong(100, 1000) == RxResult::Ok);              // rtt 900
  CHECK(pong(300, 1010) == RxResult::Ok);              // rtt 710, out of order
  CHECK(pong(200, 1020) == RxResult::Ok);              // rtt 820
  CHECK(pong(100, 1030) == RxResult::UnsolicitedPong);  // duplicate
  CHECK(pong(12345, 1040) == RxResult::UnsolicitedPong);  // never sent
  CHECK(pong(250, 1050) == RxResult::UnsolicitedPong);  // never sent
  CHECK(e.health().sampleCount(1) == 3);
  CHECK(e.health().rttAvgMs(1) == (900.0 + 710 + 820) / 3);
  CHECK(e.health().duplicatePongs(1) == 1);
  CHECK(e.health().unsolicitedPongs(1) == 2);
  CHECK(e.metrics().rejectedCount(RxResult::UnsolicitedPong) == 3);

  // a PING from the peer is answered with a PONG carrying its timestamp
  {
    Message m;
    m.type = MsgType::Ping;
    m.timestamp = 777.5;
    const auto b = enc(m);
    CHECK(e.receive(b.data(), b.size(), 1, Path::P2P, 1060) == RxResult::Ok);
    const auto replies = records(e.replies());
    REQUIRE(replies.size() == 1);
    CHECK(replies[0].type() == kPong);
    CHECK(replies[0].to == 1);
    CHECK(replies[0].path == Path::P2P);
    CHECK(dec(replies[0].bytes).timestamp == 777.5);
  }

  const json m = e.exportSessionMetrics();
  const json& p = m["quality"]["peers"][0];
  CHECK(p["peer"] == 1);
  CHECK(p["samples"] == 3);
  CHECK(p["rttAvgMs"] == (900.0 + 710 + 820) / 3);
  CHECK(p["p50Ms"] == 820.0);
  CHECK(p["p95Ms"] == 900.0);
  CHECK(p["minMs"] == 710.0);
  CHECK(p["maxMs"] == 900.0);
  CHECK(p["jitterMs"] == (190.0 + 110.0) / 2);
  CHECK(p["duplicatePongs"] == 1);
  CHECK(p["unsolicitedPongs"] == 2);
  CHECK(p["status"] == "critical");
  CHECK(m["rejected"]["UNSOLICITED_PONG"] == 3);
  // a pong for a ping evicted from the 16-slot ring is unsolicited
  for (int k = 50; k < 100; ++k) a.step(k * 20.0);
  CHECK(pong(0, 2000) == RxResult::UnsolicitedPong);
  CHECK(e.health().unsolicitedPongs(1) == 3);
}

namespace {

// Records sent by a node after some point, by kind.
struct Sent {
  uint64_t p2pInput = 0, p2pHash = 0, p2pPing = 0, p2pOther = 0, relayAction = 0, relayHash = 0, relayPacket = 0;
  void add(const std::vector<Packet>& recs) {
    for (const Packet& r : recs) {
      if (r.kind == OutKind::RelayJson) {
        if (r.event == RelayEvent::PlayerAction) ++relayAction;
        else if (r.event == RelayEvent::StateSync) ++relayHash;
      } else if (r.path == Path::Relay) {
        ++relayPacket;
      } else if (r.type() == kInput) {
        ++p2pInput;
      } else if (r.type() == kStateHash) {
        ++p2pHash;
      } else if (r.type() == kPing) {
        ++p2pPing;
      } else {
        ++p2pOther;
      }
    }
  }
};

// Ticks `n` times (n / 2 frames per page), collecting what each page sends from its steps.
std::vector<Sent> collect(Session& w, int n) {
  std::vector<Sent> s(static_cast<size_t>(w.size()));
  for (int k = 0; k < n; ++k) {
    w.tick();
    for (int i = 0; i < w.size(); ++i) s[static_cast<size_t>(i)].add(w[i].lastSent);
  }
  return s;
}

void checkFallbackPolicy(const Sent& s, const char* who) {
  INFO(who);
  CHECK(s.p2pInput == 0);      // inputs only on the relay ...
  CHECK(s.p2pHash == 0);       // ... hashes only as p2p_state_sync
  CHECK(s.relayAction > 50);
  CHECK(s.relayHash > 5);
}

}  // namespace

TEST_CASE("engine metrics: fallback on channel-closed and connection-failed; sticky; relay-only policy",
          "[metrics-engine]") {
  SECTION("channel closed on both sides") {
    Session w(SessionOptions::scripted(2, "", 7));
    REQUIRE(w.runUntil([&] { return w.minFrame() >= 60; }, 500));
    const uint32_t f0 = w[0].engine->frame(), f1 = w[1].engine->frame();
    w.net.cutP2P();
    w[0].engine->onChannelClosed(1, w.now);
    w[1].engine->onChannelClosed(0, w.now);
    const auto sent = collect(w, 200);
    for (int i = 0; i < 2; ++i) {
      Peer& n = w[i];
      INFO("peer " << i);
      checkFallbackPolicy(sent[static_cast<size_t>(i)], "after channel close");
      CHECK(sent[static_cast<size_t>(i)].p2pPing == 0);
      CHECK(sent[static_cast<size_t>(i)].p2pOther == 0);
      const auto fb = n.ofType("fallback");
      REQUIRE(fb.size() == 1);
      CHECK(fb[0]["reason"] == "channel-closed");
      CHECK(fb[0]["peer"] == 1 - i);
      CHECK(fb[0]["frame"] == (i == 0 ? f0 : f1));
      const json p = n.engine->p2pMetrics();
      CHECK(p["p2pFallbackTriggered"] == true);
      CHECK(p["p2pFallbackFrame"] == (i == 0 ? f0 : f1));
      const json q = n.engine->exportSessionMetrics()["quality"];
      CHECK(q["fallback"]["reason"] == "channel-closed");
      CHECK(q["peers"][0]["channelOpen"] == false);
      CHECK(q["peers"][0]["inFallback"] == true);
      CHECK(n.engine->stateSync().desyncCount() == 0);
      CHECK(n.engine->verifiedFrame() > static_cast<int64_t>(f0) + 60);  // verification goes on over the relay
    }
    CHECK(sameLogs(*w[0].engine, *w[1].engine, 0, static_cast<uint32_t>(std::min(w[0].engine->confirmedFrame(), w[1].engine->confirmedFrame()))));

    // sticky without fallbackRecovery: the channel re-opens, pings resume, inputs stay on the relay
    w.net.restoreP2P();
    w[0].engine->onChannelOpen(1, w.now);
    w[1].engine->onChannelOpen(0, w.now);
    const auto later = collect(w, 300);
    for (int i = 0; i < 2; ++i) {
      checkFallbackPolicy(later[static_cast<size_t>(i)], "after re-open");
      CHECK(later[static_cast<size_t>(i)].p2pPing > 5);
      CHECK(w[i].engine->health().inFallback(1 - i));
      CHECK(w[i].engine->health().sampleCount(1 - i) > 5);
      CHECK(w[i].ofType("recovery").empty());
      CHECK(w[i].engine->exportSessionMetrics()["quality"]["fallback"]["recoveries"] == 0);
    }

    // the episode still ends: END goes as a relay packet while P2P is unusable
    const uint32_t endRel = std::max(w[0].engine->frame(), w[1].engine->frame()) + 20;
    for (int i = 0; i < 2; ++i) w[i].game.endAtFrame = endRel;
    uint64_t endsP2P = 0, endsRelay = 0;
    REQUIRE(w.runUntil(
        [&] {
          for (int i = 0; i < 2; ++i)
            for (const Packet& r : w[i].lastSent)
              if (r.type() == kEnd) ++(r.path == Path::P2P ? endsP2P : endsRelay);
          return w[0].hasEpisodeEnd(0) && w[1].hasEpisodeEnd(0);
        },
        1000));
    CHECK(endsP2P == 0);
    CHECK(endsRelay >= 2);
    for (int i = 0; i < 2; ++i) CHECK(w[i].ofType("episodeEnd")[0]["frame"] == endRel);
  }

  SECTION("connection failed") {
    Session w(SessionOptions::scripted(2, "", 8));
    REQUIRE(w.runUntil([&] { return w.minFrame() >= 30; }, 500));
    const uint32_t f = w[0].engine->frame();
    w[0].engine->onConnectionFailed(1, w.now);
    w.tick();
    const auto fb = w[0].ofType("fallback");
    REQUIRE(fb.size() == 1);
    CHECK(fb[0]["reason"] == "connection-failed");
    CHECK(fb[0]["frame"] == f);
    CHECK(w[0].engine->p2pMetrics()["p2pFallbackFrame"] == f);
    CHECK_FALSE(w[0].engine->health().p2pUsable(1));
    CHECK(w[1].ofType("fallback").empty());
    const auto sent = collect(w, 150);
    checkFallbackPolicy(sent[0], "peer 0 after connection-failed");
    CHECK(sent[1].p2pInput > 50);  // the other side still uses its channel
  }
}

TEST_CASE("engine metrics: fallback on latency via slow pongs (critical, high), sticky; recovery when configured",
          "[metrics-engine]") {
  SECTION("latency-critical: 260 ms one way") {
    Session w(SessionOptions::scripted(2, "", 9));
    w.net.profile().oneWayMs = 260;
    REQUIRE(w.runUntil([&] { return !w[0].ofType("fallback").empty() && !w[1].ofType("fallback").empty(); }, 200));
    for (int i = 0; i < 2; ++i) {
      const auto fb = w[i].ofType("fallback");
      REQUIRE(fb.size() == 1);
      CHECK(fb[0]["reason"] == "latency-critical");
      CHECK(fb[0]["latencyMs"].get<double>() > 200);
      CHECK(fb[0]["latencyMs"].get<double>() <= 300);
      CHECK(w[i].engine->p2pMetrics()["p2pFallbackFrame"] == fb[0]["frame"]);
    }
    const auto sent = collect(w, 200);
    checkFallbackPolicy(sent[0], "peer 0");
    checkFallbackPolicy(sent[1], "peer 1");
    // sticky: a fast link does not bring P2P back without fallbackRecovery
    w.net.profile().oneWayMs = 10;
    const auto later = collect(w, 300);
    checkFallbackPolicy(later[0], "peer 0, fast link");
    CHECK(w[0].engine->health().inFallback(1));
    CHECK(w[0].engine->health().latencyMs(1) < 50);
    CHECK(w[0].ofType("recovery").empty());
    CHECK(w[0].engine->stateSync().desyncCount() == 0);
  }

  SECTION("latency-high: 400 ms one way") {
    Session w(SessionOptions::scripted(2, "", 10));
    w.net.profile().oneWayMs = 400;
    REQUIRE(w.runUntil([&] { return !w[0].ofType("fallback").empty(); }, 200));
    const auto fb = w[0].ofType("fallback");
    CHECK(fb[0]["reason"] == "latency-high");
    CHECK(fb[0]["latencyMs"].get<double>() > 300);
    CHECK(w[0].engine->exportSessionMetrics()["quality"]["fallback"]["reason"] == "latency-high");
    CHECK(w[0].engine->exportSessionMetrics()["quality"]["peers"][0]["fallbackReason"] == "latency-high");
  }

  SECTION("recovery with fallbackRecovery {healthyForMs, latencyBelowMs}") {
    Session w(SessionOptions::scripted(2, ",\"pingIntervalMs\":100,\"fallbackRecovery\":{\"healthyForMs\":1000,\"latencyBelowMs\":50}", 12));
    w.net.profile().oneWayMs = 260;
    REQUIRE(w.runUntil([&] { return !w[0].ofType("fallback").empty(); }, 200));
    const auto fb = w[0].ofType("fallback");
    CHECK(fb[0]["reason"] == "latency-critical");
    const double fallbackAt = w.now;
    const auto during = collect(w, 150);
    checkFallbackPolicy(during[0], "peer 0 in fallback");
    w.net.profile().oneWayMs = 10;
    REQUIRE(w.runUntil([&] { return !w[0].ofType("recovery").empty(); }, 300));
    const json rec = w[0].ofType("recovery")[0];
    CHECK(rec["peer"] == 1);
    CHECK(w.now - fallbackAt >= 1000);  // healthy for at least healthyForMs
    CHECK(rec["fallbackMs"].get<double>() >= 1000);
    CHECK(w[0].engine->health().p2pUsable(1));
    const auto after = collect(w, 150);
    CHECK(after[0].p2pInput > 50);  // inputs back on the DataChannel
    CHECK(after[0].p2pHash > 0);
    const json m = w[0].engine->exportSessionMetrics();
    CHECK(m["quality"]["fallback"]["recoveries"] == 1);
    CHECK(m["quality"]["fallback"]["triggered"] == true);  // historical
    CHECK(m["p2pMetrics"]["p2pFallbackTriggered"] == true);
    CHECK(m["quality"]["fallback"]["events"].size() >= 2);
    CHECK(w[0].engine->stateSync().desyncCount() == 0);
  }
}

TEST_CASE("engine metrics: counters agree with the wire in a dual-path run with every 3rd P2P packet lost",
          "[metrics-engine]") {
  Session w(SessionOptions::scripted(2, ",\"sendPolicy\":\"dual\"", 13));
  std::map<std::pair<int, int>, uint64_t> p2pSeq;
  w.net.drop = [&p2pSeq](const Packet& x) { return x.path == Path::P2P && p2pSeq[{x.from, x.to}]++ % 3 == 2; };
  REQUIRE(w.runUntil([&] { return w.minFrame() >= 600; }, 3000));
  w.drain();  // every packet in flight arrives (the relay is reliable)

  const int delay = 2;
  for (int s = 0; s < 2; ++s) {
    const int r = 1 - s;
    SyncEngine& S = *w[s].engine;
    SyncEngine& R = *w[r].engine;
    INFO("sender " << s << " receiver " << r);
    const json ms = S.exportSessionMetrics(), mr = R.exportSessionMetrics();
    const json& is = ms["inputs"];
    const json& ir = mr["inputs"];
    // the sender's local inputs: frames 0 .. frame + delay - 1 (the first `delay` are the default action)
    const uint64_t local = S.frame() + delay;
    uint8_t a;
    REQUIRE(S.inputKnown(s, static_cast<uint32_t>(local - 1), a));
    REQUIRE_FALSE(S.inputKnown(s, static_cast<uint32_t>(local), a));
    // sent for the first time on each path: under "dual", every local input on both
    CHECK(ms["p2pMetrics"]["inputsSentViaP2P"] == local);
    CHECK(ms["p2pMetrics"]["inputsSentViaSocketIO"] == local);
    CHECK(is["sentViaP2P"] == ms["p2pMetrics"]["inputsSentViaP2P"]);
    CHECK(is["sentViaSocketIO"] == ms["p2pMetrics"]["inputsSentViaSocketIO"]);
    CHECK(is["entriesSentViaP2P"] == w.net.counts(s).p2pInputEntriesOut);
    CHECK(is["entriesSentViaSocketIO"] == local);  // one input per pyodide_player_action
    // received: each distinct remote input once, on the path that delivered it first
    const uint64_t rP2P = R.metrics().inputsReceived(Path::P2P), rRelay = R.metrics().inputsReceived(Path::Relay);
    CHECK(rP2P + rRelay == local);
    CHECK(rP2P > rRelay);
    CHECK(rRelay > 0);
    CHECK(mr["p2pMetrics"]["inputsReceivedViaP2P"] == rP2P);
    CHECK(mr["p2pMetrics"]["inputsReceivedViaSocketIO"] == rRelay);
    CHECK(ir["receivedViaP2P"] == rP2P);
    CHECK(ir["receivedViaSocketIO"] == rRelay);
    CHECK(ir["firstDelivery"]["p2p"] == rP2P);
    CHECK(ir["firstDelivery"]["relay"] == rRelay);
    // every input came once by the relay: first, or as a duplicate after the DataChannel
    CHECK(rRelay + R.metrics().duplicates(Path::Relay) == local);
    CHECK(ir["firstDelivery"]["relayLagAfterP2P"]["count"] == rP2P);
    const uint64_t lateP2P = ir["firstDelivery"]["p2pLagAfterRelay"]["count"];
    CHECK(lateP2P <= rRelay);
    CHECK(lateP2P + 2 >= rRelay);  // the redundancy re-carries lost ones; only the very last may miss
    // every P2P input entry delivered is either new or a duplicate
    CHECK(rP2P + R.metrics().duplicates(Path::P2P) == w.net.counts(r).p2pInputEntriesIn);
    // packets: counted per path, and equal to what the link saw
    const auto& cs = w.net.counts(s);
    const auto& cr = w.net.counts(r);
    CHECK(is["packetsSentViaP2P"] == cs.p2pOut);
    CHECK(is["packetsSentViaSocketIO"] == cs.relayOut);
    CHECK(ir["packetsReceivedViaP2P"] == cr.p2pIn);
    CHECK(ir["packetsReceivedViaSocketIO"] == cr.relayIn);
    CHECK(cs.p2pOut - cs.p2pLost == cr.p2pIn);
    CHECK(cs.p2pLost == cs.p2pOut / 3);
    CHECK(cs.relayOut == cr.relayIn);
    CHECK(S.stateSync().desyncCount() == 0);
  }
}

TEST_CASE("engine metrics: the episode summary line of a scripted session, exactly", "[metrics-engine]") {
  Peer a(0, cfg(2, 0, ",\"timeSync\":false"), 1, 2);
  SyncEngine& e = *a.engine;
  auto bAction = [](uint32_t f) { return f < 12 ? 0 : f < 22 ? 3 : 1; };
  auto p2pInput = [&](std::vector<uint32_t> frames, double now) {
    Message m;
    m.type = MsgType::Input;
    m.playerIndex = 1;
    m.frame = frames.back();
    m.count = 0;
    for (uint32_t f : frames) m.inputs[m.count++] = FrameAction{f, static_cast<uint8_t>(bAction(f))};
    const auto b = enc(m);
    CHECK(e.receive(b.data(), b.size(), 1, Path::P2P, now) == RxResult::Ok);
  };
  auto relayInput = [&](uint32_t f, double now) {
    CHECK(e.receiveRelayInput(1, f, bAction(f), now, 1) == RxResult::Ok);
  };
  // player 1's inputs: frame f arrives one frame before it is needed, by the relay for frames < 10
  // and >= 32, else by P2P; frames 12-13 and 22-23 (action changes) arrive two frames late.
  auto deliverFor = [&](int tick, double now) {
    std::vector<uint32_t> frames;
    if (tick == 14) frames = {12, 13};
    else if (tick == 24) frames = {22, 23};
    if (tick + 1 <= 40 && tick + 1 != 12 && tick + 1 != 13 && tick + 1 != 22 && tick + 1 != 23) frames.push_back(static_cast<uint32_t>(tick + 1));
    if (tick == 0) frames.insert(frames.begin(), 0);
    for (uint32_t f : frames) {
      if (f < 10 || f >= 32) relayInput(f, now);
    }
    std::vector<uint32_t> p2p;
    for (uint32_t f : frames)
      if (f >= 10 && f < 32) p2p.push_back(f);
    if (!p2p.empty()) p2pInput(p2p, now);
  };
  const std::string init = ToyGame(2).state();
  Message ready;
  ready.type = MsgType::EpisodeReady;
  ready.episode = 0;
  ready.digest = e.hashState(reinterpret_cast<const uint8_t*>(init.data()), init.size());
  const auto readyBytes = enc(ready);
  CHECK(e.receive(readyBytes.data(), readyBytes.size(), 1, Path::P2P, 0) == RxResult::Ok);
  a.game.endAtFrame = 39;
  CHECK(e.episodeSummary("{}") == "[Episode] Complete at frame 0 | Rewards: {} | InputBuf: 256 | Rollbacks: 0 | Syncs: 0 | P2P: N/A");

  // the start barrier: the first advance saves frame 0 (our READY goes out); the peer's READY is in
  a.step(0);
  REQUIRE(a.lastStatus == Status::Starting);
  REQUIRE(e.frame() == 0);
  std::string mid;
  int tick = 0;
  for (; tick < 60 && !a.hasEpisodeEnd(0); ++tick) {
    const double now = tick * 20.0;
    deliverFor(tick, now);
    if (tick == 42) {
      Message end;
      end.type = MsgType::EpisodeEnd;
      end.frame = 39;
      end.episode = 0;
      const auto b = enc(end);
      CHECK(e.receive(b.data(), b.size(), 1, Path::Relay, now) == RxResult::Ok);
    }
    a.forcedAction = 1;
    a.step(now);
    if (tick < 40) CHECK(a.lastStatus == Status::Run);
    if (tick == 25) mid = e.episodeSummary("{}");
    if (tick == 31) e.onChannelClosed(1, now);
  }
  REQUIRE(a.hasEpisodeEnd(0));
  CHECK(a.rollbacks == 2);
  CHECK(mid == "[Episode] Complete at frame 26 | Rewards: {} | InputBuf: 256 | Rollbacks: 2 | Syncs: 4 | P2P: 17/27 (63.0%)");
  const std::string line = e.episodeSummary(R"({"0":1.5,"1":-2})");
  CHECK(line ==
        "[Episode] Complete at frame 39 | Rewards: {\"0\":1.5,\"1\":-2} | InputBuf: 256 | Rollbacks: 2 | Syncs: 7 | "
        "P2P: 22/41 (53.7%) | Fallback at frame 32");
  // the same numbers in the export
  const json m = e.exportSessionMetrics();
  CHECK(m["p2pMetrics"]["inputsReceivedViaP2P"] == 22);
  CHECK(m["p2pMetrics"]["inputsReceivedViaSocketIO"] == 19);
  CHECK(m["p2pMetrics"]["p2pFallbackFrame"] == 32);
  CHECK(m["rollbacks"]["count"] == 2);
  CHECK(m["sync"]["hashesSent"] == 7);
  REQUIRE(m["episodes"].size() == 1);
  CHECK(m["episodes"][0]["frame"] == 39);
  CHECK(m["episodes"][0]["episode"] == 0);
}


TEST_CASE("health: a page frozen for 10 s gives no RTT sample of the freeze; nobody falls back", "[metrics-engine]") {
  for (int frozen : {0, 1}) {
    CAPTURE(frozen);
    Session w(SessionOptions::over(2, "", LinkProfile{40, 0, 0, 0, 0, 20}, 9));
    w.runFrames(100);
    // a frozen tab: it neither steps nor handles what arrives; it all arrives at once when it is back
    const double until = w.now + 10000;
    w.pausedUntil[static_cast<size_t>(frozen)] = until;
    w.net.hold = [&w, frozen, until](const Packet& p) { return p.to == frozen && w.now < until; };
    while (w.now < until) w.tick();
    w.net.hold = nullptr;
    w.net.release(w.now, 2.0);  // (spread: a burst of 10 s of traffic would hit the flood guard)
    w.runFrames(w.minFrame() + 300);
    CHECK(w.events("fallback") == 0);
    CHECK(w[frozen].engine->health().stalePongs(1 - frozen) + w[1 - frozen].engine->health().stalePongs(frozen) > 0);
    for (int i = 0; i < 2; ++i) CHECK(w[i].engine->health().latencyMs(1 - i) < 100);
    CHECK(w.events("desync") == 0);
  }
}

TEST_CASE("focus: a change held back and delivered after a newer one is ignored", "[metrics-engine]") {
  Solo s;
  auto focus = [&](bool f, uint32_t frame) {
    Message m;
    m.type = MsgType::FocusState;
    m.focused = f ? 1 : 0;
    m.frame = frame;
    return s.a.rxBytes(enc(m), 1, s.now);
  };
  s.stepTo(20);
  CHECK(focus(false, 30) == RxResult::Ok);
  CHECK(focus(true, 31) == RxResult::Ok);
  CHECK(focus(false, 30) == RxResult::Ok);  // the hide again, late: older than the show
  s.step();
  std::vector<bool> seen;
  for (const json& e : s.a.events)
    if (e["type"] == "focus") seen.push_back(e["focused"].get<bool>());
  CHECK(seen == std::vector<bool>{false, true});
  // a page hidden and shown again without a step in between still orders its two changes
  Solo t;
  t.stepTo(10);
  t.e().setFocus(false, t.now);
  t.e().setFocus(true, t.now);
  std::vector<Frame> frames;
  t.step();
  for (const json& e : t.a.events)
    if (e["type"] == "focus") frames.push_back(e["frame"].get<Frame>());
  REQUIRE(frames.size() == 2);
  CHECK(frames[1] > frames[0]);
}
