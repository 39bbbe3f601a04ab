// Properties of the sync engine, with virtual time and scripted arrival orders:
//   symmetry (identical per-frame action logs, no host), rollback only on a misprediction and
//   from the earliest mispredicted frame, dedup across redundant packets and both paths,
//   conflicts, spoofing / unknown players / window limits / bounded memory, INPUT_REQUEST gap
//   filling, episode reset, sync-test mode, and time sync.
//
// Packets are either produced by real engines (Node below drives one exactly like the JS glue:
// advance -> rollback/replay -> snapshot -> step -> send) or built by hand with encode() and fed
// to engine->receive(). The whole-session cases use the harness Session (tests/unit/harness.hpp).
#include <catch2/catch_test_macros.hpp>

#include <malloc.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

namespace {

constexpr double kFrameMs = 1000.0 / 30.0;

// ------------------------------------------------------------------------------ wire helpers

struct Rec {
  OutKind kind;
  Path path;
  int to;
  RelayEvent ev;
  std::vector<uint8_t> bytes;
};

std::vector<Rec> readBox(const Outbox& box) {
  std::vector<Rec> v;
  const uint8_t* p = box.data();
  size_t off = 0;
  while (off + 8 <= box.size()) {
    uint32_t len;
    std::memcpy(&len, p + off + 4, 4);
    v.push_back(Rec{static_cast<OutKind>(p[off]), static_cast<Path>(p[off + 1]), static_cast<int8_t>(p[off + 2]),
                    static_cast<RelayEvent>(p[off + 3]), std::vector<uint8_t>(p + off + 8, p + off + 8 + len)});
    off += 8 + ((len + 3) & ~size_t(3));
  }
  return v;
}

std::vector<uint8_t> enc(const Message& m) {
  std::vector<uint8_t> b(kMaxPacketBytes + 16);
  size_t n = encode(m, b.data(), b.size());
  REQUIRE(n > 0);
  b.resize(n);
  return b;
}

// INPUT from `player` carrying `entries` (ascending frames); header = newest entry unless given.
std::vector<uint8_t> inputPacket(int player, const std::vector<std::pair<uint32_t, uint8_t>>& entries, int64_t header = -1) {
  Message m;
  m.type = MsgType::Input;
  m.playerIndex = static_cast<uint16_t>(player);
  m.count = static_cast<uint16_t>(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) m.inputs[i] = FrameAction{entries[i].first, entries[i].second};
  m.frame = header >= 0 ? static_cast<uint32_t>(header) : entries.back().first;
  return enc(m);
}

std::vector<uint8_t> simplePacket(MsgType t) {
  Message m;
  m.type = t;
  return enc(m);
}

bool decodes(const std::vector<uint8_t>& b, Message& m) { return decode(b.data(), b.size(), m) == DecodeError::Ok; }

// ------------------------------------------------------------------------------ games

// The harness toy game, plus a hidden counter of snapshot loads that is NOT restored by load()
// and is mixed into the state: the state after a replay differs from the first run.
struct HiddenCounterGame : ToyGame {
  using ToyGame::ToyGame;
  uint64_t loads = 0;
  std::string state() const {
    nlohmann::json j{{"frame", frame}, {"h", std::to_string(h)}, {"pos", pos}, {"hidden", loads}};
    return j.dump();
  }
  bool load(const uint8_t* data, size_t len) {
    ++loads;
    return ToyGame::load(data, len);
  }
};

// ------------------------------------------------------------------------------ a driven engine

struct Pkt {
  int from, to;
  Path path;
  RelayEvent ev;
  std::vector<uint8_t> bytes;
};

template <class G>
struct Node {
  int index;
  int actors;
  std::unique_ptr<SyncEngine> e;
  G game;
  uint8_t action = 0;
  // the last plan (copied out of the engine right after advance)
  struct Plan {
    Status status = Status::Run;
    uint32_t frame = 0;
    bool save = false;
    bool rollback = false;
    int32_t target = -1, load = -1, count = 0;
    std::vector<uint8_t> cur, replay, resnap;
  } plan;
  bool applied = true;
  // what the game really executed (last execution of each frame: live or replayed)
  std::map<uint32_t, std::vector<uint8_t>> executed;
  std::vector<json> events;
  std::map<std::string, int> eventCount;
  std::vector<Pkt> sent;  // produced by the last calls, not yet handed to a network
  uint64_t runs = 0, stalls = 0, waits = 0, rollbacks = 0, ended = 0;
  std::vector<std::pair<uint32_t, int32_t>> rollbackLog;  // (plan frame, target)
  int64_t terminalFrame = -1;  // the env is done after stepping this frame (endEpisode)
  bool done = false;

  Node(int idx, const std::string& cfg, int nActors) : index(idx), actors(nActors), game(nActors) {
    std::string err;
    e = SyncEngine::create(cfg.data(), cfg.size(), err);
    if (!e) FAIL("config: " << err);
  }

  void collect(const Outbox& box) {
    for (Rec& r : readBox(box)) {
      if (r.kind == OutKind::Event) {
        json j = json::parse(r.bytes.begin(), r.bytes.end(), nullptr, false);
        if (j.is_discarded()) continue;
        std::string t = j.value("type", "");
        ++eventCount[t];
        if (t != "hashBroadcast" && t != "verified" && events.size() < 20000) events.push_back(j);
      } else {
        RelayEvent ev = r.kind == OutKind::RelayJson ? r.ev : (r.path == Path::Relay ? RelayEvent::Packet : RelayEvent::None);
        sent.push_back(Pkt{index, r.to, r.path, ev, std::move(r.bytes)});
      }
    }
  }

  Status advance(double now, bool apply = true) {
    REQUIRE(applied);
    Status st = e->advance(now, action, 0);
    const int32_t* H = e->planHeader();
    const uint8_t* base = e->planBase();
    plan.status = st;
    plan.frame = static_cast<uint32_t>(H[kFrame]);
    plan.save = H[kSaveSnapshot] == 1;
    plan.rollback = H[kRollback] == 1;
    plan.target = plan.rollback ? H[kRollbackTarget] : -1;
    plan.load = plan.rollback ? H[kLoadFrame] : -1;
    plan.count = plan.rollback ? H[kReplayCount] : 0;
    plan.cur.assign(base + e->curActionsOffset(), base + e->curActionsOffset() + actors);
    plan.replay.assign(base + e->replayActionsOffset(), base + e->replayActionsOffset() + static_cast<size_t>(plan.count) * static_cast<size_t>(actors));
    plan.resnap.assign(base + e->resnapOffset(), base + e->resnapOffset() + plan.count);
    if (plan.rollback) {
      ++rollbacks;
      rollbackLog.emplace_back(plan.frame, plan.target);
    }
    collect(e->outbox());
    applied = false;
    if (apply) this->apply();
    return st;
  }

  void save(uint32_t f) {
    std::string s = game.state();
    REQUIRE(e->saveSnapshot(f, reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }

  // Steps frame f; returns false when the env was already done (nothing stepped).
  bool stepFrame(uint32_t f, const uint8_t* acts, double now) {
    if (done) return false;
    game.step(acts, actors);
    executed[f] = std::vector<uint8_t>(acts, acts + actors);
    if (terminalFrame >= 0 && static_cast<int64_t>(f) == terminalFrame) {
      done = true;
      e->endEpisode(f, now);
    }
    return true;
  }

  // The rest of the page's step(): rollback + replay, then this frame.
  void apply(double now = 0) {
    applied = true;
    if (plan.rollback) {
      const SnapshotStore::Entry* s = e->snapshot(static_cast<uint32_t>(plan.load));
      REQUIRE(s != nullptr);
      REQUIRE(game.load(e->snapshotBytes(*s), s->length));
      // the env re-evaluates `done` in the replay (a state loaded past the terminal frame is done)
      done = terminalFrame >= 0 && plan.load > terminalFrame;
      for (int i = 0; i < plan.count; ++i) {
        uint32_t f = static_cast<uint32_t>(plan.load + i);
        if (plan.resnap[static_cast<size_t>(i)]) save(f);
        stepFrame(f, plan.replay.data() + static_cast<size_t>(i) * static_cast<size_t>(actors), now);
      }
    }
    switch (plan.status) {
      case Status::Run:
        ++runs;
        if (done) break;  // the replay ended the episode: the env does not step further
        if (plan.save) save(plan.frame);
        stepFrame(plan.frame, plan.cur.data(), now);
        break;
      case Status::Stall: ++stalls; break;
      case Status::Wait: ++waits; break;
      case Status::Ended: ++ended; break;
    }
  }

  RxResult receive(const Pkt& p, double now) {
    RxResult r;
    if (p.path == Path::P2P || p.ev == RelayEvent::Packet)
      r = e->receive(p.bytes.data(), p.bytes.size(), p.from, p.path, now);
    else
      r = e->receiveRelayJson(p.ev, reinterpret_cast<const char*>(p.bytes.data()), p.bytes.size(), p.from, now);
    collect(e->replies());
    return r;
  }
  RxResult rx(const std::vector<uint8_t>& b, int from, double now, Path via = Path::P2P) {
    return receive(Pkt{from, index, via, via == Path::Relay ? RelayEvent::Packet : RelayEvent::None, b}, now);
  }

  // Executed actions of [from, to] (numActors bytes each) as the game really ran them.
  std::vector<uint8_t> executedLog(uint32_t from, uint32_t to) const {
    std::vector<uint8_t> out;
    for (uint32_t f = from; f <= to; ++f) {
      auto it = executed.find(f);
      if (it == executed.end()) break;
      out.insert(out.end(), it->second.begin(), it->second.end());
    }
    return out;
  }
  void resetGame() {
    game = G(actors);
    executed.clear();
    done = false;
    terminalFrame = -1;
  }
};

std::string cfgFor(int players, int local, const std::string& extra = "") {
  return "{\"numPlayers\":" + std::to_string(players) + ",\"localPlayerIndex\":" + std::to_string(local) + extra + "}";
}

// ------------------------------------------------------------------------------ a world of nodes
// Nodes over the harness Network (lossy P2P, reliable relay), each at its own frame rate.
template <class G>
struct World {
  Network net;
  std::vector<std::unique_ptr<Node<G>>> nodes;
  std::vector<double> nextAt, period, pausedUntil;
  std::vector<Rng> rngs;
  double now = 0;
  double changeProb = 0.2;
  double blackoutFrom = 0, blackoutUntil = 0;
  std::function<void(size_t)> afterStep;

  World(int players, const std::string& extra, LinkProfile link, uint64_t seed) : net(players, link, seed ^ 0x5eed) {
    Rng r(seed);
    for (int i = 0; i < players; ++i) {
      nodes.push_back(std::make_unique<Node<G>>(i, cfgFor(players, i, extra), players));
      nextAt.push_back(r.uniform() * kFrameMs);
      period.push_back(kFrameMs);
      pausedUntil.push_back(0);
      rngs.emplace_back(seed * 131 + static_cast<uint64_t>(i));
    }
  }
  void flush(Node<G>& n) {
    for (Pkt& p : n.sent) net.send(p.from, p.to, p.path, p.ev, p.bytes.data(), p.bytes.size(), now);
    n.sent.clear();
  }
  void tick() {
    double next = *std::min_element(nextAt.begin(), nextAt.end());
    while (net.due(next)) {
      Delivery d = net.pop();
      now = std::max(now, d.at);
      if (now < blackoutUntil && now >= blackoutFrom) continue;  // every path is down
      Node<G>& n = *nodes[static_cast<size_t>(d.to)];
      n.receive(Pkt{d.from, d.to, d.path, d.event, d.bytes}, now);
      flush(n);
    }
    now = next;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (nextAt[i] > now) continue;
      nextAt[i] += period[i];
      if (pausedUntil[i] > now) continue;
      Node<G>& n = *nodes[i];
      if (rngs[i].chance(changeProb)) n.action = static_cast<uint8_t>(rngs[i].below(5));
      n.advance(now, false);
      n.apply(now);
      flush(n);
      if (afterStep) afterStep(i);
    }
  }
  uint32_t minFrame() const {
    uint32_t m = UINT32_MAX;
    for (auto& n : nodes) m = std::min(m, n->e->frame());
    return m;
  }
  void runUntilFrame(uint32_t f, uint64_t maxTicks = 10'000'000) {
    for (uint64_t t = 0; minFrame() < f && t < maxTicks; ++t) tick();
  }
  int64_t minConfirmed() const {
    int64_t m = INT64_MAX;
    for (auto& n : nodes) m = std::min(m, n->e->confirmedFrame());
    return m;
  }
  int events(const std::string& type) const {
    int c = 0;
    for (auto& n : nodes) {
      auto it = n->eventCount.find(type);
      if (it != n->eventCount.end()) c += it->second;
    }
    return c;
  }
};

// A single engine (player 0 of 2) fed by hand. Player 1 is simulated by crafted packets.
struct Solo {
  Node<ToyGame> a;
  double now = 0;
  explicit Solo(const std::string& extra = ",\"timeSync\":false", int players = 2)
      : a(0, cfgFor(players, 0, extra), players) {
    // Player 1's READY for episode 0 (same initial state as ours).
    ToyGame g0(players);
    std::string s = g0.state();
    for (int p = 1; p < players; ++p) {
      Message m;
      m.type = MsgType::EpisodeReady;
      m.episode = 0;
      m.digest = a.e->hashState(reinterpret_cast<const uint8_t*>(s.data()), s.size());
      pendingReady.push_back({p, enc(m)});
    }
  }
  std::vector<std::pair<int, std::vector<uint8_t>>> pendingReady;
  // One frame: keepalives from the peers (they are alive), then advance + apply.
  Status step(bool apply = true) {
    now += kFrameMs;
    for (int p = 1; p < a.actors; ++p) a.rx(simplePacket(MsgType::Keepalive), p, now);
    Status st = a.advance(now, apply);
    if (!pendingReady.empty()) {  // our READY is out (snapshot of the first frame saved): answer
      for (auto& [p, b] : pendingReady) CHECK(a.rx(b, p, now) == RxResult::Ok);
      pendingReady.clear();
    }
    a.sent.clear();
    return st;
  }
  void stepTo(uint32_t frame) {
    while (a.e->frame() < frame) REQUIRE(step() == Status::Run);
  }
  RxResult in(const std::vector<std::pair<uint32_t, uint8_t>>& entries, int player = 1) {
    return a.rx(inputPacket(player, entries), player, now);
  }
  // Player `player`'s inputs for [from, to], all `action`.
  RxResult inRange(uint32_t from, uint32_t to, uint8_t action, int player = 1) {
    RxResult agg = RxResult::Duplicate;
    for (uint32_t f = from; f <= to; f += 15) {
      std::vector<std::pair<uint32_t, uint8_t>> v;
      for (uint32_t g = f; g <= std::min(to, f + 14); ++g) v.emplace_back(g, action);
      RxResult r = in(v, player);
      if (r == RxResult::Ok) agg = r;
    }
    return agg;
  }
};

}  // namespace

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
  World<ToyGame> w(3, "", link, 9);
  w.runUntilFrame(1500);
  int64_t c = w.minConfirmed();
  REQUIRE(c > 1400);
  // Compare what each game really executed (live or in its last replay) over every confirmed frame.
  std::vector<uint8_t> first = w.nodes[0]->executedLog(0, static_cast<uint32_t>(c));
  REQUIRE(first.size() == static_cast<size_t>(c + 1) * 3);
  for (auto& n : w.nodes) {
    CHECK(n->executedLog(0, static_cast<uint32_t>(c)) == first);
    // the engine's log of the frames still in the ring is what the game executed
    std::vector<uint8_t> log;
    uint32_t from = static_cast<uint32_t>(c - 100);
    REQUIRE(n->e->actionLog(from, static_cast<uint32_t>(c), log) == 101);
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
  CHECK_FALSE(s.a.plan.rollback);
  CHECK(s.a.e->confirmedFrame() == 9);  // player 1 known up to 9; frame 10 ran with a prediction
  // Future inputs arrive before their frames: used as known, no prediction, no rollback.
  CHECK(s.in({{11, 3}, {12, 3}}) == RxResult::Ok);
  s.stepTo(14);
  CHECK_FALSE(s.a.plan.rollback);
  CHECK((s.a.e->planHeader()[kPredictedMask] & 2) != 0);  // frame 13 predicted: previous submitted (3)
  CHECK(s.a.plan.cur[1] == 3);
  // Late but correctly predicted inputs (previous submitted action) -> still no rollback.
  CHECK(s.in({{10, 0}, {13, 3}}) == RxResult::Ok);
  s.step();
  CHECK_FALSE(s.a.plan.rollback);
  CHECK(s.a.e->metrics().rollbackCount() == 0);
  CHECK(s.a.rollbacks == 0);
}

TEST_CASE("rollback: two late inputs in one receive batch -> one rollback from the earliest", "[engine]") {
  for (int variant = 0; variant < 3; ++variant) {
    CAPTURE(variant);
    Solo s;
    s.stepTo(20);  // frames 0..19 ran with player 1 predicted 0
    REQUIRE(s.inRange(0, 9, 0) == RxResult::Ok);
    s.step();  // frame 20
    REQUIRE_FALSE(s.a.plan.rollback);
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
    REQUIRE(s.a.plan.rollback);
    CHECK(s.a.plan.target == 12);
    CHECK(s.a.plan.load == 10);  // latest snapshot at or before 12 (interval 5)
    CHECK(s.a.plan.count == 11);  // frames 10..20
    // replayed actions of player 1: 10,11 = 0 (known), 12 = 1, 13,14 predicted 1, 15.. = 2
    auto p1 = [&](uint32_t f) { return s.a.plan.replay[static_cast<size_t>(f - 10) * 2 + 1]; };
    CHECK(p1(10) == 0);
    CHECK(p1(11) == 0);
    CHECK(p1(12) == 1);
    CHECK(p1(13) == 1);
    CHECK(p1(14) == 1);
    CHECK(p1(15) == 2);
    CHECK(p1(20) == 2);
    CHECK(s.a.plan.cur[1] == 2);  // frame 21 predicted from the newest known input
    CHECK(s.a.e->metrics().rollbackCount() == 1);
    s.step();
    CHECK_FALSE(s.a.plan.rollback);  // nothing pending
    CHECK(s.a.e->metrics().rollbackCount() == 1);
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
    REQUIRE(s.step(/*apply=*/false) == Status::Run);  // executes frame 21 after a rollback
    REQUIRE(s.a.plan.rollback);
    REQUIRE(s.a.plan.target == 12);
    // ... the page is replaying (advance returned, the next advance not yet called):
    RxResult r = s.in({{c.frame, c.action}});
    if (c.frame == 12) CHECK(r == RxResult::Duplicate);
    else CHECK(r == RxResult::Ok);
    s.a.apply(s.now);
    REQUIRE(s.step() == Status::Run);
    if (c.expect < 0) {
      CHECK_FALSE(s.a.plan.rollback);
    } else {
      REQUIRE(s.a.plan.rollback);
      CHECK(s.a.plan.target == c.expect);
      CHECK(s.a.plan.load <= c.expect);
    }
  }
}

TEST_CASE("rollback: a late input after endEpisode still produces the rollback", "[engine]") {
  for (int order = 0; order < 2; ++order) {
    CAPTURE(order);
    Solo s;
    s.stepTo(20);
    REQUIRE(s.inRange(0, 9, 0) == RxResult::Ok);
    s.a.e->endEpisode(19, s.now);  // the env terminated after stepping frame 19
    if (order == 1) REQUIRE(s.step() == Status::Ended);
    CHECK(s.in({{14, 3}}) == RxResult::Ok);  // late, mispredicted (0)
    s.a.terminalFrame = 19;
    s.step();
    REQUIRE(s.a.plan.rollback);
    CHECK(s.a.plan.target == 14);
    CHECK(s.a.plan.load == 10);
    CHECK(s.a.plan.count == 10);  // 10..19: nothing past the end was executed
    CHECK(s.a.executed.at(14)[1] == 3);
    // the replay re-ends the episode at 19: the engine reports ENDED again
    CHECK(s.step() == Status::Ended);
    CHECK_FALSE(s.a.plan.rollback);
    CHECK(s.a.e->metrics().rollbackCount() == 1);
  }
}

// ================================================================================ 3. dedup

TEST_CASE("dedup: redundant packets and both paths count once; the first path is recorded", "[engine]") {
  Solo s;
  s.stepTo(3);
  auto pkt = inputPacket(1, {{0, 1}, {1, 1}, {2, 2}, {3, 2}, {4, 3}});
  CHECK(s.a.rx(pkt, 1, s.now) == RxResult::Ok);
  CHECK(s.a.rx(pkt, 1, s.now) == RxResult::Duplicate);
  CHECK(s.a.rx(pkt, 1, s.now + 1) == RxResult::Duplicate);
  // the next redundant packet overlaps (3 old + 1 new)
  CHECK(s.in({{2, 2}, {3, 2}, {4, 3}, {5, 3}}) == RxResult::Ok);
  const Metrics& m = s.a.e->metrics();
  CHECK(m.inputsReceived(Path::P2P) == 6);
  CHECK(m.duplicates(Path::P2P) == 13);
  CHECK(m.inputsReceived(Path::Relay) == 0);
  // the same input by the relay (pyodide_player_action) after P2P
  std::string j = formatPlayerAction(json(1), 2, 3, s.now);
  CHECK(s.a.e->receiveRelayJson(RelayEvent::PlayerAction, j.data(), j.size(), 1, s.now + 20) == RxResult::Duplicate);
  CHECK(m.inputsReceived(Path::Relay) == 0);
  CHECK(m.duplicates(Path::Relay) == 1);
  // relay first, then P2P
  j = formatPlayerAction(json(1), 4, 6, s.now);
  CHECK(s.a.e->receiveRelayJson(RelayEvent::PlayerAction, j.data(), j.size(), 1, s.now) == RxResult::Ok);
  CHECK(s.in({{5, 3}, {6, 4}}) == RxResult::Duplicate);
  CHECK(m.inputsReceived(Path::Relay) == 1);
  CHECK(m.inputsReceived(Path::P2P) == 6);
  CHECK(m.duplicates(Path::P2P) == 15);
  json pm = s.a.e->p2pMetrics();
  CHECK(pm["inputsReceivedViaP2P"] == 6);
  CHECK(pm["inputsReceivedViaSocketIO"] == 1);
  json in = s.a.e->exportSessionMetrics()["inputs"];
  CHECK(in["duplicatesViaP2P"] == 15);
  CHECK(in["duplicatesViaSocketIO"] == 1);
  CHECK(in["firstDelivery"]["relayLagAfterP2P"]["count"] == 1);
  CHECK(in["firstDelivery"]["p2pLagAfterRelay"]["count"] == 1);
  // every input is known exactly once with its action
  for (auto [f, a] : std::vector<std::pair<uint32_t, uint8_t>>{{0, 1}, {2, 2}, {4, 3}, {5, 3}, {6, 4}}) {
    uint8_t got = 99;
    CHECK(s.a.e->inputKnown(1, f, got));
    CHECK(got == a);
  }
  // the engine rolled back once for the mispredicted frames 0..2 (one rollback, from frame 0)
  s.step();
  REQUIRE(s.a.plan.rollback);
  CHECK(s.a.plan.target == 0);
}

// ================================================================================ 4. conflict

TEST_CASE("conflict: a different input for a known frame is rejected and history is kept", "[engine]") {
  Solo s;
  s.stepTo(12);
  REQUIRE(s.in({{0, 0}, {1, 0}, {2, 0}, {3, 2}, {4, 2}, {5, 2}, {6, 2}, {7, 2}, {8, 2}, {9, 2}, {10, 2}, {11, 2}, {12, 2}, {13, 2}}) == RxResult::Ok);
  s.step();
  REQUIRE(s.a.plan.rollback);
  CHECK(s.a.plan.target == 3);
  s.step();
  std::vector<uint8_t> before;
  REQUIRE(s.a.e->actionLog(0, 13, before) == 14);
  const uint64_t rejected = s.a.e->metrics().rejectedCount(RxResult::Conflict);
  // P2P: executed frame, confirmed
  CHECK(s.in({{3, 4}}) == RxResult::Conflict);
  // P2P: in a packet whose other entries are duplicates
  CHECK(s.in({{4, 2}, {5, 1}, {6, 2}}) == RxResult::Conflict);
  // relay
  std::string j = formatPlayerAction(json(1), 0, 7, s.now);
  CHECK(s.a.e->receiveRelayJson(RelayEvent::PlayerAction, j.data(), j.size(), 1, s.now) == RxResult::Conflict);
  CHECK(s.a.e->receiveRelayInput(1, 8, 3, s.now, 1) == RxResult::Conflict);
  // INPUT_RESPONSE
  Message r;
  r.type = MsgType::InputResponse;
  r.playerIndex = 1;
  r.count = 2;
  r.inputs[0] = {9, 2};
  r.inputs[1] = {10, 0};
  CHECK(s.a.rx(enc(r), 1, s.now) == RxResult::Conflict);
  // a known future frame (not executed yet)
  CHECK(s.in({{15, 2}}) == RxResult::Ok);
  CHECK(s.in({{15, 3}}) == RxResult::Conflict);
  CHECK(s.a.e->metrics().rejectedCount(RxResult::Conflict) == rejected + 6);
  for (auto [f, a] : std::vector<std::pair<uint32_t, uint8_t>>{{3, 2}, {5, 2}, {7, 2}, {8, 2}, {10, 2}, {15, 2}}) {
    uint8_t got = 99;
    REQUIRE(s.a.e->inputKnown(1, f, got));
    CHECK(got == a);
  }
  s.step();
  CHECK_FALSE(s.a.plan.rollback);
  std::vector<uint8_t> after;
  REQUIRE(s.a.e->actionLog(0, 13, after) == 14);
  CHECK(after == before);
  CHECK(s.a.e->exportSessionMetrics()["rejected"]["CONFLICT"] == rejected + 6);
}

// ================================================================================ 5. junk

TEST_CASE("junk: spoofed / unknown players, frames outside the window, bounded memory", "[engine]") {
  Solo s(",\"timeSync\":false", 3);
  s.stepTo(2);
  SyncEngine& e = *s.a.e;
  const size_t mem = e.memoryBytes();
  auto cnt = [&](RxResult r) { return e.metrics().rejectedCount(r); };

  // playerIndex of another peer
  CHECK(s.a.rx(inputPacket(2, {{3, 1}}), 1, s.now) == RxResult::SpoofedPlayer);
  CHECK(s.a.rx(inputPacket(0, {{3, 1}}), 1, s.now) == RxResult::SpoofedPlayer);  // claims to be us
  CHECK(e.receiveRelayInput(2, 3, 1, s.now, 1) == RxResult::SpoofedPlayer);
  std::string spoof = "{\"player_id\":2,\"action\":1,\"frame_number\":3,\"timestamp\":5,\"from\":1}";
  CHECK(e.receiveRelayJson(RelayEvent::PlayerAction, spoof.data(), spoof.size(), 1, s.now) == RxResult::SpoofedPlayer);
  Message resp;
  resp.type = MsgType::InputResponse;
  resp.playerIndex = 2;
  resp.count = 1;
  resp.inputs[0] = {3, 1};
  CHECK(s.a.rx(enc(resp), 1, s.now) == RxResult::SpoofedPlayer);
  CHECK(cnt(RxResult::SpoofedPlayer) == 5);

  // out-of-range players
  CHECK(s.a.rx(inputPacket(3, {{3, 1}}), 1, s.now) == RxResult::UnknownPlayer);
  CHECK(s.a.rx(inputPacket(700, {{3, 1}}), 1, s.now) == RxResult::UnknownPlayer);
  CHECK(s.a.rx(inputPacket(1, {{3, 1}}), 3, s.now) == RxResult::UnknownPlayer);   // no such peer
  CHECK(s.a.rx(inputPacket(1, {{3, 1}}), -1, s.now) == RxResult::UnknownPlayer);
  CHECK(s.a.rx(inputPacket(0, {{3, 1}}), 0, s.now) == RxResult::UnknownPlayer);   // from ourselves
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
  CHECK(s.a.rx(inputPacket(1, {{3, 1}}, 0xFFFFFFFFu), 1, s.now) == RxResult::OutOfWindow);  // header far ahead
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
          e.receive(inputPacket(rng.below(5), {{static_cast<uint32_t>(rng.next()), 1}}).data(), 14, rng.below(6) - 1, Path::P2P, s.now);
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
        e.advance(s.now, 0, 0);
      }
    }
  };
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
  Node<ToyGame> A(0, cfgFor(2, 0, extra), 2), B(1, cfgFor(2, 1, extra), 2);
  double now = 0;
  bool dropBtoA = false;
  uint64_t dropped = 0;
  std::vector<Pkt> requests, responses;
  auto exchange = [&]() {
    for (Pkt& p : A.sent) {
      Message m;
      if (p.path == Path::P2P && decodes(p.bytes, m) && m.type == MsgType::InputRequest) requests.push_back(p);
      B.receive(p, now);
    }
    A.sent.clear();
    for (Pkt& p : B.sent) {
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
    A.action = static_cast<uint8_t>(rng.below(5));
    B.action = static_cast<uint8_t>(rng.below(5));
    A.advance(now);
    exchange();
    B.advance(now);
    exchange();
  };
  for (int i = 0; i < 20; ++i) frame();
  const int64_t knownBefore = [&] {
    int64_t k = 0;
    uint8_t x;
    while (A.e->inputKnown(1, static_cast<uint32_t>(k), x)) ++k;
    return k - 1;
  }();
  REQUIRE(knownBefore >= 18);
  // (with redundancy 2 < inputDelay + 1 the first packet already left frame 0 out: that gap was
  // requested and filled at the start)
  requests.clear();
  responses.clear();
  const uint64_t gapsBefore = A.e->exportSessionMetrics()["inputs"]["gapsFilled"].get<uint64_t>();
  dropBtoA = true;
  for (int i = 0; i < 6; ++i) frame();
  REQUIRE(dropped == 6);
  REQUIRE(requests.empty());
  dropBtoA = false;
  // B's next INPUT carries 2 frames: A sees the gap, asks for it in its next advance.
  now += kFrameMs;
  B.advance(now);
  exchange();
  A.advance(now);
  REQUIRE_FALSE(A.sent.empty());
  Message req;
  bool found = false;
  for (Pkt& p : A.sent)
    if (decodes(p.bytes, req) && req.type == MsgType::InputRequest) { found = true; CHECK(p.to == 1); break; }
  REQUIRE(found);
  CHECK(req.start == static_cast<uint32_t>(knownBefore + 1));  // the first lost frame
  CHECK(req.end >= req.start + 4);
  const uint64_t requestsBefore = A.e->exportSessionMetrics()["inputs"]["requestsSent"].get<uint64_t>() - 1;
  // B answers from its history: INPUT_RESPONSE with every frame of the range.
  exchange();
  REQUIRE(responses.size() == 1);
  Message resp;
  REQUIRE(decodes(responses[0].bytes, resp));
  CHECK(resp.type == MsgType::InputResponse);
  CHECK(resp.playerIndex == 1);
  CHECK(resp.inputs[0].frame == req.start);
  CHECK(resp.count == req.end - req.start + 1);
  CHECK(B.e->exportSessionMetrics()["inputs"]["responsesSent"] == requestsBefore + 1);
  // the gap is filled
  for (uint32_t f = req.start; f <= req.end; ++f) {
    uint8_t x, y;
    REQUIRE(A.e->inputKnown(1, f, x));
    REQUIRE(B.e->inputKnown(1, f, y));
    CHECK(x == y);
  }
  CHECK(A.e->exportSessionMetrics()["inputs"]["gapsFilled"].get<uint64_t>() == gapsBefore + (req.end - req.start + 1));
  // and the session goes on, symmetric
  for (int i = 0; i < 60; ++i) frame();
  int64_t c = std::min(A.e->confirmedFrame(), B.e->confirmedFrame());
  REQUIRE(c > 70);
  CHECK(A.executedLog(0, static_cast<uint32_t>(c)) == B.executedLog(0, static_cast<uint32_t>(c)));
  CHECK(A.eventCount["desync"] + B.eventCount["desync"] == 0);
}

// ================================================================================ 7. episodes

TEST_CASE("episode reset: clears frame state, keeps session metrics, new delay, stale packets rejected", "[engine]") {
  LinkProfile link{30, 10, 0.10, 0.05, 0.02, 20};
  World<ToyGame> w(2, "", link, 21);
  const uint32_t E = 599;  // the env terminates after stepping frame 599 (episode frame)
  for (auto& n : w.nodes) n->terminalFrame = E;
  std::vector<Pkt> oldInputs;  // INPUT packets of episode 0, replayed after the reset
  std::vector<uint32_t> oldStart(2), endFrame(2, 0);
  std::vector<json> metricsAtEnd(2);
  std::vector<uint64_t> rollbacksAtEnd(2);
  std::vector<bool> reset(2, false);
  std::vector<std::vector<uint8_t>> ep0Log(2);
  w.afterStep = [&](size_t i) {
    Node<ToyGame>& n = *w.nodes[i];
    if (!reset[i]) {
      auto it = std::find_if(n.events.begin(), n.events.end(), [](const json& j) { return j["type"] == "episodeEnd"; });
      if (it != n.events.end()) {
        endFrame[i] = (*it)["frame"].get<uint32_t>();
        oldStart[i] = n.e->episodeStart();
        metricsAtEnd[i] = n.e->exportSessionMetrics();
        rollbacksAtEnd[i] = n.e->metrics().rollbackCount();
        CHECK(n.e->resetEpisode(4) == "");
        reset[i] = true;
        // frame state cleared
        uint32_t start = n.e->episodeStart();
        CHECK(start == endFrame[i] + 1 + 64);
        CHECK(n.e->frame() == start);
        CHECK(n.e->confirmedFrame() == static_cast<int64_t>(start) - 1);
        CHECK(n.e->episode() == 1);
        CHECK(n.e->config().inputDelay == 4);
        uint8_t x;
        CHECK_FALSE(n.e->inputKnown(1 - static_cast<int>(i), E - 5, x));
        std::vector<uint8_t> log;
        CHECK(n.e->actionLog(E - 50, E, log, false) == 0);
        // session metrics kept
        json now = n.e->exportSessionMetrics();
        CHECK(now["p2pMetrics"]["inputsReceivedViaP2P"] == metricsAtEnd[i]["p2pMetrics"]["inputsReceivedViaP2P"]);
        CHECK(now["rollbacks"]["count"] == metricsAtEnd[i]["rollbacks"]["count"]);
        CHECK(n.e->metrics().rollbackCount() == rollbacksAtEnd[i]);
        ep0Log[i] = n.executedLog(0, E);
        n.resetGame();
      }
    }
  };
  // capture some of player 1's INPUT packets near the end of episode 0
  auto capture = [&]() {
    for (uint64_t t = 0; t < 100000 && !(reset[0] && reset[1]); ++t) {
      w.tick();
      if (oldInputs.size() < 40 && w.nodes[1]->e->frame() > E - 20 && !reset[1]) {
        // re-create the packet B would send: its newest inputs
        std::vector<std::pair<uint32_t, uint8_t>> v;
        for (uint32_t f = w.nodes[1]->e->frame() - 5; f < w.nodes[1]->e->frame(); ++f) {
          uint8_t a;
          if (w.nodes[1]->e->inputKnown(1, f, a)) v.emplace_back(f, a);
        }
        if (!v.empty()) oldInputs.push_back(Pkt{1, 0, Path::P2P, RelayEvent::None, inputPacket(1, v)});
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
  const uint32_t start1 = w.nodes[0]->e->episodeStart();
  CHECK(w.nodes[1]->e->episodeStart() == start1);
  CHECK(start1 > E);
  // stale INPUT packets of episode 0 are rejected by the new episode
  for (Pkt& p : oldInputs) CHECK(w.nodes[0]->receive(p, w.now) == RxResult::StaleEpisode);
  // episode 1 runs (frames are session-wide) and is symmetric
  w.runUntilFrame(start1 + 1500);
  int64_t c = w.minConfirmed();
  REQUIRE(c > static_cast<int64_t>(start1) + 1400);
  auto l0 = w.nodes[0]->executedLog(start1, static_cast<uint32_t>(c));
  REQUIRE(l0.size() == static_cast<size_t>(c - start1 + 1) * 2);
  CHECK(l0 == w.nodes[1]->executedLog(start1, static_cast<uint32_t>(c)));
  // the first 4 frames of episode 1: each player's delayed default input (action 0)
  for (uint32_t f = start1; f < start1 + 4; ++f) {
    CHECK(l0[(f - start1) * 2] == 0);
    CHECK(l0[(f - start1) * 2 + 1] == 0);
  }
  CHECK(w.events("desync") == 0);
  for (auto& n : w.nodes) {
    CHECK(n->e->verifiedFrame() > static_cast<int64_t>(start1) + 1300);
    json m = n->e->exportSessionMetrics();
    CHECK(m["session"]["episode"] == 1);
    CHECK(m["episodes"].size() == 1);
    CHECK(m["p2pMetrics"]["inputsReceivedViaP2P"].get<uint64_t>() > 1800);  // both episodes
  }
}

// ================================================================================ 8. sync test

TEST_CASE("sync-test mode: a forced rollback of k frames every frame; deterministic game never flagged", "[engine]") {
  for (int k : {1, 3, 7}) {
    CAPTURE(k);
    LinkProfile calm{5, 0, 0, 0, 0, 5};
    World<ToyGame> w(2, ",\"inputDelay\":6,\"syncTest\":{\"checkDistance\":" + std::to_string(k) + "}", calm, 5);
    uint64_t forced = 0;
    w.afterStep = [&](size_t i) {
      auto& p = w.nodes[i]->plan;
      if (p.frame >= static_cast<uint32_t>(k)) {
        CHECK(p.rollback);
        CHECK(p.target == static_cast<int32_t>(p.frame) - k);
        CHECK(p.load == p.target);
        CHECK(p.count == k);
        if (p.rollback) ++forced;
      } else {
        CHECK_FALSE(p.rollback);
      }
    };
    w.runUntilFrame(600);
    CHECK(forced > 1000);
    CHECK(w.events("nondeterminism") == 0);
    CHECK(w.events("desync") == 0);
    // forced rollbacks are not misprediction rollbacks
    for (auto& n : w.nodes) CHECK(n->e->metrics().rollbackCount() == 0);
    int64_t c = w.minConfirmed();
    REQUIRE(c > 550);
    CHECK(w.nodes[0]->executedLog(0, static_cast<uint32_t>(c)) == w.nodes[1]->executedLog(0, static_cast<uint32_t>(c)));
  }
}

TEST_CASE("sync-test mode over a lossy link: real rollbacks inside forced ones, still never flagged", "[engine]") {
  LinkProfile link{90, 30, 0.10, 0.05, 0.02, 20};
  World<ToyGame> w(2, ",\"syncTest\":{\"checkDistance\":2}", link, 15);
  uint64_t deeper = 0;
  w.afterStep = [&](size_t i) {
    auto& p = w.nodes[i]->plan;
    if (p.frame >= 2) {
      CHECK(p.rollback);
      CHECK(p.target <= static_cast<int32_t>(p.frame) - 2);  // a real misprediction may reach further back
      if (p.target < static_cast<int32_t>(p.frame) - 2) ++deeper;
    }
  };
  w.runUntilFrame(1500);
  CHECK(deeper > 10);
  for (auto& n : w.nodes) CHECK(n->e->metrics().rollbackCount() > 10);
  CHECK(w.events("nondeterminism") == 0);
  CHECK(w.events("desync") == 0);
  CHECK(w.events("error") == 0);
  int64_t c = w.minConfirmed();
  REQUIRE(c > 1400);
  CHECK(w.nodes[0]->executedLog(0, static_cast<uint32_t>(c)) == w.nodes[1]->executedLog(0, static_cast<uint32_t>(c)));
}

TEST_CASE("sync-test mode: the episode still ends (forced rollbacks past the terminal frame)", "[engine]") {
  LinkProfile calm{5, 0, 0, 0, 0, 5};
  World<ToyGame> w(2, ",\"inputDelay\":6,\"syncTest\":{\"checkDistance\":3}", calm, 16);
  const uint32_t E = 199;
  for (auto& n : w.nodes) n->terminalFrame = E;
  auto ended = [&](size_t i) { return w.nodes[i]->eventCount["episodeEnd"] > 0; };
  for (uint64_t t = 0; t < 200000 && !(ended(0) && ended(1)); ++t) w.tick();
  for (size_t i = 0; i < 2; ++i) {
    CAPTURE(i);
    CHECK(ended(i));
    CHECK(w.nodes[i]->e->frame() <= E + 1 + 3);  // at most checkDistance frames planned past the end
    CHECK(w.nodes[i]->game.frame == E + 1);
    CHECK(w.nodes[i]->e->stateSync().episodeEndSynced());
  }
  CHECK(w.events("nondeterminism") == 0);
}

TEST_CASE("sync-test mode: a nondeterministic game produces a nondeterminism event", "[engine]") {
  LinkProfile calm{5, 0, 0, 0, 0, 5};
  World<HiddenCounterGame> w(2, ",\"inputDelay\":6,\"syncTest\":{\"checkDistance\":2}", calm, 6);
  w.runUntilFrame(60);
  for (auto& n : w.nodes) {
    CHECK(n->eventCount["nondeterminism"] == 1);  // reported once
    auto it = std::find_if(n->events.begin(), n->events.end(), [](const json& j) { return j["type"] == "nondeterminism"; });
    REQUIRE(it != n->events.end());
    const json& ev = *it;
    // the first replay re-saves frame 1 (rollback to frame 0 at frame 2)... the first
    // re-saved frame after a rollback is flagged
    CHECK(ev["frame"].get<uint32_t>() >= 1);
    CHECK(ev["frame"].get<uint32_t>() <= 3);
    REQUIRE(ev["firstHash"].is_string());
    REQUIRE(ev["replayHash"].is_string());
    CHECK(ev["firstHash"].get<std::string>().size() == 16);
    CHECK(ev["replayHash"].get<std::string>().size() == 16);
    CHECK(ev["firstHash"] != ev["replayHash"]);
    CHECK(ev["checkDistance"] == 2);
    json nd = n->e->exportSessionMetrics()["sync"]["nondeterminism"];
    REQUIRE(nd.size() == 1);
    CHECK(nd[0]["frame"] == ev["frame"]);
  }
}

// ================================================================================ 9. time sync

TEST_CASE("time sync: a peer 10 frames ahead waits, the other never does; counters converge", "[engine]") {
  LinkProfile link{20, 4, 0, 0, 0, 20};
  World<ToyGame> w(2, "", link, 11);
  w.nextAt[0] = 1;
  w.nextAt[1] = 2;
  w.pausedUntil[0] = 10 * kFrameMs + 1.5;  // peer 1 runs 10 frames alone first
  while (w.nodes[0]->e->frame() == 0) w.tick();
  const int64_t lead = static_cast<int64_t>(w.nodes[1]->e->frame()) - static_cast<int64_t>(w.nodes[0]->e->frame());
  CHECK(lead >= 9);
  std::vector<int64_t> diffs;
  w.afterStep = [&](size_t) { diffs.push_back(static_cast<int64_t>(w.nodes[1]->e->frame()) - static_cast<int64_t>(w.nodes[0]->e->frame())); };
  w.runUntilFrame(900);
  CHECK(w.nodes[0]->waits == 0);
  CHECK(w.nodes[1]->waits >= 6);
  CHECK(w.nodes[1]->waits <= 14);
  const int64_t d = static_cast<int64_t>(w.nodes[1]->e->frame()) - static_cast<int64_t>(w.nodes[0]->e->frame());
  CHECK(std::abs(d) <= 2);
  int64_t worstLate = 0;
  for (size_t i = diffs.size() / 2; i < diffs.size(); ++i) worstLate = std::max(worstLate, std::abs(diffs[i]));
  CHECK(worstLate <= 3);
  CHECK(w.events("desync") == 0);
}

TEST_CASE("time sync: a peer whose clock runs faster waits; the frame counters stay together", "[engine]") {
  LinkProfile link{20, 4, 0, 0, 0, 20};
  World<ToyGame> w(2, "", link, 12);
  w.period[1] = 1000.0 / 31.5;  // 5% faster
  std::vector<int64_t> diffs;
  w.afterStep = [&](size_t) { diffs.push_back(static_cast<int64_t>(w.nodes[1]->e->frame()) - static_cast<int64_t>(w.nodes[0]->e->frame())); };
  w.runUntilFrame(1800);
  const uint64_t extraTicks = w.nodes[1]->runs + w.nodes[1]->waits + w.nodes[1]->stalls -
                              (w.nodes[0]->runs + w.nodes[0]->waits + w.nodes[0]->stalls);
  CHECK(extraTicks > 60);  // it really ran faster
  CHECK(w.nodes[1]->waits >= 60);
  CHECK(w.nodes[0]->waits <= 2);
  int64_t worstLate = 0;
  for (size_t i = diffs.size() / 4; i < diffs.size(); ++i) worstLate = std::max(worstLate, std::abs(diffs[i]));
  CHECK(worstLate <= 4);
  CHECK(w.nodes[1]->stalls == 0);
  CHECK(w.events("desync") == 0);
}

TEST_CASE("time sync: a pause between episodes does not make anyone WAIT in the next one", "[engine]") {
  for (uint64_t seed = 13; seed < 19; ++seed) {
  CAPTURE(seed);
  LinkProfile link{20, 4, 0, 0, 0, 20};
  World<ToyGame> w(2, "", link, seed);
  const uint32_t E = 299;
  for (auto& n : w.nodes) n->terminalFrame = E;
  std::vector<bool> seen(2, false);
  bool reset = false;
  std::vector<uint64_t> waitsAtReset(2, 0);
  w.afterStep = [&](size_t i) {
    Node<ToyGame>& n = *w.nodes[i];
    if (!seen[i] && std::any_of(n.events.begin(), n.events.end(), [](const json& j) { return j["type"] == "episodeEnd"; }))
      seen[i] = true;
    if (!reset && seen[0] && seen[1]) {
      // both pages show a between-episode screen for 3 s (no advance), then start the next episode
      reset = true;
      for (size_t k = 0; k < 2; ++k) {
        REQUIRE(w.nodes[k]->e->resetEpisode(-1) == "");
        w.nodes[k]->resetGame();
        w.pausedUntil[k] = w.now + 3000;
        waitsAtReset[k] = w.nodes[k]->waits;
      }
    }
  };
  for (uint64_t t = 0; t < 1000000 && !reset; ++t) w.tick();
  REQUIRE(reset);
  CHECK(waitsAtReset[0] + waitsAtReset[1] == 0);
  const uint32_t start1 = w.nodes[0]->e->episodeStart();
  w.runUntilFrame(start1 + 600);
  CHECK(w.nodes[0]->waits == 0);
  CHECK(w.nodes[1]->waits == 0);
  CHECK(std::abs(static_cast<int64_t>(w.nodes[0]->e->frame()) - static_cast<int64_t>(w.nodes[1]->e->frame())) <= 1);
  }
}

TEST_CASE("time sync: a network outage that stalls both peers does not make them WAIT afterwards", "[engine]") {
  for (uint64_t seed = 30; seed < 42; ++seed) {
    CAPTURE(seed);
    LinkProfile link{20, 4, 0, 0, 0, 20};
    World<ToyGame> w(2, "", link, seed);
    w.runUntilFrame(300);
    w.blackoutFrom = w.now;
    w.blackoutUntil = w.now + 2000;
    std::vector<uint64_t> stalls0 = {w.nodes[0]->stalls, w.nodes[1]->stalls};
    w.runUntilFrame(330);
    while (w.now < w.blackoutUntil + 500) w.tick();
    for (size_t k = 0; k < 2; ++k) CHECK(w.nodes[k]->stalls > stalls0[k] + 20);  // both stalled
    const uint64_t w0 = w.nodes[0]->waits, w1 = w.nodes[1]->waits;
    CHECK(w0 + w1 == 0);
    w.runUntilFrame(w.minFrame() + 300);
    CHECK(w.nodes[0]->waits == w0);
    CHECK(w.nodes[1]->waits == w1);
    CHECK(w.events("desync") == 0);
  }
}
