// Test harness shared by the Catch2 suite, the native soak and the fuzzers: a deterministic toy
// game, an in-memory network with a lossy/reordering P2P path and a reliable ordered relay, and
// a Peer that drives a SyncEngine exactly the way the JS glue does (advance -> rollback/replay
// -> snapshot -> step -> send).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sync_engine.hpp"

namespace p2psync::test {

// ---------------------------------------------------------------- deterministic RNG
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  bool chance(double p) { return uniform() < p; }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
};

// ---------------------------------------------------------------- toy game
// State: frame, a rolling hash of every action, per-actor positions. JSON text as the env's
// snapshot, like get_state() in the Pyodide env.
struct ToyGame {
  uint32_t frame = 0;
  uint64_t h = 1469598103934665603ull;
  std::vector<int> pos;
  explicit ToyGame(int actors = 2) : pos(static_cast<size_t>(actors), 0) {}
  void step(const uint8_t* actions, int n) {
    for (int i = 0; i < n; ++i) {
      h = (h ^ (actions[i] + 31u * static_cast<unsigned>(i))) * 1099511628211ull;
      int a = actions[i] % 5;
      pos[static_cast<size_t>(i)] += a == 1 ? 1 : a == 2 ? -1 : a == 3 ? 7 : a == 4 ? -7 : 0;
    }
    ++frame;
  }
  std::string state() const {
    nlohmann::json j{{"frame", frame}, {"h", std::to_string(h)}, {"pos", pos}};
    return j.dump();
  }
  bool load(const uint8_t* data, size_t len) {
    auto j = nlohmann::json::parse(data, data + len, nullptr, false);
    if (j.is_discarded()) return false;
    frame = j["frame"].get<uint32_t>();
    h = std::stoull(j["h"].get<std::string>());
    pos = j["pos"].get<std::vector<int>>();
    return true;
  }
};

// ---------------------------------------------------------------- network
struct LinkProfile {
  double oneWayMs = 25;
  double jitterMs = 10;
  double loss = 0.05;
  double reorder = 0.05;     // extra delay for some packets
  double duplicate = 0.02;
  double relayExtraMs = 20;  // relay one-way = oneWay + relayExtra (ordered, reliable)
};

struct Delivery {
  double at;
  uint64_t seq;
  int from, to;
  Path path;
  RelayEvent event;  // for relay JSON
  std::vector<uint8_t> bytes;
  bool operator>(const Delivery& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

class Network {
 public:
  Network(int peers, LinkProfile prof, uint64_t seed) : n_(peers), prof_(prof), rng_(seed), relayLast_(static_cast<size_t>(peers * peers), 0), p2pOpen_(true) {}
  void send(int from, int to, Path path, RelayEvent ev, const uint8_t* b, size_t len, double now) {
    for (int t = 0; t < n_; ++t) {
      if (t == from || (to >= 0 && t != to)) continue;
      if (path == Path::P2P) {
        if (!p2pOpen_) continue;
        ++p2pSent;
        if (rng_.chance(prof_.loss)) { ++p2pLost; continue; }
        double d = prof_.oneWayMs + (rng_.uniform() - 0.5) * prof_.jitterMs;
        if (rng_.chance(prof_.reorder)) d += prof_.jitterMs + 20;
        push(now + std::max(0.5, d), from, t, path, ev, b, len);
        if (rng_.chance(prof_.duplicate)) push(now + std::max(0.5, d) + 5, from, t, path, ev, b, len);
      } else {
        double& last = relayLast_[static_cast<size_t>(from * n_ + t)];
        double at = std::max(now + prof_.oneWayMs + prof_.relayExtraMs + rng_.uniform() * 2, last + 0.001);
        last = at;
        push(at, from, t, path, ev, b, len);
      }
    }
  }
  bool due(double now) const { return !q_.empty() && q_.top().at <= now; }
  Delivery pop() {
    Delivery d = q_.top();
    q_.pop();
    return d;
  }
  void cutP2P() {
    p2pOpen_ = false;
    std::priority_queue<Delivery, std::vector<Delivery>, std::greater<Delivery>> keep;
    while (!q_.empty()) {
      if (q_.top().path != Path::P2P) keep.push(q_.top());
      q_.pop();
    }
    q_ = std::move(keep);
  }
  void restoreP2P() { p2pOpen_ = true; }
  bool p2pOpen() const { return p2pOpen_; }
  LinkProfile& profile() { return prof_; }
  uint64_t p2pSent = 0, p2pLost = 0;

 private:
  void push(double at, int from, int to, Path path, RelayEvent ev, const uint8_t* b, size_t len) {
    q_.push(Delivery{at, seq_++, from, to, path, ev, std::vector<uint8_t>(b, b + len)});
  }
  int n_;
  LinkProfile prof_;
  Rng rng_;
  std::vector<double> relayLast_;
  bool p2pOpen_;
  uint64_t seq_ = 0;
  std::priority_queue<Delivery, std::vector<Delivery>, std::greater<Delivery>> q_;
};

// ---------------------------------------------------------------- peer
struct Peer {
  int index;
  std::unique_ptr<SyncEngine> engine;
  ToyGame game;
  Rng rng;
  int action = 0;
  double changeProb = 0.2;
  std::vector<nlohmann::json> events;
  uint64_t desyncs = 0, rollbacks = 0, stalls = 0, waits = 0, nondeterminism = 0, replayedFrames = 0;
  bool corruptNext = false;
  std::function<void(const nlohmann::json&)> onEvent;
  size_t maxEventsKept = 10000;

  Peer(int idx, const std::string& cfgJson, uint64_t seed, int actors) : index(idx), game(actors), rng(seed) {
    std::string err;
    engine = SyncEngine::create(cfgJson.data(), cfgJson.size(), err);
    if (!engine) throw std::runtime_error(err);
  }

  void sendBox(const Outbox& box, Network& net, double now) {
    const uint8_t* p = box.data();
    size_t off = 0;
    while (off + 8 <= box.size()) {
      OutKind kind = static_cast<OutKind>(p[off]);
      Path path = static_cast<Path>(p[off + 1]);
      int to = static_cast<int8_t>(p[off + 2]);
      RelayEvent ev = static_cast<RelayEvent>(p[off + 3]);
      uint32_t len;
      std::memcpy(&len, p + off + 4, 4);
      const uint8_t* body = p + off + 8;
      if (kind == OutKind::Packet) net.send(index, to, path, path == Path::Relay ? RelayEvent::Packet : RelayEvent::None, body, len, now);
      else if (kind == OutKind::RelayJson) net.send(index, to, Path::Relay, ev, body, len, now);
      else if (kind == OutKind::Event) {
        auto j = nlohmann::json::parse(body, body + len, nullptr, false);
        if (!j.is_discarded()) onEngineEvent(j);
      }
      off += 8 + ((len + 3) & ~size_t(3));
    }
  }

  void onEngineEvent(const nlohmann::json& j) {
    std::string t = j.value("type", "");
    if (t == "desync") ++desyncs;
    else if (t == "nondeterminism") ++nondeterminism;
    if (events.size() < maxEventsKept && t != "hashBroadcast" && t != "verified" && t != "rollback") events.push_back(j);
    if (onEvent) onEvent(j);
  }

  // One frame of the page's step(). Returns the plan status.
  Status step(double now, Network& net, const uint8_t* bots = nullptr) {
    if (rng.chance(changeProb)) action = rng.below(5);
    if (bots) std::memcpy(engine->botInput(), bots, static_cast<size_t>(engine->config().numBots));
    Status st = engine->advance(now, static_cast<uint8_t>(action), 0);
    const int32_t* H = engine->planHeader();
    const int n = engine->numActors();
    if (H[kRollback]) {
      ++rollbacks;
      const SnapshotStore::Entry* e = engine->snapshot(static_cast<uint32_t>(H[kLoadFrame]));
      if (!e || !game.load(engine->snapshotBytes(*e), e->length)) throw std::runtime_error("snapshot missing for rollback");
      const uint8_t* replay = engine->planBase() + engine->replayActionsOffset();
      const uint8_t* resnap = engine->planBase() + engine->resnapOffset();
      for (int i = 0; i < H[kReplayCount]; ++i) {
        uint32_t f = static_cast<uint32_t>(H[kLoadFrame] + i);
        if (resnap[i]) save(f);
        game.step(replay + static_cast<size_t>(i) * static_cast<size_t>(n), n);
        ++replayedFrames;
      }
    }
    if (st == Status::Run) {
      if (H[kSaveSnapshot]) save(static_cast<uint32_t>(H[kFrame]));
      game.step(engine->planBase() + engine->curActionsOffset(), n);
      if (corruptNext) {
        game.h ^= 0xdeadbeef;
        corruptNext = false;
      }
    } else if (st == Status::Stall) {
      ++stalls;
    } else if (st == Status::Wait) {
      ++waits;
    }
    sendBox(engine->outbox(), net, now);
    return st;
  }

  void save(uint32_t frame) {
    std::string s = game.state();
    engine->saveSnapshot(frame, reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }

  RxResult deliver(const Delivery& d, Network& net, double now) {
    RxResult r;
    if (d.path == Path::P2P || d.event == RelayEvent::Packet)
      r = engine->receive(d.bytes.data(), d.bytes.size(), d.from, d.path, now);
    else
      r = engine->receiveRelayJson(d.event, reinterpret_cast<const char*>(d.bytes.data()), d.bytes.size(), d.from, now);
    sendBox(engine->replies(), net, now);
    return r;
  }
};

// ---------------------------------------------------------------- session
struct SessionOptions {
  int players = 2;
  int bots = 0;
  uint64_t seed = 1;
  LinkProfile link;
  std::string extraConfig;  // extra JSON members, e.g. ",\"inputDelay\":3"
  double fps = 30;
};

struct Session {
  SessionOptions opt;
  Network net;
  std::vector<std::unique_ptr<Peer>> peers;
  std::vector<double> nextAt;
  std::vector<double> pausedUntil;
  double now = 0;
  // Per-peer confirmed action logs, collected as frames confirm.
  std::vector<std::vector<uint8_t>> logs;
  std::vector<uint32_t> logged;

  explicit Session(SessionOptions o) : opt(o), net(o.players, o.link, o.seed ^ 0xabcdef) {
    Rng r(o.seed);
    for (int i = 0; i < o.players; ++i) {
      std::string cfg = "{\"numPlayers\":" + std::to_string(o.players) + ",\"localPlayerIndex\":" + std::to_string(i) +
                        ",\"numBots\":" + std::to_string(o.bots) + o.extraConfig + "}";
      peers.push_back(std::make_unique<Peer>(i, cfg, o.seed * 977 + static_cast<uint64_t>(i), o.players + o.bots));
      nextAt.push_back(r.uniform() * (1000.0 / o.fps));
      pausedUntil.push_back(0);
    }
    logs.resize(static_cast<size_t>(o.players));
    logged.assign(static_cast<size_t>(o.players), 0);
  }

  // Advances virtual time to the next event (a delivery or a peer's frame).
  void tick() {
    double frameMs = 1000.0 / opt.fps;
    double next = *std::min_element(nextAt.begin(), nextAt.end());
    while (net.due(next)) {
      Delivery d = net.pop();
      now = std::max(now, d.at);
      peers[static_cast<size_t>(d.to)]->deliver(d, net, now);
    }
    now = next;
    for (size_t i = 0; i < peers.size(); ++i) {
      if (nextAt[i] > now) continue;
      nextAt[i] += frameMs;
      if (pausedUntil[i] > now) continue;
      std::vector<uint8_t> bots(static_cast<size_t>(opt.bots));
      for (int b = 0; b < opt.bots; ++b) bots[static_cast<size_t>(b)] = static_cast<uint8_t>((peers[i]->game.frame + static_cast<uint32_t>(b)) % 5);
      peers[i]->step(now, net, opt.bots ? bots.data() : nullptr);
      collect(i);
    }
  }

  void collect(size_t i) {
    SyncEngine& e = *peers[i]->engine;
    int64_t c = e.confirmedFrame();
    if (c < static_cast<int64_t>(logged[i])) return;
    std::vector<uint8_t> out;
    size_t n = e.actionLog(logged[i], static_cast<uint32_t>(c), out, true);
    logs[i].insert(logs[i].end(), out.begin(), out.end());
    logged[i] += static_cast<uint32_t>(n);
  }

  void runFrames(uint32_t frames) {
    while (true) {
      uint32_t minFrame = UINT32_MAX;
      for (auto& p : peers) minFrame = std::min(minFrame, p->engine->frame());
      if (minFrame >= frames) break;
      tick();
    }
  }

  // Logs identical on the common prefix; returns the common length in frames.
  bool logsIdentical(size_t* commonFrames = nullptr) const {
    size_t n = SIZE_MAX;
    for (const auto& l : logs) n = std::min(n, l.size());
    for (size_t i = 1; i < logs.size(); ++i)
      if (!std::equal(logs[0].begin(), logs[0].begin() + static_cast<long>(n), logs[i].begin())) return false;
    if (commonFrames) *commonFrames = n / static_cast<size_t>(opt.players + opt.bots);
    return true;
  }
  uint64_t totalDesyncs() const {
    uint64_t d = 0;
    for (const auto& p : peers) d += p->desyncs;
    return d;
  }
};

}  // namespace p2psync::test
