// Engine-level tests of the state-hash sync ([statesync-engine]) and of the health checker,
// fallback monitor and research metrics ([metrics-engine]): real SyncEngines driven the way the
// JS glue drives them (advance -> rollback/replay -> snapshot -> step -> send), over a scriptable
// in-memory link (scripted drops, held-back packets, per-path counters), plus the harness Session.
#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "protocol.hpp"
#include "relay.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

namespace Catch {
template <>
struct StringMaker<p2psync::RxResult> {
  static std::string convert(p2psync::RxResult r) { return p2psync::rxResultName(r); }
};
template <>
struct StringMaker<p2psync::Status> {
  static std::string convert(p2psync::Status s) { return std::to_string(static_cast<int>(s)); }
};
}  // namespace Catch

namespace {

// ------------------------------------------------------------------------------------ helpers

std::string cfg(int n, int local, const std::string& extra = "") {
  return "{\"numPlayers\":" + std::to_string(n) + ",\"localPlayerIndex\":" + std::to_string(local) + extra + "}";
}

std::string hex(uint64_t d) {
  char b[17];
  digestToHex(d, b);
  return std::string(b, 16);
}

std::vector<uint8_t> enc(const Message& m) {
  std::vector<uint8_t> b(kMaxPacketBytes + 16);
  const size_t n = encode(m, b.data(), b.size());
  REQUIRE(n > 0);
  b.resize(n);
  return b;
}

Message dec(const std::vector<uint8_t>& b) {
  Message m;
  REQUIRE(decode(b.data(), b.size(), m) == DecodeError::Ok);
  return m;
}

struct Rec {
  OutKind kind;
  Path path;
  int to;
  RelayEvent ev;
  std::vector<uint8_t> bytes;
  std::string text() const { return std::string(bytes.begin(), bytes.end()); }
  int type() const { return kind == OutKind::Packet && !bytes.empty() ? bytes[0] : -1; }
};

std::vector<Rec> readBox(const Outbox& box) {
  std::vector<Rec> v;
  const uint8_t* p = box.data();
  size_t off = 0;
  while (off + 8 <= box.size()) {
    Rec r;
    r.kind = static_cast<OutKind>(p[off]);
    r.path = static_cast<Path>(p[off + 1]);
    r.to = static_cast<int8_t>(p[off + 2]);
    r.ev = static_cast<RelayEvent>(p[off + 3]);
    uint32_t len;
    std::memcpy(&len, p + off + 4, 4);
    REQUIRE(off + 8 + len <= box.size());
    r.bytes.assign(p + off + 8, p + off + 8 + len);
    off += 8 + ((len + 3u) & ~size_t(3));
    v.push_back(std::move(r));
  }
  REQUIRE(off == box.size());
  REQUIRE(v.size() == box.count());
  return v;
}

constexpr int kInput = static_cast<int>(MsgType::Input);
constexpr int kPing = static_cast<int>(MsgType::Ping);
constexpr int kPong = static_cast<int>(MsgType::Pong);
constexpr int kEnd = static_cast<int>(MsgType::EpisodeEnd);
constexpr int kReady = static_cast<int>(MsgType::EpisodeReady);
constexpr int kStateHash = static_cast<int>(MsgType::StateHash);
constexpr int kInputResponse = static_cast<int>(MsgType::InputResponse);

// ------------------------------------------------------------------------------------ a peer

// One page: an engine, its toy env, a random local policy. step() is the page's per-frame step.
struct Node {
  struct SentHash {
    uint32_t frame;       // episode frame
    uint64_t hash;
    int64_t confirmedRel;  // the engine's confirmed frame (episode-relative) when it was sent
    uint32_t episode;
    bool relay;            // p2p_state_sync (else binary STATE_HASH)
    int64_t countsTotal;   // p2p_state_sync: sum of action_counts (-1 for STATE_HASH)
  };

  int index;
  int actors;
  std::unique_ptr<SyncEngine> eng;
  ToyGame game;
  Rng rng;
  int action = 0;
  double changeProb = 0.25;
  int64_t corruptAt = -1;  // session frame: alter the env right after stepping it (normal and replay)
  int64_t endAt = -1;      // episode frame after which the env terminates (-1: never)
  std::vector<json> events;  // every engine event, in order
  std::vector<SentHash> hashesSent;
  std::vector<Rec> lastSent;  // records of the last step
  uint64_t rollbacks = 0, stalls = 0, runs = 0;
  Status lastStatus = Status::Run;

  Node(int idx, const std::string& config, uint64_t seed, int numActors)
      : index(idx), actors(numActors), game(numActors), rng(seed) {
    std::string err;
    eng = SyncEngine::create(config.data(), config.size(), err);
    INFO(err);
    REQUIRE(eng);
  }

  int64_t terminal() const { return endAt >= 0 ? static_cast<int64_t>(eng->episodeStart()) + endAt : -1; }

  void save(uint32_t f) {
    const std::string s = game.state();
    REQUIRE(eng->saveSnapshot(f, reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }

  void stepGame(uint32_t f, const uint8_t* acts, double now) {
    game.step(acts, actors);
    if (static_cast<int64_t>(f) == corruptAt) game.h ^= 0xdeadbeefull;
    if (static_cast<int64_t>(f) == terminal()) eng->endEpisode(f, now);
  }

  // Parses the records of a box: events are kept, hashes sent are logged; returns the others.
  std::vector<Rec> take(const Outbox& box) {
    std::vector<Rec> out;
    const int64_t confRel = eng->confirmedFrame() - static_cast<int64_t>(eng->episodeStart());
    for (Rec& r : readBox(box)) {
      if (r.kind == OutKind::Event) {
        json j = json::parse(r.text(), nullptr, false);
        REQUIRE_FALSE(j.is_discarded());
        events.push_back(std::move(j));
        continue;
      }
      if (r.type() == kStateHash) {
        const Message m = dec(r.bytes);
        hashesSent.push_back({m.frame, m.digest, confRel, eng->episode(), false, -1});
      } else if (r.kind == OutKind::RelayJson && r.ev == RelayEvent::StateSync) {
        StateSyncMsg s;
        const std::string t = r.text();
        REQUIRE(parseStateSync(t.data(), t.size(), s) == RxResult::Ok);
        int64_t total = 0;
        for (int actor = 0; actor < actors; ++actor)
          for (int a = 0; a < 256; ++a) total += s.counts.get(actor, a);
        hashesSent.push_back({s.frame, s.hash, confRel, eng->episode(), true, total});
      }
      out.push_back(std::move(r));
    }
    return out;
  }

  // The page's step(): advance, roll back and replay, snapshot, step. Returns the records to send.
  std::vector<Rec> step(double now, int forcedAction = -1) {
    if (forcedAction >= 0) action = forcedAction;
    else if (rng.chance(changeProb)) action = rng.below(5);
    const Status st = eng->advance(now, static_cast<uint8_t>(action), 0);
    const int32_t* H = eng->planHeader();
    const int64_t term = terminal();
    if (H[kRollback]) {
      ++rollbacks;
      const SnapshotStore::Entry* s = eng->snapshot(static_cast<uint32_t>(H[kLoadFrame]));
      REQUIRE(s);
      REQUIRE(game.load(eng->snapshotBytes(*s), s->length));
      const uint8_t* replay = eng->planBase() + eng->replayActionsOffset();
      const uint8_t* resnap = eng->planBase() + eng->resnapOffset();
      for (int i = 0; i < H[kReplayCount]; ++i) {
        const uint32_t f = static_cast<uint32_t>(H[kLoadFrame] + i);
        if (term >= 0 && static_cast<int64_t>(f) > term) break;  // never step past the terminal frame
        if (resnap[i]) save(f);
        stepGame(f, replay + static_cast<size_t>(i) * static_cast<size_t>(actors), now);
      }
    }
    if (st == Status::Run) {
      ++runs;
      const uint32_t f = static_cast<uint32_t>(H[kFrame]);
      if (term >= 0 && static_cast<int64_t>(f) > term) {
        eng->endEpisode(static_cast<uint32_t>(term), now);  // the engine's end was reset by a rollback
      } else {
        if (H[kSaveSnapshot]) save(f);
        stepGame(f, eng->planBase() + eng->curActionsOffset(), now);
      }
    } else if (st == Status::Stall) {
      ++stalls;
    }
    lastStatus = st;
    lastSent = take(eng->outbox());
    return lastSent;
  }

  std::vector<json> ofType(const std::string& t) const {
    std::vector<json> v;
    for (const json& e : events)
      if (e.value("type", "") == t) v.push_back(e);
    return v;
  }
  bool hasEpisodeEnd(uint32_t episode) const {
    for (const json& e : events)
      if (e.value("type", "") == "episodeEnd" && e["episode"] == episode) return true;
    return false;
  }
  void resetGame() { game = ToyGame(actors); }
};

// ------------------------------------------------------------------------------------ the link

struct Wire {
  double at;
  uint64_t seq;
  int from, to;
  Path path;
  OutKind kind;
  RelayEvent ev;
  std::vector<uint8_t> bytes;
  bool operator>(const Wire& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  int type() const { return kind == OutKind::Packet && !bytes.empty() ? bytes[0] : -1; }
  bool carriesInputs() const {
    return type() == kInput || type() == kInputResponse || (kind == OutKind::RelayJson && ev == RelayEvent::PlayerAction);
  }
};

// N pages over a P2P path (delay, jitter, random or scripted loss, reordering) and a reliable,
// ordered relay. Pages tick every frameMs with phase offsets; deliveries happen at their time.
struct World {
  struct Counts {
    uint64_t p2pOut = 0, p2pLost = 0, p2pIn = 0, relayOut = 0, relayIn = 0;
    uint64_t p2pInputEntriesOut = 0, p2pInputEntriesIn = 0;
    std::map<int, uint64_t> typeOut;  // binary packets by type (per destination), before losses
  };

  std::vector<std::unique_ptr<Node>> nodes;
  std::vector<double> nextAt;
  std::vector<bool> paused;
  std::vector<Counts> counts;
  std::vector<std::map<RxResult, uint64_t>> rx;  // by receiver
  double now = 0;
  double frameMs = 1000.0 / 30;
  double p2pMs = 25, jitterMs = 0, relayMs = 45;
  double loss = 0, reorder = 0;
  bool p2pOpen = true;
  std::set<std::pair<int, int>> closed;  // P2P channels closed (from, to): the page does not send on them
  std::function<bool(const Wire&)> drop;  // true: lost (P2P and relay)
  std::function<bool(const Wire&)> hold;  // true: held back until release()
  std::vector<Wire> held;
  Rng net{99};
  uint64_t seq = 0;
  std::vector<double> relayLast;
  std::priority_queue<Wire, std::vector<Wire>, std::greater<Wire>> q;

  World(int n, const std::string& extra, uint64_t seed = 1) {
    for (int i = 0; i < n; ++i) {
      nodes.push_back(std::make_unique<Node>(i, cfg(n, i, extra), seed * 1000 + static_cast<uint64_t>(i), n));
      nextAt.push_back(static_cast<double>(i) * frameMs / static_cast<double>(n));
      paused.push_back(false);
    }
    counts.resize(static_cast<size_t>(n));
    rx.resize(static_cast<size_t>(n));
    relayLast.assign(static_cast<size_t>(n * n), 0);
  }
  Node& operator[](int i) { return *nodes[static_cast<size_t>(i)]; }
  int size() const { return static_cast<int>(nodes.size()); }

  void enqueue(Wire w) {
    if (w.path == Path::P2P) {
      double d = p2pMs + (jitterMs > 0 ? (net.uniform() - 0.5) * jitterMs : 0.0);
      if (reorder > 0 && net.chance(reorder)) d += jitterMs + 20;
      w.at = now + std::max(0.5, d);
    } else {
      double& last = relayLast[static_cast<size_t>(w.from * size() + w.to)];
      w.at = std::max(now + relayMs, last + 0.001);
      last = w.at;
    }
    w.seq = seq++;
    q.push(std::move(w));
  }

  void send(int from, const std::vector<Rec>& recs) {
    for (const Rec& r : recs) {
      for (int t = 0; t < size(); ++t) {
        if (t == from || (r.to >= 0 && r.to != t)) continue;
        Wire w{0, 0, from, t, r.path, r.kind, r.ev, r.bytes};
        Counts& c = counts[static_cast<size_t>(from)];
        if (r.path == Path::P2P) {
          if (!p2pOpen || closed.count({from, t})) continue;  // the page does not send on a closed channel
          ++c.p2pOut;
          if (w.type() == kInput) c.p2pInputEntriesOut += dec(w.bytes).count;
        } else {
          ++c.relayOut;
        }
        if (w.type() >= 0) ++c.typeOut[w.type()];
        if (hold && hold(w)) {
          held.push_back(std::move(w));
          continue;
        }
        if ((drop && drop(w)) || (r.path == Path::P2P && loss > 0 && net.chance(loss))) {
          if (r.path == Path::P2P) ++c.p2pLost;
          continue;
        }
        enqueue(std::move(w));
      }
    }
  }

  // Sends the held-back packets now, spaced by spacingMs (so a burst does not hit the flood guard).
  void release(double spacingMs = 0) {
    std::vector<Wire> h;
    h.swap(held);
    const double t0 = now;
    for (size_t k = 0; k < h.size(); ++k) {
      now = t0 + static_cast<double>(k) * spacingMs;
      enqueue(std::move(h[k]));
    }
    now = t0;
  }

  RxResult deliver(const Wire& w) {
    Node& n = (*this)[w.to];
    RxResult r;
    if (w.path == Path::P2P) {
      if (!p2pOpen) return RxResult::Ok;  // lost with the channel
      ++counts[static_cast<size_t>(w.to)].p2pIn;
      if (w.type() == kInput || w.type() == kInputResponse) counts[static_cast<size_t>(w.to)].p2pInputEntriesIn += dec(w.bytes).count;
    } else {
      ++counts[static_cast<size_t>(w.to)].relayIn;
    }
    if (w.kind == OutKind::Packet) {
      r = n.eng->receive(w.bytes.data(), w.bytes.size(), w.from, w.path, now);
    } else {
      const std::string t(w.bytes.begin(), w.bytes.end());
      r = n.eng->receiveRelayJson(w.ev, t.data(), t.size(), w.from, now);
    }
    ++rx[static_cast<size_t>(w.to)][r];
    send(w.to, n.take(n.eng->replies()));
    return r;
  }

  void deliverUntil(double t) {
    while (!q.empty() && q.top().at <= t) {
      Wire w = q.top();
      q.pop();
      now = std::max(now, w.at);
      deliver(w);
    }
  }

  // Delivers everything in flight (and what that produces), without stepping any page.
  void drain() {
    while (!q.empty()) deliverUntil(q.top().at);
  }

  void tick() {
    const double next = *std::min_element(nextAt.begin(), nextAt.end());
    deliverUntil(next);
    now = next;
    for (auto& n : nodes) n->lastSent.clear();
    for (int i = 0; i < size(); ++i) {
      if (nextAt[static_cast<size_t>(i)] > now) continue;
      nextAt[static_cast<size_t>(i)] += frameMs;
      if (paused[static_cast<size_t>(i)]) continue;
      send(i, (*this)[i].step(now));
    }
  }

  // Ticks until pred() holds (checked after every tick). False when maxTicks ran out.
  bool runUntil(const std::function<bool()>& pred, int maxTicks) {
    for (int k = 0; k < maxTicks; ++k) {
      if (pred()) return true;
      tick();
    }
    return pred();
  }
  // One tick runs one page (they are phase-shifted): 2 ticks per frame with 2 pages.
  void runTicks(int n) {
    for (int k = 0; k < n; ++k) tick();
  }
  uint32_t minFrame() const {
    uint32_t m = UINT32_MAX;
    for (const auto& n : nodes) m = std::min(m, n->eng->frame());
    return m;
  }
};

// State hashes of snapshot frames 0..upTo (the state before stepping f) from a confirmed action log.
std::map<uint32_t, uint64_t> truthHashes(const SyncEngine& e, uint32_t upTo, int actors) {
  std::vector<uint8_t> log;
  REQUIRE(e.actionLog(0, upTo - 1, log, true) == upTo);
  std::map<uint32_t, uint64_t> t;
  ToyGame g(actors);
  for (uint32_t f = 0; f <= upTo; ++f) {
    const std::string s = g.state();
    t[f] = e.hashState(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    if (f < upTo) g.step(log.data() + static_cast<size_t>(f) * static_cast<size_t>(actors), actors);
  }
  return t;
}

bool sameLogs(const SyncEngine& a, const SyncEngine& b, uint32_t from, uint32_t to) {
  std::vector<uint8_t> la, lb;
  const size_t na = a.actionLog(from, to, la, true);
  const size_t nb = b.actionLog(from, to, lb, true);
  return na == nb && na == static_cast<size_t>(to - from + 1) && la == lb;
}

}  // namespace

// =============================================================================== state sync

TEST_CASE("engine sync: 10,000 frames over heavy loss and reordering, no desync, verifiedFrame near the end",
          "[statesync-engine]") {
  SessionOptions o;
  o.seed = 2024;
  o.link = LinkProfile{40, 30, 0.30, 0.25, 0.05, 20};  // 30% loss, 25% reordered, 5% duplicated
  Session s(o);
  s.runFrames(10000);
  size_t common = 0;
  REQUIRE(s.logsIdentical(&common));
  CHECK(common > 9900);
  CHECK(s.totalDesyncs() == 0);
  uint64_t rollbacks = 0;
  for (auto& p : s.peers) {
    rollbacks += p->rollbacks;
    const SyncEngine& e = *p->engine;
    CHECK(e.stateSync().desyncCount() == 0);
    CHECK(e.stateSync().desyncEvents().empty());
    // verifiedFrame: within a few hash intervals plus the link latency of the newest frame
    const int64_t lag = static_cast<int64_t>(e.frame()) - e.verifiedFrame();
    INFO("peer " << p->index << " frame " << e.frame() << " verified " << e.verifiedFrame() << " confirmed "
                 << e.confirmedFrame());
    CHECK(e.verifiedFrame() > 0);
    CHECK(lag <= 4 * 5 + 10);
    CHECK(e.verifiedFrame() % 5 == 0);
    CHECK(e.stateSync().matchCount() >= 1900);
    CHECK(e.exportSessionMetrics()["sync"]["desyncEvents"].empty());
  }
  CHECK(rollbacks > 1000);
}

TEST_CASE("engine sync: a state altered at frame 400 is a desync at hash frame 405 on both peers",
          "[statesync-engine]") {
  World w(2, "", 11);
  w.p2pMs = 30;
  w.jitterMs = 15;
  w.loss = 0.2;
  w.reorder = 0.1;
  w[1].corruptAt = 400;  // also re-applied when a rollback replays frame 400
  REQUIRE(w.runUntil([&] { return w.minFrame() >= 700; }, 5000));
  uint64_t rollbacks = w[0].rollbacks + w[1].rollbacks;
  CHECK(rollbacks > 20);

  json first[2];
  for (int i = 0; i < 2; ++i) {
    Node& n = w[i];
    const auto desyncs = n.ofType("desync");
    INFO("peer " << i);
    REQUIRE_FALSE(desyncs.empty());
    uint32_t minFrame = UINT32_MAX;
    for (const json& d : desyncs) minFrame = std::min(minFrame, d["frame"].get<uint32_t>());
    CHECK(minFrame == 405);
    first[i] = desyncs.front();
    CHECK(first[i]["frame"] == 405);
    for (const char* k : {"frame", "localHash", "remoteHash", "peer", "actionCountDiff", "detectedAtFrame"})
      CHECK(first[i].contains(k));
    CHECK(first[i]["peer"] == 1 - i);
    CHECK(first[i]["localHash"] != first[i]["remoteHash"]);
    CHECK(first[i]["detectedAtFrame"].get<uint32_t>() >= 405);
    CHECK(first[i]["episode"] == 0);
    // verification stopped at the last good hash frame
    CHECK(n.eng->verifiedFrame() == 400);
    // the stored record (completed by the relay copy's counts): inputs agree, only the state differs
    const auto& recs = n.eng->stateSync().desyncEvents();
    REQUIRE_FALSE(recs.empty());
    CHECK(recs.front()["frame"] == 405);
    CHECK(recs.front()["actionCountDiff"] == json::object());
    CHECK(n.eng->exportSessionMetrics()["sync"]["desyncEvents"][0]["frame"] == 405);
  }
  // the two reports are mirror images
  CHECK(first[0]["localHash"] == first[1]["remoteHash"]);
  CHECK(first[0]["remoteHash"] == first[1]["localHash"]);
  const uint32_t c = static_cast<uint32_t>(std::min(w[0].eng->confirmedFrame(), w[1].eng->confirmedFrame()));
  CHECK(sameLogs(*w[0].eng, *w[1].eng, c - 200, c));
}

TEST_CASE("engine sync: a frame simulated with predicted inputs is never hashed or sent before it is confirmed",
          "[statesync-engine]") {
  World w(2, "", 5);
  w[1].changeProb = 0.6;  // the held-back player changes its action often: predictions go wrong
  w[0].changeProb = 0.3;
  // Phase 1: every input of player 1 to player 0 is held back (READY, PING, PONG, hashes pass).
  w.hold = [](const Wire& x) { return x.from == 1 && x.to == 0 && x.carriesInputs(); };
  w.runTicks(120);
  Node& a = w[0];
  CHECK(a.eng->confirmedFrame() == -1);
  CHECK(a.eng->frame() == 30);  // ran on predictions up to the prediction limit, then stalled
  CHECK(a.stalls > 0);
  CHECK(a.lastStatus == Status::Stall);
  for (uint32_t f : {5u, 10u, 15u, 20u, 25u}) CHECK(a.eng->snapshot(f) != nullptr);  // hashed locally...
  CHECK(a.hashesSent.empty());                                                         // ...never sent
  CHECK(a.eng->stateSync().hashesSentCount() == 0);
  CHECK(a.ofType("hashBroadcast").empty());
  CHECK(a.eng->stateSync().hashesReceivedCount() > 0);  // player 1's hashes wait, uncompared
  CHECK(a.eng->stateSync().matchCount() == 0);
  CHECK(a.eng->stateSync().desyncCount() == 0);
  CHECK(a.eng->verifiedFrame() == -1);
  CHECK(w[1].eng->stateSync().hashesSentCount() > 0);

  // Phase 2: the inputs arrive; player 0 rolls back, replays, re-snapshots, then sends.
  w.hold = nullptr;
  w.release(3);
  w.runTicks(240);
  CHECK(a.rollbacks >= 1);
  CHECK(a.eng->frame() > 120);
  const uint32_t upTo = static_cast<uint32_t>(std::min(w[0].eng->confirmedFrame(), w[1].eng->confirmedFrame()));
  const auto truth = truthHashes(*a.eng, upTo, 2);
  std::set<uint32_t> sentFrames;
  for (int i = 0; i < 2; ++i) {
    for (const Node::SentHash& h : w[i].hashesSent) {
      INFO("peer " << i << " frame " << h.frame << " confirmed " << h.confirmedRel);
      CHECK(static_cast<int64_t>(h.frame) - 1 <= h.confirmedRel);  // every input of frames < f known
      if (h.frame <= upTo) CHECK(h.hash == truth.at(h.frame));     // and the hash is the true state's
      if (i == 0) sentFrames.insert(h.frame);
    }
  }
  for (uint32_t f : {5u, 10u, 15u, 20u, 25u, 30u}) CHECK(sentFrames.count(f) == 1);
  CHECK(a.eng->stateSync().hashesResentCount() == 0);  // nothing wrong was ever sent
  CHECK(a.eng->stateSync().desyncCount() == 0);
  CHECK(w[1].eng->stateSync().desyncCount() == 0);
  CHECK(a.eng->verifiedFrame() >= 100);
  CHECK(sameLogs(*w[0].eng, *w[1].eng, 0, upTo));
}

TEST_CASE("engine sync: END and READY under loss both ways, stale READY, READY digest mismatch, no echo",
          "[statesync-engine]") {
  World w(2, "", 21);
  w.loss = 0.1;
  // Two of every three END / READY packets are lost, in each direction.
  std::map<std::pair<int, int>, uint64_t> erSeq;
  w.drop = [&erSeq](const Wire& x) {
    if (x.type() != kEnd && x.type() != kReady) return false;
    return erSeq[{x.from, x.to}]++ % 3 != 2;
  };
  auto endReady = [&w](int i) {
    const auto& c = w.counts[static_cast<size_t>(i)].typeOut;
    return (c.count(kEnd) ? c.at(kEnd) : 0) + (c.count(kReady) ? c.at(kReady) : 0);
  };
  // Each page starts the next episode as soon as it has seen the episodeEnd event (not both at once).
  bool reset[2] = {false, false};
  auto resetOnEnd = [&](uint32_t episode, bool alterPeer1) {
    for (int i = 0; i < 2; ++i) {
      if (reset[i] || !w[i].hasEpisodeEnd(episode)) continue;
      INFO("peer " << i << " episode " << episode);
      CHECK(w[i].lastStatus == Status::Ended);
      CHECK(w[i].eng->stateSync().episodeEndSynced());
      w[i].endAt = -1;
      REQUIRE(w[i].eng->resetEpisode(-1).empty());
      w[i].resetGame();
      if (alterPeer1 && i == 1) w[1].game.pos[0] = 42;  // a different initial state
      reset[i] = true;
      // nothing of the new episode is verified yet (not the previous episode's frame, shifted)
      CHECK(w[i].eng->verifiedFrame() == -1);
      CHECK(w[i].eng->exportSessionMetrics()["session"]["verifiedFrame"] == -1);
      w[i].step(w.now);
      CHECK(w[i].eng->planHeader()[kVerifiedFrame] == -1);
      w.send(i, w[i].lastSent);
    }
    return reset[0] && reset[1];
  };

  // ---- episode 0 ends after frame 150 on both
  for (int i = 0; i < 2; ++i) w[i].endAt = 150;
  bool triedEarly = false;
  REQUIRE(w.runUntil(
      [&] {
        if (!triedEarly && w[0].eng->frame() >= 151 && !w[0].hasEpisodeEnd(0)) {
          triedEarly = true;
          CHECK_FALSE(w[0].eng->resetEpisode(-1).empty());  // not synced yet: refused, nothing changes
          CHECK(w[0].eng->episode() == 0);
        }
        if (w[0].hasEpisodeEnd(0) || w[1].hasEpisodeEnd(0)) {
          for (int i = 0; i < 2; ++i) {
            if (reset[i] || !w[i].hasEpisodeEnd(0)) continue;
            const auto ends = w[i].ofType("episodeEnd");
            REQUIRE(ends.size() == 1);
            CHECK(ends[0]["episode"] == 0);
            CHECK(ends[0]["frame"] == 150);
            CHECK(ends[0]["episodeFrame"] == 150);
            CHECK(w[i].eng->stateSync().syncedEndFrame() == 150);
            CHECK(w[i].eng->stateSync().endMessagesSent() >= 1);
            CHECK(w[i].eng->stateSync().endMessagesSent() <= 20);
          }
        }
        return resetOnEnd(0, false);
      },
      3000));
  CHECK(triedEarly);
  CHECK(w.counts[0].typeOut[kEnd] >= 3);  // losses forced re-sends / answers, both ways
  CHECK(w.counts[1].typeOut[kEnd] >= 3);
  for (int i = 0; i < 2; ++i) CHECK(w[i].eng->stateSync().desyncCount() == 0);

  // ---- READY for episode 1 under the same losses
  auto allReadyIn = [&w](uint32_t ep) {
    for (int i = 0; i < 2; ++i)
      if (w[i].eng->stateSync().episode() != ep || !w[i].eng->stateSync().allReady()) return false;
    return true;
  };
  REQUIRE(w.runUntil([&] { return allReadyIn(1); }, 600));
  for (int i = 0; i < 2; ++i) {
    CHECK(w[i].eng->episode() == 1);
    CHECK(w[i].eng->episodeStart() == 150 + 1 + 64);
    CHECK(w[i].eng->stateSync().episode() == 1);
  }
  REQUIRE(w.runUntil([&] { return w.minFrame() >= 215 + 100; }, 2000));
  for (int i = 0; i < 2; ++i) {
    CHECK(w[i].eng->verifiedFrame() > 215 + 50);
    CHECK(w[i].eng->stateSync().desyncCount() == 0);
  }
  // no endless echo: once both sides have everything, no END / READY is sent any more
  const uint64_t er0 = endReady(0), er1 = endReady(1);
  INFO("END+READY packets: " << er0 << " / " << er1);
  CHECK(er0 + er1 <= 60);
  w.runTicks(300);
  CHECK(endReady(0) == er0);
  CHECK(endReady(1) == er1);

  // a stale READY (and END) of the previous episode is ignored; a repeated current READY is a duplicate
  {
    SyncEngine& e = *w[0].eng;
    const std::string init = ToyGame(2).state();
    const uint64_t digest = e.hashState(reinterpret_cast<const uint8_t*>(init.data()), init.size());
    const uint64_t staleBefore = e.metrics().rejectedCount(RxResult::StaleEpisode);
    Message m;
    m.type = MsgType::EpisodeReady;
    m.episode = 0;
    m.digest = digest ^ 0x55;  // even with another digest: ignored, no desync
    auto b = enc(m);
    CHECK(e.receive(b.data(), b.size(), 1, Path::P2P, w.now) == RxResult::StaleEpisode);
    m.episode = 1;
    m.digest = digest;
    b = enc(m);
    CHECK(e.receive(b.data(), b.size(), 1, Path::P2P, w.now) == RxResult::Duplicate);
    Message end;
    end.type = MsgType::EpisodeEnd;
    end.episode = 0;
    end.frame = 150;
    b = enc(end);
    CHECK(e.receive(b.data(), b.size(), 1, Path::Relay, w.now) == RxResult::StaleEpisode);
    w.runTicks(4);
    CHECK(e.stateSync().allReady());
    CHECK(e.stateSync().desyncCount() == 0);
    CHECK(w[0].ofType("desync").empty());
    CHECK(e.metrics().rejectedCount(RxResult::StaleEpisode) == staleBefore + 2);
  }

  // ---- episode 1 ends 40 frames from now; player 1 starts episode 2 from a different state
  reset[0] = reset[1] = false;
  const uint32_t end1 = std::max(w[0].eng->frame(), w[1].eng->frame()) - 215 + 40;
  for (int i = 0; i < 2; ++i) w[i].endAt = end1;
  REQUIRE(w.runUntil([&] { return resetOnEnd(1, true); }, 3000));
  for (int i = 0; i < 2; ++i) CHECK(w[i].ofType("desync").empty());
  REQUIRE(w.runUntil([&] { return allReadyIn(2); }, 600));
  w.runTicks(6);
  for (int i = 0; i < 2; ++i) {
    const auto d = w[i].ofType("desync");
    INFO("peer " << i);
    REQUIRE_FALSE(d.empty());
    CHECK(d[0]["frame"] == 0);
    CHECK(d[0]["source"] == "ready");
    CHECK(d[0]["episode"] == 2);
    CHECK(d[0]["peer"] == 1 - i);
    CHECK(d[0]["localHash"] != d[0]["remoteHash"]);
    CHECK(d[0]["actionCountDiff"].is_null());
    CHECK(w[i].eng->episode() == 2);
    CHECK(w[i].eng->episodeStart() == 215 + end1 + 1 + 64);
  }
}

TEST_CASE("engine sync: p2p_state_sync relay messages, engine-made and hand-made, both ways",
          "[statesync-engine]") {
  const std::string extra = ",\"gameId\":\"room-7\",\"playerIds\":[\"alice\",\"bob\"]";
  const char* ids[2] = {"alice", "bob"};

  SECTION("the engine's messages parse and carry the action counts of frames 0..f-1") {
    World w(2, extra, 3);
    std::vector<std::pair<int, std::string>> msgs;
    REQUIRE(w.runUntil([&] { return w.minFrame() >= 90; }, 1000));
    for (int k = 0; k < 120; ++k) {
      w.tick();
      for (int i = 0; i < 2; ++i)
        for (const Rec& r : w[i].lastSent)
          if (r.kind == OutKind::RelayJson && r.ev == RelayEvent::StateSync) msgs.emplace_back(i, r.text());
    }
    REQUIRE(msgs.size() >= 10);
    for (const auto& [i, text] : msgs) {
      INFO(text);
      StateSyncMsg s;
      REQUIRE(parseStateSync(text.data(), text.size(), s) == RxResult::Ok);
      CHECK(s.gameId == "room-7");
      CHECK(s.senderId == ids[i]);
      CHECK(s.frame % 5 == 0);
      const json j = json::parse(text);
      REQUIRE(j.contains("action_counts"));
      REQUIRE(j["action_counts"].is_object());
      // counts over frames 0..f-1: each actor took exactly f actions
      for (int actor = 0; actor < 2; ++actor) {
        uint64_t total = 0;
        for (int a = 0; a < 256; ++a) total += s.counts.get(actor, a);
        CHECK(total == s.frame);
      }
      // and they are the counts of the confirmed action log
      std::vector<uint8_t> log;
      REQUIRE(w[i].eng->actionLog(0, s.frame - 1, log, true) == s.frame);
      ActionCounts c;
      for (size_t k = 0; k < log.size(); ++k) c.add(static_cast<int>(k % 2), log[k]);
      CHECK(c == s.counts);
      // the hash is that of the true state
      const auto truth = truthHashes(*w[i].eng, s.frame, 2);
      CHECK(s.hash == truth.at(s.frame));
    }
  }

  SECTION("hand-made messages are accepted by receiveRelayJson, verified, and a wrong one is a desync") {
    World w(2, extra, 4);
    // the peers' own hashes never arrive: only hand-made ones
    w.drop = [](const Wire& x) {
      return x.type() == kStateHash || (x.kind == OutKind::RelayJson && x.ev == RelayEvent::StateSync);
    };
    REQUIRE(w.runUntil([&] { return w.minFrame() >= 80; }, 1000));
    for (int to = 0; to < 2; ++to) {
      const int from = 1 - to;
      SyncEngine& e = *w[to].eng;
      INFO("to " << to);
      CHECK(e.verifiedFrame() == -1);
      CHECK(e.stateSync().hashesReceivedCount() == 0);
      const auto truth = truthHashes(e, 60, 2);
      std::vector<uint8_t> log;
      REQUIRE(e.actionLog(0, 49, log, true) == 50);
      ActionCounts counts50;
      for (size_t k = 0; k < log.size(); ++k) counts50.add(static_cast<int>(k % 2), log[k]);
      // built by hand (not with formatStateSync), fields in another order, "from" as the server adds it
      auto make = [&](uint32_t f, uint64_t h, const ActionCounts& c, const json& sender, const std::string& game, int fromField) {
        json counts = json::object();
        for (int actor = 0; actor < 2; ++actor)
          for (int act = 0; act < 256; ++act)
            if (c.get(actor, act)) counts[std::to_string(actor)][std::to_string(act)] = c.get(actor, act);
        json j = {{"state_hash", hex(h)}, {"frame_number", f}, {"action_counts", counts}, {"sender_id", sender}, {"game_id", game}};
        if (fromField >= 0) j["from"] = fromField;
        return j.dump();
      };
      auto give = [&](const std::string& text, int fromPeer) {
        return e.receiveRelayJson(RelayEvent::StateSync, text.data(), text.size(), fromPeer, w.now);
      };
      // a correct hash for frames 40..60: accepted and verified
      for (uint32_t f = 40; f <= 60; f += 5) {
        std::vector<uint8_t> lf;
        REQUIRE(e.actionLog(0, f - 1, lf, true) == f);
        ActionCounts cf;
        for (size_t k = 0; k < lf.size(); ++k) cf.add(static_cast<int>(k % 2), lf[k]);
        CHECK(give(make(f, truth.at(f), cf, ids[from], "room-7", from), from) == RxResult::Ok);
      }
      // rejections: other game, unknown or own sender, spoofed "from", not JSON
      CHECK(give(make(65, 1, counts50, ids[from], "room-8", from), from) == RxResult::BadValue);
      CHECK(give(make(65, 1, counts50, "carol", "room-7", -1), from) == RxResult::UnknownPlayer);
      CHECK(give(make(65, 1, counts50, ids[to], "room-7", -1), from) == RxResult::UnknownPlayer);
      CHECK(give(make(65, 1, counts50, ids[from], "room-7", to), from) == RxResult::SpoofedPlayer);
      CHECK(give("{\"game_id\":\"room-7\"}", from) == RxResult::BadRelayJson);
      CHECK(give(make(60, truth.at(60), counts50, ids[from], "room-7", from), from) == RxResult::Duplicate);
      // a wrong hash for frame 70 whose counts differ: actor `from` did action 4 twice more
      std::vector<uint8_t> l70;
      REQUIRE(e.actionLog(0, 69, l70, true) == 70);
      ActionCounts c70;
      for (size_t k = 0; k < l70.size(); ++k) c70.add(static_cast<int>(k % 2), l70[k]);
      ActionCounts bad70 = c70;
      bad70.set(from, 4, c70.get(from, 4) + 2);
      CHECK(give(make(70, truth.at(60) ^ 1, bad70, ids[from], "room-7", from), from) == RxResult::Ok);
      w.runTicks(3);
      CHECK(e.verifiedFrame() == 60);
      CHECK(e.stateSync().matchCount() == 5);
      const auto d = w[to].ofType("desync");
      REQUIRE(d.size() == 1);
      CHECK(d[0]["frame"] == 70);
      CHECK(d[0]["peer"] == from);
      CHECK(d[0]["remoteHash"] == hex(truth.at(60) ^ 1));
      CHECK(d[0]["actionCountDiff"] == json{{std::to_string(from), {{"4", -2}}}});
      const json m = e.exportSessionMetrics();
      CHECK(m["rejected"]["SPOOFED_PLAYER"] == 1);
      CHECK(m["rejected"]["UNKNOWN_PLAYER"] == 2);
      CHECK(m["rejected"]["BAD_RELAY_JSON"] == 1);
      CHECK(m["sync"]["desyncs"] == 1);
    }
  }
}

// ========================================================================== metrics / health

TEST_CASE("engine metrics: PINGs every pingIntervalMs, PONG samples, duplicate / out-of-order / unsent pongs",
          "[metrics-engine]") {
  Node a(0, cfg(2, 0, ",\"pingIntervalMs\":100"), 1, 2);
  std::vector<double> pings;
  for (int k = 0; k < 50; ++k) {  // 1 s at 20 ms per frame
    const double now = k * 20.0;
    for (const Rec& r : a.step(now)) {
      if (r.type() != kPing) continue;
      CHECK(r.path == Path::P2P);
      CHECK(r.to == 1);
      pings.push_back(dec(r.bytes).timestamp);
    }
  }
  CHECK(pings == std::vector<double>{0, 100, 200, 300, 400, 500, 600, 700, 800, 900});

  SyncEngine& e = *a.eng;
  auto pong = [&](double ts, double now) {
    Message m;
    m.type = MsgType::Pong;
    m.timestamp = ts;
    const auto b = enc(m);
    return e.receive(b.data(), b.size(), 1, Path::P2P, now);
  };
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
    const auto replies = readBox(e.replies());
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
  void add(const std::vector<Rec>& recs) {
    for (const Rec& r : recs) {
      if (r.kind == OutKind::RelayJson) {
        if (r.ev == RelayEvent::PlayerAction) ++relayAction;
        else if (r.ev == RelayEvent::StateSync) ++relayHash;
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
std::vector<Sent> collect(World& w, int n) {
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
    World w(2, "", 7);
    REQUIRE(w.runUntil([&] { return w.minFrame() >= 60; }, 500));
    const uint32_t f0 = w[0].eng->frame(), f1 = w[1].eng->frame();
    w.p2pOpen = false;
    w[0].eng->onChannelClosed(1, w.now);
    w[1].eng->onChannelClosed(0, w.now);
    const auto sent = collect(w, 200);
    for (int i = 0; i < 2; ++i) {
      Node& n = w[i];
      INFO("peer " << i);
      checkFallbackPolicy(sent[static_cast<size_t>(i)], "after channel close");
      CHECK(sent[static_cast<size_t>(i)].p2pPing == 0);
      CHECK(sent[static_cast<size_t>(i)].p2pOther == 0);
      const auto fb = n.ofType("fallback");
      REQUIRE(fb.size() == 1);
      CHECK(fb[0]["reason"] == "channel-closed");
      CHECK(fb[0]["peer"] == 1 - i);
      CHECK(fb[0]["frame"] == (i == 0 ? f0 : f1));
      const json p = n.eng->p2pMetrics();
      CHECK(p["p2pFallbackTriggered"] == true);
      CHECK(p["p2pFallbackFrame"] == (i == 0 ? f0 : f1));
      const json q = n.eng->exportSessionMetrics()["quality"];
      CHECK(q["fallback"]["reason"] == "channel-closed");
      CHECK(q["peers"][0]["channelOpen"] == false);
      CHECK(q["peers"][0]["inFallback"] == true);
      CHECK(n.eng->stateSync().desyncCount() == 0);
      CHECK(n.eng->verifiedFrame() > static_cast<int64_t>(f0) + 60);  // verification goes on over the relay
    }
    CHECK(sameLogs(*w[0].eng, *w[1].eng, 0, static_cast<uint32_t>(std::min(w[0].eng->confirmedFrame(), w[1].eng->confirmedFrame()))));

    // sticky without fallbackRecovery: the channel re-opens, pings resume, inputs stay on the relay
    w.p2pOpen = true;
    w[0].eng->onChannelOpen(1, w.now);
    w[1].eng->onChannelOpen(0, w.now);
    const auto later = collect(w, 300);
    for (int i = 0; i < 2; ++i) {
      checkFallbackPolicy(later[static_cast<size_t>(i)], "after re-open");
      CHECK(later[static_cast<size_t>(i)].p2pPing > 5);
      CHECK(w[i].eng->health().inFallback(1 - i));
      CHECK(w[i].eng->health().sampleCount(1 - i) > 5);
      CHECK(w[i].ofType("recovery").empty());
      CHECK(w[i].eng->exportSessionMetrics()["quality"]["fallback"]["recoveries"] == 0);
    }

    // the episode still ends: END goes as a relay packet while P2P is unusable
    const uint32_t endRel = std::max(w[0].eng->frame(), w[1].eng->frame()) + 20;
    for (int i = 0; i < 2; ++i) w[i].endAt = endRel;
    uint64_t endsP2P = 0, endsRelay = 0;
    REQUIRE(w.runUntil(
        [&] {
          for (int i = 0; i < 2; ++i)
            for (const Rec& r : w[i].lastSent)
              if (r.type() == kEnd) ++(r.path == Path::P2P ? endsP2P : endsRelay);
          return w[0].hasEpisodeEnd(0) && w[1].hasEpisodeEnd(0);
        },
        1000));
    CHECK(endsP2P == 0);
    CHECK(endsRelay >= 2);
    for (int i = 0; i < 2; ++i) CHECK(w[i].ofType("episodeEnd")[0]["frame"] == endRel);
  }

  SECTION("connection failed") {
    World w(2, "", 8);
    REQUIRE(w.runUntil([&] { return w.minFrame() >= 30; }, 500));
    const uint32_t f = w[0].eng->frame();
    w[0].eng->onConnectionFailed(1, w.now);
    w.tick();
    const auto fb = w[0].ofType("fallback");
    REQUIRE(fb.size() == 1);
    CHECK(fb[0]["reason"] == "connection-failed");
    CHECK(fb[0]["frame"] == f);
    CHECK(w[0].eng->p2pMetrics()["p2pFallbackFrame"] == f);
    CHECK_FALSE(w[0].eng->health().p2pUsable(1));
    CHECK(w[1].ofType("fallback").empty());
    const auto sent = collect(w, 150);
    checkFallbackPolicy(sent[0], "peer 0 after connection-failed");
    CHECK(sent[1].p2pInput > 50);  // the other side still uses its channel
  }
}

TEST_CASE("engine metrics: fallback on latency via slow pongs (critical, high), sticky; recovery when configured",
          "[metrics-engine]") {
  SECTION("latency-critical: 260 ms one way") {
    World w(2, "", 9);
    w.p2pMs = 260;
    REQUIRE(w.runUntil([&] { return !w[0].ofType("fallback").empty() && !w[1].ofType("fallback").empty(); }, 200));
    for (int i = 0; i < 2; ++i) {
      const auto fb = w[i].ofType("fallback");
      REQUIRE(fb.size() == 1);
      CHECK(fb[0]["reason"] == "latency-critical");
      CHECK(fb[0]["latencyMs"].get<double>() > 200);
      CHECK(fb[0]["latencyMs"].get<double>() <= 300);
      CHECK(w[i].eng->p2pMetrics()["p2pFallbackFrame"] == fb[0]["frame"]);
    }
    const auto sent = collect(w, 200);
    checkFallbackPolicy(sent[0], "peer 0");
    checkFallbackPolicy(sent[1], "peer 1");
    // sticky: a fast link does not bring P2P back without fallbackRecovery
    w.p2pMs = 10;
    const auto later = collect(w, 300);
    checkFallbackPolicy(later[0], "peer 0, fast link");
    CHECK(w[0].eng->health().inFallback(1));
    CHECK(w[0].eng->health().latencyMs(1) < 50);
    CHECK(w[0].ofType("recovery").empty());
    CHECK(w[0].eng->stateSync().desyncCount() == 0);
  }

  SECTION("latency-high: 400 ms one way") {
    World w(2, "", 10);
    w.p2pMs = 400;
    REQUIRE(w.runUntil([&] { return !w[0].ofType("fallback").empty(); }, 200));
    const auto fb = w[0].ofType("fallback");
    CHECK(fb[0]["reason"] == "latency-high");
    CHECK(fb[0]["latencyMs"].get<double>() > 300);
    CHECK(w[0].eng->exportSessionMetrics()["quality"]["fallback"]["reason"] == "latency-high");
    CHECK(w[0].eng->exportSessionMetrics()["quality"]["peers"][0]["fallbackReason"] == "latency-high");
  }

  SECTION("recovery with fallbackRecovery {healthyForMs, latencyBelowMs}") {
    World w(2, ",\"pingIntervalMs\":100,\"fallbackRecovery\":{\"healthyForMs\":1000,\"latencyBelowMs\":50}", 12);
    w.p2pMs = 260;
    REQUIRE(w.runUntil([&] { return !w[0].ofType("fallback").empty(); }, 200));
    const auto fb = w[0].ofType("fallback");
    CHECK(fb[0]["reason"] == "latency-critical");
    const double fallbackAt = w.now;
    const auto during = collect(w, 150);
    checkFallbackPolicy(during[0], "peer 0 in fallback");
    w.p2pMs = 10;
    REQUIRE(w.runUntil([&] { return !w[0].ofType("recovery").empty(); }, 300));
    const json rec = w[0].ofType("recovery")[0];
    CHECK(rec["peer"] == 1);
    CHECK(w.now - fallbackAt >= 1000);  // healthy for at least healthyForMs
    CHECK(rec["fallbackMs"].get<double>() >= 1000);
    CHECK(w[0].eng->health().p2pUsable(1));
    const auto after = collect(w, 150);
    CHECK(after[0].p2pInput > 50);  // inputs back on the DataChannel
    CHECK(after[0].p2pHash > 0);
    const json m = w[0].eng->exportSessionMetrics();
    CHECK(m["quality"]["fallback"]["recoveries"] == 1);
    CHECK(m["quality"]["fallback"]["triggered"] == true);  // historical
    CHECK(m["p2pMetrics"]["p2pFallbackTriggered"] == true);
    CHECK(m["quality"]["fallback"]["events"].size() >= 2);
    CHECK(w[0].eng->stateSync().desyncCount() == 0);
  }
}

TEST_CASE("engine metrics: counters agree with the wire in a dual-path run with every 3rd P2P packet lost",
          "[metrics-engine]") {
  World w(2, ",\"sendPolicy\":\"dual\"", 13);
  std::map<std::pair<int, int>, uint64_t> p2pSeq;
  w.drop = [&p2pSeq](const Wire& x) { return x.path == Path::P2P && p2pSeq[{x.from, x.to}]++ % 3 == 2; };
  REQUIRE(w.runUntil([&] { return w.minFrame() >= 600; }, 3000));
  w.drain();  // every packet in flight arrives (the relay is reliable)

  const int delay = 2;
  for (int s = 0; s < 2; ++s) {
    const int r = 1 - s;
    SyncEngine& S = *w[s].eng;
    SyncEngine& R = *w[r].eng;
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
    CHECK(is["entriesSentViaP2P"] == w.counts[static_cast<size_t>(s)].p2pInputEntriesOut);
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
    CHECK(rP2P + R.metrics().duplicates(Path::P2P) == w.counts[static_cast<size_t>(r)].p2pInputEntriesIn);
    // packets: counted per path, and equal to what the link saw
    const auto& cs = w.counts[static_cast<size_t>(s)];
    const auto& cr = w.counts[static_cast<size_t>(r)];
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
  Node a(0, cfg(2, 0, ",\"timeSync\":false"), 1, 2);
  SyncEngine& e = *a.eng;
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
  a.endAt = 39;
  CHECK(e.episodeSummary("{}") == "[Episode] Complete at frame 0 | Rewards: {} | InputBuf: 256 | Rollbacks: 0 | Syncs: 0 | P2P: N/A");

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
    a.step(now, 1);
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

TEST_CASE("engine sync: relay action_counts are complete when the peer's first inputs arrive before the first advance",
          "[statesync-engine]") {
  // Player 1's page starts 150 ms after player 0's: player 0's inputs for the first frames are
  // already there at player 1's first advance, so frame 0 is confirmed by that advance. In the
  // next episode the same happens to whichever page resets later.
  World w(2, "", 31);
  w.nextAt[1] = 150;
  for (int i = 0; i < 2; ++i) w[i].endAt = 60;
  bool reset[2] = {false, false};
  REQUIRE(w.runUntil(
      [&] {
        for (int i = 0; i < 2; ++i) {
          if (reset[i] || !w[i].hasEpisodeEnd(0)) continue;
          w[i].endAt = -1;
          REQUIRE(w[i].eng->resetEpisode(-1).empty());
          w[i].resetGame();
          reset[i] = true;
          if (i == 0) w.nextAt[1] += 150;  // player 1 begins episode 1 late as well
        }
        return reset[0] && reset[1] && w.minFrame() >= w[0].eng->episodeStart() + 60;
      },
      3000));
  for (int i = 0; i < 2; ++i) {
    INFO("peer " << i);
    uint64_t relayMsgs[2] = {0, 0};
    for (const Node::SentHash& h : w[i].hashesSent) {
      if (!h.relay) continue;
      INFO("episode " << h.episode << " frame " << h.frame);
      CHECK(h.countsTotal == 2 * static_cast<int64_t>(h.frame));  // 2 actors x f frames
      ++relayMsgs[h.episode];
    }
    CHECK(relayMsgs[0] >= 10);
    CHECK(relayMsgs[1] >= 8);
    CHECK(w[i].eng->stateSync().desyncCount() == 0);
  }
}

TEST_CASE("engine sync: 3 players, one channel closed: END and READY still reach the peer in fallback",
          "[statesync-engine]") {
  World w(3, "", 41);
  REQUIRE(w.runUntil([&] { return w.minFrame() >= 60; }, 1000));
  // the channel between players 0 and 2 closes; 0-1 and 1-2 stay up
  w.closed = {{0, 2}, {2, 0}};
  w[0].eng->onChannelClosed(2, w.now);
  w[2].eng->onChannelClosed(0, w.now);
  for (int i = 0; i < 3; ++i) w[i].endAt = 150;
  bool reset[3] = {false, false, false};
  const bool ended = w.runUntil(
      [&] {
        for (int i = 0; i < 3; ++i) {
          if (reset[i] || !w[i].hasEpisodeEnd(0)) continue;
          w[i].endAt = -1;
          REQUIRE(w[i].eng->resetEpisode(-1).empty());
          w[i].resetGame();
          reset[i] = true;
        }
        return reset[0] && reset[1] && reset[2];
      },
      4000);
  for (int i = 0; i < 3; ++i) {
    INFO("peer " << i << " ended " << w[i].hasEpisodeEnd(0) << " synced " << w[i].eng->stateSync().episodeEndSynced()
                  << " END sent " << w[i].eng->stateSync().endMessagesSent());
    CHECK(w[i].hasEpisodeEnd(0));
  }
  REQUIRE(ended);
  REQUIRE(w.runUntil([&] { return w.minFrame() >= w[0].eng->episodeStart() + 60; }, 2000));
  for (int i = 0; i < 3; ++i) {
    INFO("peer " << i);
    CHECK(w[i].eng->stateSync().allReady());
    CHECK(w[i].eng->stateSync().episode() == 1);
    CHECK(w[i].eng->verifiedFrame() > static_cast<int64_t>(w[i].eng->episodeStart()) + 30);
    CHECK(w[i].eng->stateSync().desyncCount() == 0);
  }
}

TEST_CASE("engine sync: an episode that ends after its first frame; the next one still ends properly",
          "[statesync-engine]") {
  World w(2, "", 51);
  for (int i = 0; i < 2; ++i) w[i].endAt = 0;  // the env terminates right after frame 0
  uint32_t episode = 0;
  for (int round = 0; round < 2; ++round) {
    bool reset[2] = {false, false};
    INFO("round " << round);
    REQUIRE(w.runUntil(
        [&] {
          for (int i = 0; i < 2; ++i) {
            if (reset[i] || !w[i].hasEpisodeEnd(episode)) continue;
            REQUIRE(w[i].eng->resetEpisode(-1).empty());
            w[i].resetGame();
            w[i].endAt = 30;
            reset[i] = true;
            if (i == 0) w.nextAt[1] += 200;  // player 1 begins the next episode late
          }
          return reset[0] && reset[1];
        },
        2000));
    ++episode;
  }
  for (int i = 0; i < 2; ++i) {
    INFO("peer " << i);
    const auto ends = w[i].ofType("episodeEnd");
    REQUIRE(ends.size() == 2);
    CHECK(ends[0]["episode"] == 0);
    CHECK(ends[0]["episodeFrame"] == 0);
    CHECK(ends[1]["episode"] == 1);
    CHECK(ends[1]["episodeFrame"] == 30);
    CHECK(ends[1]["frame"] == 65 + 30);
    CHECK(w[i].eng->episode() == 2);
    CHECK(w[i].eng->stateSync().desyncCount() == 0);
  }
}
