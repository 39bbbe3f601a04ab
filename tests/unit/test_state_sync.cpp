// StateSync: symmetric hash verification, desync detection, episode END / READY sync.
// Virtual time; peers are wired by hand through their Outboxes.
#include <catch2/catch_test_macros.hpp>

#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol.hpp"
#include "relay.hpp"
#include "state_sync.hpp"
#include "test_util.hpp"

using namespace p2psync;
using nlohmann::json;
using p2psync::test::ofType;
using p2psync::test::Rec;
using p2psync::test::takeEvents;

namespace {

// Every record of an outbox (Outbox::forEach), then an empty outbox.
std::vector<Rec> drain(Outbox& o) {
  std::vector<Rec> v = p2psync::test::records(o);
  REQUIRE(v.size() == o.count());
  o.clear();
  return v;
}

Message decodeRec(const Rec& r) {
  Message m;
  REQUIRE(decode(r.bytes.data(), r.bytes.size(), m) == DecodeError::Ok);
  return m;
}

using p2psync::test::hex;

StateSyncConfig cfg(int n, int local, uint32_t interval = 5, uint32_t history = 120) {
  StateSyncConfig c;
  c.numPlayers = n;
  c.localPlayer = local;
  c.hashInterval = interval;
  c.hashHistory = history;
  c.gameId = "g1";
  return c;
}

constexpr uint32_t kWindow = 60;

struct Member {
  int idx;
  StateSync ss;
  Outbox out;
  EventQueue ev;
  std::vector<json> events;
  int64_t confirmed = -1;
  uint32_t current = 0;
  bool p2p = true;
  Member(int i, const StateSyncConfig& c) : idx(i), ss(c), out(256 * 1024), ev(64 * 1024) {}
};

// Delivers one record from `from` to `to`. Returns the RxResult.
RxResult deliver(Member& to, int from, const Rec& r, double now) {
  if (r.kind == OutKind::RelayJson) {
    REQUIRE(r.ev == RelayEvent::StateSync);
    const std::string t = r.text();
    return to.ss.onRelayStateSync(from, t.data(), t.size(), to.current, kWindow, now);
  }
  REQUIRE(r.kind == OutKind::Packet);
  const Message m = decodeRec(r);
  switch (m.type) {
    case MsgType::StateHash:
      return to.ss.onRemoteHash(from, m.frame, m.digest, nullptr, to.current, kWindow, now);
    case MsgType::EpisodeEnd:
      return to.ss.onEpisodeEnd(from, m.frame, m.episode, now);
    case MsgType::EpisodeReady:
      return to.ss.onEpisodeReady(from, m.episode, m.digest, now);
    default:
      FAIL("unexpected message type");
  }
  return RxResult::Ok;
}

struct Flight {
  double at;
  int from, to;
  Rec rec;
};

// N peers, one-way latency, scripted drops: drop(from, to, rec, seq) with seq counting the
// messages of that direction.
struct Mesh {
  std::vector<std::unique_ptr<Member>> nodes;
  std::deque<Flight> inflight;
  double now = 0;
  double latency = 30;
  std::function<bool(int, int, const Rec&, uint64_t)> drop = [](int, int, const Rec&, uint64_t) { return false; };
  std::function<double()> jitter;  // extra per-message delay (reordering), optional
  uint64_t seq[4][4] = {};
  uint64_t messages = 0;  // records put on the wire (after fan-out, before drops)
  std::vector<RxResult> results;

  Mesh(int n, std::function<void(StateSyncConfig&)> tweak = nullptr) {
    for (int i = 0; i < n; ++i) {
      StateSyncConfig c = cfg(n, i);
      if (tweak) tweak(c);
      nodes.push_back(std::make_unique<Member>(i, c));
    }
  }
  Member& operator[](int i) { return *nodes[static_cast<size_t>(i)]; }

  void flush(Member& n) {
    for (Rec& r : drain(n.out)) {
      for (auto& dst : nodes) {
        if (dst->idx == n.idx || (r.to != -1 && r.to != dst->idx)) continue;
        ++messages;
        const uint64_t s = seq[n.idx][dst->idx]++;
        if (drop(n.idx, dst->idx, r, s)) continue;
        inflight.push_back({now + latency + (jitter ? jitter() : 0.0), n.idx, dst->idx, r});
      }
    }
  }
  void updateAll() {
    for (auto& n : nodes) {
      n->ss.update(n->confirmed, n->current, n->p2p, now, n->out, n->ev);
      for (json& e : takeEvents(n->ev)) n->events.push_back(std::move(e));
      flush(*n);
    }
  }
  void deliverDue() {
    std::deque<Flight> keep;
    while (!inflight.empty()) {
      Flight f = std::move(inflight.front());
      inflight.pop_front();
      if (f.at <= now) results.push_back(deliver((*this)[f.to], f.from, f.rec, now));
      else keep.push_back(std::move(f));
    }
    inflight = std::move(keep);
  }
  void step(double dt) {
    now += dt;
    deliverDue();
    updateAll();
  }
  void run(double ms, double dt = 16) {
    const double end = now + ms;
    while (now < end) step(dt);
  }
};

}  // namespace

// ===================================================================================== hashes

TEST_CASE("config validation", "[state_sync]") {
  CHECK(StateSync::validateConfig(cfg(2, 0)) == nullptr);
  CHECK(std::string(StateSync::validateConfig(cfg(1, 0))) == "numPlayers");
  CHECK(std::string(StateSync::validateConfig(cfg(5, 0))) == "numPlayers");
  CHECK(std::string(StateSync::validateConfig(cfg(2, 2))) == "localPlayer");
  CHECK(std::string(StateSync::validateConfig(cfg(2, 0, 0))) == "hashInterval");
  CHECK(std::string(StateSync::validateConfig(cfg(2, 0, 5, 0))) == "hashHistory");
  StateSyncConfig c = cfg(2, 0);
  c.playerIds = {json(0)};
  CHECK(std::string(StateSync::validateConfig(c)) == "playerIds");
  c.playerIds = {json("a"), json::object()};
  CHECK(std::string(StateSync::validateConfig(c)) == "playerIds");
  c.playerIds = {json("a"), json("b")};
  CHECK(StateSync::validateConfig(c) == nullptr);
  c.resendMs = 0;
  CHECK(std::string(StateSync::validateConfig(c)) == "resendMs");
  // the constructor clamps instead of failing
  StateSync s(cfg(9, 7, 0, 0));
  CHECK(s.config().numPlayers == 4);
  CHECK(s.config().localPlayer == 3);
  CHECK(s.config().hashInterval == 1);
  CHECK(s.config().hashHistory == 1);
}

TEST_CASE("unconfirmed hashes are never sent; confirmed ones go on P2P (and the relay only with relayHashes always)", "[state_sync]") {
  for (bool always : {false, true}) {
    CAPTURE(always);
    StateSyncConfig c = cfg(2, 0);
    c.playerIds = {json("subj-a"), json("subj-b")};
    c.relayHashesAlways = always;
    StateSync s(c);
    Outbox out(256 * 1024);
    EventQueue ev(256 * 1024);
    s.onLocalHash(10, 0xabcdef0123456789ULL);
    s.onLocalHash(7, 1);  // not a hash frame: ignored
    s.update(5, 12, true, 0, out, ev);
    CHECK(out.count() == 0);
    CHECK(ev.count() == 0);
    s.update(8, 12, true, 1, out, ev);  // 10 - 1 = 9 > 8: still unconfirmed
    CHECK(out.count() == 0);
    s.update(-1, 12, true, 1, out, ev);
    CHECK(out.count() == 0);
    CHECK(s.hashesSentCount() == 0);

    s.update(9, 12, true, 2, out, ev);
    auto recs = drain(out);
    REQUIRE(recs.size() == (always ? 2u : 1u));  // P2P usable: the relay copy only when asked for
    CHECK(recs[0].kind == OutKind::Packet);
    CHECK(recs[0].path == Path::P2P);
    CHECK(recs[0].to == -1);
    const Message m = decodeRec(recs[0]);
    CHECK(m.type == MsgType::StateHash);
    CHECK(m.frame == 10);
    CHECK(m.digest == 0xabcdef0123456789ULL);
    if (always) {
      CHECK(recs[1].kind == OutKind::RelayJson);
      CHECK(recs[1].path == Path::Relay);
      CHECK(recs[1].ev == RelayEvent::StateSync);
      CHECK(recs[1].to == -1);
      StateSyncMsg sm;
      const std::string t = recs[1].text();
      REQUIRE(parseStateSync(t.data(), t.size(), sm) == RxResult::Ok);
      CHECK(sm.frame == 10);
      CHECK(sm.hash == 0xabcdef0123456789ULL);
      CHECK(sm.gameId == "g1");
      CHECK(sm.senderId == json("subj-a"));
    }
    auto evs = takeEvents(ev);
    REQUIRE(evs.size() == 1);
    CHECK(evs[0]["type"] == "hashBroadcast");
    CHECK(evs[0]["frame"] == 10);
    CHECK(evs[0]["player"] == 0);
    CHECK(evs[0]["hash"] == "abcdef0123456789");
    CHECK(evs[0]["resend"] == false);
    CHECK(s.hashesSentCount() == 1);

    // sent once only
    s.update(20, 25, true, 3, out, ev);
    CHECK(out.count() == 0);
    CHECK(s.hashesSentCount() == 1);
  }
}

TEST_CASE("relay-only sending when P2P is unusable", "[state_sync]") {
  StateSync s(cfg(3, 2));
  Outbox out(256 * 1024);
  EventQueue ev(256 * 1024);
  s.onLocalHash(5, 42);
  s.onLocalHash(10, 43);
  s.update(20, 20, false, 0, out, ev);
  auto recs = drain(out);
  REQUIRE(recs.size() == 2);  // two frames, relay JSON only
  for (const Rec& r : recs) {
    CHECK(r.kind == OutKind::RelayJson);
    CHECK(r.ev == RelayEvent::StateSync);
  }
  StateSyncMsg sm;
  std::string t = recs[0].text();
  REQUIRE(parseStateSync(t.data(), t.size(), sm) == RxResult::Ok);
  CHECK(sm.frame == 5);  // oldest first
  CHECK(sm.senderId == json(2));  // default sender_id: the player index
  CHECK(s.hashesSentCount() == 2);
}

TEST_CASE("matching hashes advance verifiedFrame on both sides", "[state_sync]") {
  Mesh net(2);
  for (int i = 0; i < 2; ++i) {
    for (uint32_t f = 1; f <= 30; ++f) net[i].ss.onLocalHash(f, 1000 + f);
    net[i].confirmed = 20;
    net[i].current = 30;
  }
  net.latency = 0;
  net.step(16);  // send
  net.step(16);  // deliver + compare
  for (int i = 0; i < 2; ++i) {
    CHECK(net[i].ss.verifiedFrame() == 20);  // 25 is not confirmed (needs confirmedFrame >= 24)
    CHECK(net[i].ss.matchCount() == 4);
    CHECK(net[i].ss.hashesSentCount() == 4);
    CHECK(net[i].ss.hashesReceivedCount() == 4);
    CHECK(net[i].ss.desyncCount() == 0);
    CHECK(ofType(net[i].events, "desync").empty());
    CHECK(ofType(net[i].events, "verified").back()["frame"] == 20);
  }
  // every result was Ok: P2P is usable, so no relay copy is sent (no Duplicate)
  size_t ok = 0, dup = 0;
  for (RxResult r : net.results) {
    if (r == RxResult::Ok) ++ok;
    else if (r == RxResult::Duplicate) ++dup;
    else FAIL(rxResultName(r));
  }
  CHECK(ok == 8);
  CHECK(dup == 0);
  for (int i = 0; i < 2; ++i) net[i].confirmed = 30;
  net.step(16);
  net.step(16);
  CHECK(net[0].ss.verifiedFrame() == 30);
  CHECK(net[1].ss.verifiedFrame() == 30);
  const json j = net[0].ss.toJson();
  for (const char* k : {"hashesSent", "hashesResent", "hashesReceived", "matches", "verifiedFrame", "unverifiable", "desyncEvents"})
    CHECK(j.contains(k));
  CHECK(j["verifiedFrame"] == 30);
  CHECK(j["hashesSent"] == 6);
  CHECK(j["desyncEvents"].is_array());
}

TEST_CASE("mismatch: exactly one desync event per (peer, frame) with both hashes and the counts diff", "[state_sync]") {
  // The counts travel in the relay copy: sent while P2P is usable too with relayHashes "always".
  Mesh net(2, [](StateSyncConfig& c) { c.relayHashesAlways = true; });
  net.latency = 0;
  const uint8_t a0[2] = {1, 2};
  const uint8_t a1[2] = {1, 3};  // peer 1 executed a different action at frame 7 (a desync cause)
  for (int i = 0; i < 2; ++i) {
    for (uint32_t f = 0; f < 15; ++f) REQUIRE(net[i].ss.onConfirmedActions(f, (i == 1 && f == 7) ? a1 : a0, 2));
    net[i].ss.onLocalHash(5, 500);
    net[i].ss.onLocalHash(10, i == 0 ? 0x1111ULL : 0x2222ULL);
    net[i].ss.onLocalHash(15, i == 0 ? 0x3333ULL : 0x4444ULL);
    net[i].confirmed = 14;
    net[i].current = 17;
  }
  net.step(16);
  net.step(16);
  net.run(200);
  for (int i = 0; i < 2; ++i) {
    const auto d = ofType(net[i].events, "desync");
    REQUIRE(d.size() == 2);
    CHECK(net[i].ss.desyncCount() == 2);
    CHECK(d[0]["frame"] == 10);
    CHECK(d[0]["peer"] == 1 - i);
    CHECK(d[0]["localHash"] == hex(i == 0 ? 0x1111 : 0x2222));
    CHECK(d[0]["remoteHash"] == hex(i == 0 ? 0x2222 : 0x1111));
    CHECK(d[0]["detectedAtFrame"] == 17);
    CHECK(d[1]["frame"] == 15);
    // counts over frames 0..9: actor 1 did action 2 nine times here, action 3 once there
    const json want = i == 0 ? json::parse(R"({"1":{"2":1,"3":-1}})") : json::parse(R"({"1":{"2":-1,"3":1}})");
    CHECK(d[0]["actionCountDiff"] == want);
    CHECK(net[i].ss.verifiedFrame() == 5);
    CHECK(net[i].ss.desyncEvents().size() == 2);
    CHECK(net[i].ss.toJson()["desyncEvents"].size() == 2);
  }
}

TEST_CASE("binary hash compared before the relay copy: counts arrive later and complete the record", "[state_sync]") {
  StateSync a(cfg(2, 0));
  Outbox out(256 * 1024);
  EventQueue ev(256 * 1024);
  const uint8_t acts[2] = {4, 4};
  for (uint32_t f = 0; f < 5; ++f) a.onConfirmedActions(f, acts, 2);
  a.onLocalHash(5, 7);
  CHECK(a.onRemoteHash(1, 5, 8, nullptr, 6, kWindow, 0) == RxResult::Ok);
  a.update(4, 6, true, 0, out, ev);
  auto d = ofType(takeEvents(ev), "desync");
  REQUIRE(d.size() == 1);
  CHECK(d[0]["actionCountDiff"].is_null());
  ActionCounts rc;
  rc.set(0, 4, 5);
  rc.set(1, 4, 4);
  rc.set(1, 9, 1);
  CHECK(a.onRemoteHash(1, 5, 8, &rc, 6, kWindow, 1) == RxResult::Duplicate);
  a.update(4, 6, true, 1, out, ev);
  CHECK(ofType(takeEvents(ev), "desync").empty());  // still reported once
  REQUIRE(a.desyncEvents().size() == 1);
  CHECK(a.desyncEvents()[0]["actionCountDiff"] == json::parse(R"({"1":{"4":1,"9":-1}})"));
  CHECK(a.desyncCount() == 1);
}

TEST_CASE("a remote hash that arrives before the local one waits, then compares", "[state_sync]") {
  StateSync a(cfg(2, 0));
  Outbox out(256 * 1024);
  EventQueue ev(256 * 1024);
  CHECK(a.onRemoteHash(1, 10, 99, nullptr, 3, kWindow, 0) == RxResult::Ok);
  a.update(2, 3, true, 0, out, ev);
  CHECK(a.matchCount() == 0);
  a.onLocalHash(10, 99);
  a.update(5, 12, true, 1, out, ev);  // local hash exists but is not confirmed: not compared
  CHECK(a.matchCount() == 0);
  CHECK(a.verifiedFrame() == 0);
  a.update(9, 12, true, 2, out, ev);
  CHECK(a.matchCount() == 1);
  CHECK(a.verifiedFrame() == 10);
  CHECK(a.peerVerifiedFrame(1) == 10);
  // a mismatching early remote hash is reported when its local hash becomes final
  CHECK(a.onRemoteHash(1, 15, 5, nullptr, 12, kWindow, 3) == RxResult::Ok);
  a.onLocalHash(15, 6);
  a.update(13, 16, true, 3, out, ev);
  CHECK(a.desyncCount() == 0);
  a.update(14, 16, true, 4, out, ev);
  CHECK(a.desyncCount() == 1);
}

TEST_CASE("rollback invalidates local hashes; a changed sent hash is re-sent", "[state_sync]") {
  StateSync a(cfg(2, 0));
  Outbox out(256 * 1024);
  EventQueue ev(256 * 1024);
  // predicted hash of 10, then a rollback to 7: invalid until re-stored
  a.onLocalHash(10, 111);
  CHECK(a.onRemoteHash(1, 10, 222, nullptr, 12, kWindow, 0) == RxResult::Ok);
  a.onRollback(7);
  a.update(9, 12, true, 0, out, ev);
  CHECK(out.count() == 0);          // invalid: not sent
  CHECK(a.desyncCount() == 0);      // invalid: not compared
  CHECK(a.matchCount() == 0);
  a.onLocalHash(10, 222);           // re-simulated value
  a.update(9, 12, true, 1, out, ev);
  auto recs = drain(out);
  REQUIRE(recs.size() == 1);  // STATE_HASH on P2P (no relay copy while P2P is usable)
  CHECK(recs[0].path == Path::P2P);
  CHECK(decodeRec(recs[0]).digest == 222);
  CHECK(a.matchCount() == 1);
  CHECK(a.desyncCount() == 0);
  CHECK(a.hashesResentCount() == 0);

  // rollback to a frame >= 10 leaves 10 valid
  a.onRollback(10);
  a.update(9, 12, true, 2, out, ev);
  CHECK(out.count() == 0);
  takeEvents(ev);

  // a sent hash restored to the same value is not re-sent
  a.onRollback(8);
  a.onLocalHash(10, 222);
  a.update(9, 12, true, 3, out, ev);
  CHECK(out.count() == 0);

  // a sent hash that changes is re-sent (and re-compared against the stored remote)
  a.onLocalHash(10, 333);
  a.update(9, 12, true, 4, out, ev);
  recs = drain(out);
  REQUIRE(recs.size() == 1);
  CHECK(decodeRec(recs[0]).digest == 333);
  CHECK(a.hashesResentCount() == 1);
  CHECK(a.hashesSentCount() == 1);
  auto evs = takeEvents(ev);
  REQUIRE(ofType(evs, "hashBroadcast").size() == 1);
  CHECK(ofType(evs, "hashBroadcast")[0]["resend"] == true);
  CHECK(ofType(evs, "desync").size() == 1);
  CHECK(a.toJson()["hashesResent"] == 1);
}

TEST_CASE("remote hash validation: too old, future, not a hash frame, duplicates, unknown peer", "[state_sync]") {
  StateSync a(cfg(3, 0, 5, 4));  // history: 4 hash frames
  Outbox out(256 * 1024);
  EventQueue ev(256 * 1024);
  for (uint32_t f = 5; f <= 40; f += 5) a.onLocalHash(f, f);
  // kept: 25, 30, 35, 40
  CHECK(a.onRemoteHash(1, 20, 20, nullptr, 40, kWindow, 0) == RxResult::Unverifiable);
  CHECK(a.onRemoteHash(1, 5, 999, nullptr, 40, kWindow, 0) == RxResult::Unverifiable);
  CHECK(a.unverifiableCount() == 2);
  CHECK(a.onRemoteHash(1, 25, 25, nullptr, 40, kWindow, 0) == RxResult::Ok);
  CHECK(a.onRemoteHash(1, 105, 1, nullptr, 40, kWindow, 0) == RxResult::OutOfWindow);  // > 40 + 60
  CHECK(a.onRemoteHash(1, 45, 45, nullptr, 40, kWindow, 0) == RxResult::OutOfWindow);  // would evict pending 25
  CHECK(a.onRemoteHash(1, 41, 1, nullptr, 40, kWindow, 0) == RxResult::BadValue);
  CHECK(a.onRemoteHash(1, 0, 1, nullptr, 40, kWindow, 0) == RxResult::BadValue);
  CHECK(a.onRemoteHash(0, 25, 25, nullptr, 40, kWindow, 0) == RxResult::UnknownPlayer);
  CHECK(a.onRemoteHash(3, 25, 25, nullptr, 40, kWindow, 0) == RxResult::UnknownPlayer);
  CHECK(a.onRemoteHash(-1, 25, 25, nullptr, 40, kWindow, 0) == RxResult::UnknownPlayer);
  CHECK(a.onRemoteHash(1, 25, 25, nullptr, 40, kWindow, 0) == RxResult::Duplicate);
  ActionCounts c;
  c.add(0, 1);
  CHECK(a.onRemoteHash(1, 25, 25, &c, 40, kWindow, 0) == RxResult::Duplicate);  // relay copy
  CHECK(a.onRemoteHash(2, 30, 30, nullptr, 40, kWindow, 0) == RxResult::Ok);
  a.update(40, 41, true, 0, out, ev);
  CHECK(a.desyncCount() == 0);
  CHECK(a.matchCount() == 2);
  CHECK(a.peerVerifiedFrame(1) == 25);
  CHECK(a.peerVerifiedFrame(2) == 30);
  CHECK(a.verifiedFrame() == 0);  // no frame matched by both peers yet
  CHECK(a.onRemoteHash(1, 30, 30, nullptr, 40, kWindow, 0) == RxResult::Ok);
  a.update(40, 41, true, 0, out, ev);
  CHECK(a.verifiedFrame() == 30);
  CHECK(a.onRemoteHash(2, 25, 25, nullptr, 40, kWindow, 0) == RxResult::Ok);
  a.update(40, 41, true, 0, out, ev);
  CHECK(a.verifiedFrame() == 30);  // never goes back

  // a pending remote hash that falls out of the history is counted as unverifiable
  CHECK(a.onRemoteHash(1, 45, 45, nullptr, 40, kWindow, 0) == RxResult::Ok);
  const uint64_t before = a.unverifiableCount();
  for (uint32_t f = 45; f <= 80; f += 5)
    if (f != 45) a.onLocalHash(f, f);  // local 45 never stored
  a.update(40, 80, true, 1, out, ev);
  CHECK(a.unverifiableCount() == before + 1);
  CHECK(a.desyncCount() == 0);
}

TEST_CASE("a changed remote hash for a known frame replaces it; desync still reported once", "[state_sync]") {
  StateSync a(cfg(2, 0));
  Outbox out(256 * 1024);
  EventQueue ev(256 * 1024);
  a.onLocalHash(5, 1);
  CHECK(a.onRemoteHash(1, 5, 2, nullptr, 5, kWindow, 0) == RxResult::Ok);
  a.update(4, 5, true, 0, out, ev);
  CHECK(a.desyncCount() == 1);
  CHECK(a.onRemoteHash(1, 5, 3, nullptr, 5, kWindow, 0) == RxResult::Ok);
  a.update(4, 5, true, 0, out, ev);
  CHECK(a.desyncCount() == 1);
  CHECK(a.onRemoteHash(1, 5, 1, nullptr, 5, kWindow, 0) == RxResult::Ok);  // the peer's corrected hash
  a.update(4, 5, true, 0, out, ev);
  CHECK(a.matchCount() == 1);
  CHECK(a.verifiedFrame() == 5);
}

TEST_CASE("relay p2p_state_sync intake: spoofed sender, other game, bad JSON", "[state_sync]") {
  StateSync a(cfg(2, 0));
  ActionCounts c;
  std::string s = formatStateSync("g1", json(1), 5, 9, c);
  std::string spoof = s;
  spoof.insert(1, "\"from\":0,");
  CHECK(a.onRelayStateSync(1, spoof.data(), spoof.size(), 5, kWindow, 0) == RxResult::SpoofedPlayer);
  std::string other = formatStateSync("g2", json(1), 5, 9, c);
  CHECK(a.onRelayStateSync(1, other.data(), other.size(), 5, kWindow, 0) == RxResult::BadValue);
  CHECK(a.onRelayStateSync(1, "{}", 2, 5, kWindow, 0) == RxResult::BadRelayJson);
  CHECK(a.onRelayStateSync(5, s.data(), s.size(), 5, kWindow, 0) == RxResult::UnknownPlayer);
  std::string fromOk = s;
  fromOk.insert(1, "\"from\":1,");
  CHECK(a.onRelayStateSync(1, fromOk.data(), fromOk.size(), 5, kWindow, 0) == RxResult::Ok);
  CHECK(a.onRelayStateSync(1, s.data(), s.size(), 5, kWindow, 0) == RxResult::Duplicate);
}

TEST_CASE("verifiedFrame needs every remote peer (3 players, full wiring)", "[state_sync]") {
  Mesh net(3);
  net.latency = 0;
  for (int i = 0; i < 3; ++i) {
    for (uint32_t f = 5; f <= 20; f += 5) net[i].ss.onLocalHash(f, f * 7);
    net[i].confirmed = 19;
    net[i].current = 20;
  }
  // peer 2's messages never reach peer 0
  net.drop = [](int from, int to, const Rec&, uint64_t) { return from == 2 && to == 0; };
  net.run(64);
  CHECK(net[0].ss.verifiedFrame() == 0);
  CHECK(net[0].ss.peerVerifiedFrame(1) == 20);
  CHECK(net[1].ss.verifiedFrame() == 20);
  CHECK(net[2].ss.verifiedFrame() == 20);
}

// ===================================================================================== episodes

namespace {

// Runs END exchange + READY of the next episode under `drop`; returns messages sent.
void endAndReady(Mesh& net, double latency, std::function<bool(int, int, const Rec&, uint64_t)> drop,
                 uint32_t endA, uint32_t endB) {
  net.latency = latency;
  net.drop = std::move(drop);
  for (int i = 0; i < 2; ++i) net[i].ss.beginEpisode(0, 0xD1, net.now);
  net.run(5000);
  REQUIRE(net[0].ss.allReady());
  REQUIRE(net[1].ss.allReady());
  net[0].ss.localEpisodeEnd(endA, net.now);
  net.run(48);
  net[1].ss.localEpisodeEnd(endB, net.now);
  net.run(5000);
  for (int i = 0; i < 2; ++i) {
    REQUIRE(net[i].ss.episodeEndSynced());
    CHECK(net[i].ss.syncedEndFrame() == std::min(endA, endB));
  }
}

}  // namespace

TEST_CASE("END / READY: no loss -> minimal messages", "[state_sync][episode]") {
  Mesh net(2);
  endAndReady(net, 30, [](int, int, const Rec&, uint64_t) { return false; }, 300, 298);
  CHECK(net[0].ss.readyMessagesSent() == 1);
  CHECK(net[1].ss.readyMessagesSent() == 1);
  CHECK(net[0].ss.endMessagesSent() == 1);
  CHECK(net[1].ss.endMessagesSent() == 1);
  CHECK(net.messages == 4);
  for (RxResult r : net.results) CHECK(r == RxResult::Ok);
  CHECK(net[0].ss.toJson()["syncedEndFrame"] == 298);
}

TEST_CASE("END / READY with scripted loss in both directions terminate without endless echo", "[state_sync][episode]") {
  struct Pattern {
    const char* name;
    double latency;
    std::function<bool(int, int, const Rec&, uint64_t)> drop;
  };
  uint64_t lcg = 12345;
  auto rnd = [&lcg]() {
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<uint32_t>(lcg >> 33);
  };
  std::vector<Pattern> patterns = {
      {"first 3 each way", 30, [](int, int, const Rec&, uint64_t s) { return s < 3; }},
      {"A->B first 5, B->A every other", 30,
       [](int f, int, const Rec&, uint64_t s) { return f == 0 ? s < 5 : (s % 2 == 0); }},
      {"B->A only: first 6", 20, [](int f, int, const Rec&, uint64_t s) { return f == 1 && s < 6; }},
      {"all replies lost once (2nd,3rd of each direction)", 30,
       [](int, int, const Rec&, uint64_t s) { return s == 1 || s == 2; }},
      {"slow link (RTT > resendMs), first 2 lost", 180, [](int, int, const Rec&, uint64_t s) { return s < 2; }},
      {"50% pseudo-random", 40, [&rnd](int, int, const Rec&, uint64_t) { return rnd() % 2 == 0; }},
      {"70% pseudo-random, slow", 120, [&rnd](int, int, const Rec&, uint64_t) { return rnd() % 10 < 7; }},
  };
  for (auto& p : patterns) {
    DYNAMIC_SECTION(p.name) {
      Mesh net(2);
      endAndReady(net, p.latency, p.drop, 500, 503);
      // settle: no more traffic at all
      const uint64_t sent = net.messages;
      net.drop = [](int, int, const Rec&, uint64_t) { return false; };
      net.run(3000);
      CHECK(net.messages == sent);
      CHECK(net.inflight.empty());
      // bounded: each side's re-sends + answers stay small
      INFO("messages " << sent);
      CHECK(sent <= 120);
      for (int i = 0; i < 2; ++i) {
        CHECK(net[i].ss.allReady());
        CHECK(net[i].ss.episodeEndSynced());
        CHECK(net[i].ss.syncedEndFrame() == 500);
        CHECK(net[i].ss.desyncCount() == 0);
      }
    }
  }
}

TEST_CASE("a duplicate is answered, an answer is not answered back (no ping-pong)", "[state_sync][episode]") {
  StateSync a(cfg(2, 0));
  Outbox out(256 * 1024);
  EventQueue ev(256 * 1024);
  a.beginEpisode(1, 5, 0);
  a.update(-1, 0, true, 0, out, ev);
  REQUIRE(drain(out).size() == 1);  // initial READY
  CHECK(a.onEpisodeReady(1, 1, 5, 1) == RxResult::Ok);  // first: never answered
  a.update(-1, 0, true, 10, out, ev);
  CHECK(out.count() == 0);
  CHECK(a.onEpisodeReady(1, 1, 5, 20) == RxResult::Duplicate);  // peer lacks ours: answer once
  a.update(-1, 0, true, 30, out, ev);
  auto recs = drain(out);
  REQUIRE(recs.size() == 1);
  CHECK(decodeRec(recs[0]).type == MsgType::EpisodeReady);
  CHECK(recs[0].to == 1);
  // the next duplicate alone is not answered (could be the peer's answer to our answer) ...
  CHECK(a.onEpisodeReady(1, 1, 5, 40) == RxResult::Duplicate);
  a.update(-1, 0, true, 50, out, ev);
  CHECK(out.count() == 0);
  // ... a second one (the peer keeps re-sending: it still lacks ours) is
  CHECK(a.onEpisodeReady(1, 1, 5, 140) == RxResult::Duplicate);
  a.update(-1, 0, true, 150, out, ev);
  CHECK(drain(out).size() == 1);
  CHECK(a.onEpisodeReady(1, 1, 6, 160) == RxResult::Conflict);
  // periodic re-sends stopped when the peer's READY arrived
  a.update(-1, 0, true, 5000, out, ev);
  CHECK(out.count() == 0);
}

TEST_CASE("END / READY go as relay packets when P2P is unusable; END re-sent every resendMs", "[state_sync][episode]") {
  StateSync a(cfg(3, 1));
  Outbox out(256 * 1024);
  EventQueue ev(256 * 1024);
  a.localEpisodeEnd(77, 0);
  a.update(-1, 77, false, 0, out, ev);
  auto recs = drain(out);
  REQUIRE(recs.size() == 2);  // to peers 0 and 2
  for (const Rec& r : recs) {
    CHECK(r.kind == OutKind::Packet);
    CHECK(r.path == Path::Relay);
    CHECK(r.ev == RelayEvent::Packet);
    const Message m = decodeRec(r);
    CHECK(m.type == MsgType::EpisodeEnd);
    CHECK(m.frame == 77);
    CHECK(m.episode == 0);
  }
  CHECK(recs[0].to == 0);
  CHECK(recs[1].to == 2);
  CHECK(a.onEpisodeEnd(0, 80, 0, 10) == RxResult::Ok);
  a.update(-1, 77, false, 50, out, ev);
  CHECK(out.count() == 0);  // not yet due
  a.update(-1, 77, true, 100, out, ev);
  recs = drain(out);
  REQUIRE(recs.size() == 1);  // only peer 2 is missing
  CHECK(recs[0].to == 2);
  CHECK(recs[0].path == Path::P2P);
  CHECK_FALSE(a.episodeEndSynced());
  CHECK(a.onEpisodeEnd(2, 75, 0, 120) == RxResult::Ok);
  CHECK(a.episodeEndSynced());
  CHECK(a.syncedEndFrame() == 75);
  CHECK(a.onEpisodeEnd(2, 75, 3, 130) == RxResult::StaleEpisode);
  CHECK(a.onEpisodeEnd(1, 75, 0, 130) == RxResult::UnknownPlayer);
  CHECK(a.onEpisodeEnd(2, 76, 0, 130) == RxResult::Conflict);
  CHECK(a.syncedEndFrame() == 75);
  a.update(-1, 77, true, 1000, out, ev);
  CHECK(drain(out).size() == 1);  // the duplicate from 2 is answered once
  a.update(-1, 77, true, 2000, out, ev);
  CHECK(out.count() == 0);
}

TEST_CASE("READY: stale episode ignored, digest mismatch -> desync at frame 0, early READY kept", "[state_sync][episode]") {
  StateSync a(cfg(2, 0));
  Outbox out(256 * 1024);
  EventQueue ev(256 * 1024);
  a.beginEpisode(2, 0xAAAA, 0);
  CHECK(a.onEpisodeReady(1, 1, 0xAAAA, 0) == RxResult::StaleEpisode);
  CHECK(a.onEpisodeReady(1, 5, 0xAAAA, 0) == RxResult::StaleEpisode);
  CHECK(a.onEpisodeReady(0, 2, 0xAAAA, 0) == RxResult::UnknownPlayer);
  CHECK_FALSE(a.allReady());
  CHECK(a.onEpisodeReady(1, 2, 0xBBBB, 0) == RxResult::Ok);
  CHECK(a.allReady());
  a.update(-1, 0, true, 0, out, ev);
  auto d = ofType(takeEvents(ev), "desync");
  REQUIRE(d.size() == 1);
  CHECK(d[0]["frame"] == 0);
  CHECK(d[0]["peer"] == 1);
  CHECK(d[0]["localHash"] == hex(0xAAAA));
  CHECK(d[0]["remoteHash"] == hex(0xBBBB));
  CHECK(d[0]["episode"] == 2);
  a.update(-1, 0, true, 1, out, ev);
  CHECK(ofType(takeEvents(ev), "desync").empty());
  CHECK(a.desyncCount() == 1);

  // the peer reset faster: its READY for episode 3 arrives before our beginEpisode(3)
  CHECK(a.onEpisodeReady(1, 3, 0xCCCC, 10) == RxResult::Ok);
  CHECK(a.onEpisodeReady(1, 3, 0xCCCC, 20) == RxResult::Duplicate);
  CHECK(a.onEpisodeReady(1, 4, 0xCCCC, 20) == RxResult::StaleEpisode);
  CHECK(a.episode() == 2);
  drain(out);
  a.beginEpisode(3, 0xCCCC, 30);
  CHECK(a.allReady());
  a.update(-1, 0, true, 30, out, ev);
  CHECK(ofType(takeEvents(ev), "desync").empty());
  auto recs = drain(out);
  REQUIRE(recs.size() == 1);  // our READY still goes out once
  CHECK(decodeRec(recs[0]).episode == 3);
  a.update(-1, 0, true, 1000, out, ev);
  CHECK(out.count() == 0);  // and is not re-sent (peer's READY is in)

  // early READY with another digest -> desync at begin
  CHECK(a.onEpisodeReady(1, 4, 0xDDDD, 40) == RxResult::Ok);
  a.beginEpisode(4, 0xEEEE, 50);
  a.update(-1, 0, true, 50, out, ev);
  d = ofType(takeEvents(ev), "desync");
  REQUIRE(d.size() == 1);
  CHECK(d[0]["frame"] == 0);
  CHECK(d[0]["remoteHash"] == hex(0xDDDD));
  // an early READY for a different episode is dropped at begin
  CHECK(a.onEpisodeReady(1, 5, 0xFFFF, 60) == RxResult::Ok);
  a.beginEpisode(7, 0xFFFF, 70);
  CHECK_FALSE(a.allReady());
}

TEST_CASE("beginEpisode resets hash state but keeps session counters; hashes wait for the peer's READY", "[state_sync][episode]") {
  StateSync a(cfg(2, 0));
  Outbox out(256 * 1024);
  EventQueue ev(256 * 1024);
  a.beginEpisode(0, 1, 0);
  CHECK(a.onRemoteHash(1, 5, 5, nullptr, 5, kWindow, 0) == RxResult::StaleEpisode);  // before its READY
  CHECK(a.onEpisodeReady(1, 0, 1, 0) == RxResult::Ok);
  a.onLocalHash(5, 5);
  a.onLocalHash(10, 10);
  CHECK(a.onRemoteHash(1, 5, 5, nullptr, 5, kWindow, 0) == RxResult::Ok);
  CHECK(a.onRemoteHash(1, 10, 11, nullptr, 10, kWindow, 0) == RxResult::Ok);
  a.update(10, 11, true, 0, out, ev);
  CHECK(a.verifiedFrame() == 5);
  CHECK(a.desyncCount() == 1);
  CHECK(a.hashesSentCount() == 2);
  a.localEpisodeEnd(11, 1);
  CHECK(a.onEpisodeEnd(1, 11, 0, 1) == RxResult::Ok);
  a.beginEpisode(1, 2, 2);
  CHECK(a.verifiedFrame() == 0);
  CHECK(a.hashesSentCount() == 2);
  CHECK(a.desyncCount() == 1);
  CHECK(a.desyncEvents().size() == 1);
  CHECK_FALSE(a.localEnded());
  CHECK_FALSE(a.episodeEndSynced());
  // late hash of the previous episode (frame 10) is not compared with the new episode's frame 10
  CHECK(a.onRemoteHash(1, 10, 11, nullptr, 10, kWindow, 3) == RxResult::StaleEpisode);
  a.onLocalHash(10, 12);
  drain(out);
  a.update(10, 11, true, 4, out, ev);
  CHECK(a.desyncCount() == 1);
}

TEST_CASE("a peer that missed our END after we began the next episode still gets it", "[state_sync][episode]") {
  Mesh net(2);
  net.latency = 30;
  for (int i = 0; i < 2; ++i) net[i].ss.beginEpisode(0, 9, 0);
  net.run(200);
  REQUIRE(net[0].ss.allReady());
  REQUIRE(net[1].ss.allReady());
  // A's END never reaches B until A has moved on
  bool aMovedOn = false;
  net.drop = [&aMovedOn](int from, int, const Rec& r, uint64_t) {
    if (from != 0 || aMovedOn || r.kind != OutKind::Packet) return false;
    Message m;
    return decode(r.bytes.data(), r.bytes.size(), m) == DecodeError::Ok && m.type == MsgType::EpisodeEnd;
  };
  net[0].ss.localEpisodeEnd(100, net.now);
  net[1].ss.localEpisodeEnd(100, net.now);
  net.run(100);
  REQUIRE(net[0].ss.episodeEndSynced());
  REQUIRE_FALSE(net[1].ss.episodeEndSynced());
  net[0].ss.beginEpisode(1, 10, net.now);  // A resets at once
  aMovedOn = true;
  net.run(1000);
  CHECK(net[1].ss.episodeEndSynced());
  CHECK(net[1].ss.syncedEndFrame() == 100);
  net[1].ss.beginEpisode(1, 10, net.now);
  net.run(1000);
  CHECK(net[0].ss.allReady());
  CHECK(net[1].ss.allReady());
  const uint64_t sent = net.messages;
  net.run(2000);
  CHECK(net.messages == sent);
}

TEST_CASE("every END of a peer still in the previous episode is answered; a late one after its READY is not", "[state_sync][episode]") {
  Mesh net(2);
  net.latency = 30;
  for (int i = 0; i < 2; ++i) net[i].ss.beginEpisode(0, 9, 0);
  net.run(200);
  REQUIRE(net[0].ss.allReady());
  // everything A sends to B is lost until `cutUntil`; B's ENDs reaching A are counted
  double cutUntil = 1e300;
  uint64_t bEnds = 0, aEnds = 0;
  auto isEnd = [](const Rec& r) {
    Message m;
    return r.kind == OutKind::Packet && decode(r.bytes.data(), r.bytes.size(), m) == DecodeError::Ok && m.type == MsgType::EpisodeEnd;
  };
  net.drop = [&](int from, int, const Rec& r, uint64_t) {
    if (from == 1 && isEnd(r)) ++bEnds;
    if (from == 0 && isEnd(r)) ++aEnds;
    return from == 0 && net.now < cutUntil;
  };
  net[0].ss.localEpisodeEnd(100, net.now);
  net[1].ss.localEpisodeEnd(100, net.now);
  net.run(100);
  REQUIRE(net[0].ss.episodeEndSynced());
  net[0].ss.beginEpisode(1, 10, net.now);  // A moves on; B still waits for A's END
  bEnds = aEnds = 0;
  net.run(2000);
  REQUIRE_FALSE(net[1].ss.episodeEndSynced());
  // B re-sends every resendMs; A answered each one (all lost so far)
  CHECK(bEnds >= 4);
  CHECK(aEnds + 1 >= bEnds);
  CHECK(aEnds <= bEnds);
  cutUntil = 0;
  net.run(1000);
  REQUIRE(net[1].ss.episodeEndSynced());
  CHECK(net[1].ss.syncedEndFrame() == 100);
  net[1].ss.beginEpisode(1, 10, net.now);
  net.run(1000);
  REQUIRE(net[0].ss.allReady());
  // a late END of episode 0 from B (its READY of episode 1 is in): stale, not answered
  const uint64_t before = aEnds;
  CHECK(net[0].ss.onEpisodeEnd(1, 100, 0, net.now) == RxResult::StaleEpisode);
  net.run(1000);
  CHECK(aEnds == before);
  const uint64_t sent = net.messages;
  net.run(2000);
  CHECK(net.messages == sent);
}

TEST_CASE("END / READY stress: 2-4 peers, several episodes, random loss, jitter and skew", "[state_sync][episode]") {
  for (int seed = 1; seed <= 60; ++seed) {
    uint64_t st = static_cast<uint64_t>(seed) * 0x9E3779B97F4A7C15ULL;
    auto rnd = [&st]() {
      st = st * 6364136223846793005ULL + 1442695040888963407ULL;
      return static_cast<uint32_t>(st >> 33);
    };
    const int n = 2 + seed % 3;
    Mesh net(n);
    net.latency = 5 + rnd() % 200;
    const uint32_t lossPct = rnd() % 60;
    const uint32_t jitterMs = rnd() % 150;
    net.jitter = [&rnd, jitterMs]() { return jitterMs ? static_cast<double>(rnd() % jitterMs) : 0.0; };
    net.drop = [&rnd, lossPct](int, int, const Rec&, uint64_t) { return rnd() % 100 < lossPct; };
    INFO("seed " << seed << " n " << n << " latency " << net.latency << " loss " << lossPct << " jitter " << jitterMs);
    const uint32_t kEpisodes = 3;
    // per node: next action time for the current phase
    std::vector<uint32_t> ep(static_cast<size_t>(n), 0);
    std::vector<int> phase(static_cast<size_t>(n), 0);  // 0 wait-begin, 1 playing, 2 ended
    std::vector<double> at(static_cast<size_t>(n));
    std::vector<std::vector<uint32_t>> synced(static_cast<size_t>(n));
    for (auto& a : at) a = rnd() % 300;
    double limit = 120000;
    auto done = [&]() {
      for (int i = 0; i < n; ++i)
        if (ep[static_cast<size_t>(i)] < kEpisodes) return false;
      return true;
    };
    while (!done() && net.now < limit) {
      for (int i = 0; i < n; ++i) {
        const size_t k = static_cast<size_t>(i);
        Member& nd = net[i];
        if (ep[k] >= kEpisodes || net.now < at[k]) continue;
        if (phase[k] == 0) {
          nd.ss.beginEpisode(ep[k], 0x5000 + ep[k], net.now);
          phase[k] = 1;
          at[k] = net.now;
        } else if (phase[k] == 1 && nd.ss.allReady()) {
          nd.ss.localEpisodeEnd(1000 * (ep[k] + 1) + static_cast<uint32_t>(i), net.now);
          phase[k] = 2;
          at[k] = net.now + rnd() % 400;
        } else if (phase[k] == 2 && nd.ss.episodeEndSynced()) {
          synced[k].push_back(nd.ss.syncedEndFrame());
          ++ep[k];
          phase[k] = 0;
          at[k] = net.now + rnd() % 400;
        }
      }
      net.step(16);
    }
    REQUIRE(done());
    for (int i = 0; i < n; ++i) {
      CHECK(synced[static_cast<size_t>(i)] == synced[0]);
      CHECK(net[i].ss.desyncCount() == 0);
    }
    for (uint32_t e = 0; e < kEpisodes; ++e) CHECK(synced[0][e] == 1000 * (e + 1));
    // After the last episode's END sync, stop losing messages: traffic must die out.
    net.drop = [](int, int, const Rec&, uint64_t) { return false; };
    net.run(3000);
    const uint64_t settled = net.messages;
    net.run(5000);
    CHECK(net.messages == settled);
    CHECK(net.inflight.empty());
  }
}
