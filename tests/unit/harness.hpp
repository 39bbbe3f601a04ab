// The one C++ test harness, shared by the Catch2 suite, the native soak / traffic dump and the
// engine fuzz target:
//   ToyGame  a deterministic toy env (JSON state like an env's get_state()), that can end its
//            episode on a state condition or after a given frame, or be made nondeterministic;
//   Peer     a page: a SyncEngine and its ToyGame, driven frame by frame through driver.hpp
//            (advance -> send -> runPlan -> drainEvents), receiving packets, logging what it
//            sent, executed and was told;
//   Session  peers over the in-memory network (harness_net.hpp) in virtual time, each at its
//            own frame rate, collecting every peer's confirmed action log and, optionally,
//            starting the next episode after each episodeEnd event the way a page does;
//   Solo     one engine fed by hand (the remote players are crafted packets).
#pragma once
#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "driver.hpp"
#include "harness_net.hpp"
#include "relay.hpp"
#include "sync_engine.hpp"
#include "test_util.hpp"

namespace p2psync::test {

constexpr double kFrameMs = 1000.0 / 30.0;  // one frame at the tests' 30 fps

// ---------------------------------------------------------------- toy game
// State: the episode frame (steps since reset), a rolling hash of every action, per-actor
// positions. Its snapshot is JSON text, like get_state() in the Pyodide env.
struct ToyGame {
  uint32_t frame = 0;
  uint64_t h = 1469598103934665603ull;
  std::vector<int> pos;
  // The end of the episode (either, when set): actor endActor at |pos| >= endAtDistance (a state
  // condition: a late input can move it), or after stepping episode frame endAtFrame.
  int endAtDistance = 0;
  int endActor = 0;
  int64_t endAtFrame = -1;
  bool endTruncated = false;  // report the end as truncated instead of terminated
  // Nondeterministic: a count of snapshot loads that load() does not restore, in the state.
  bool leakLoads = false;
  uint64_t loads = 0;
  size_t padBytes = 0;  // > 0: a "pad" string of this length in the state (a large state); load() restores it

  explicit ToyGame(int actors = 2) : pos(static_cast<size_t>(actors), 0) {}
  // A fresh episode with the same end rules.
  void reset() {
    const int d = endAtDistance, actor = endActor;
    const int64_t f = endAtFrame;
    const bool t = endTruncated, leak = leakLoads;
    const size_t pad = padBytes;
    *this = ToyGame(static_cast<int>(pos.size()));
    padBytes = pad;
    endAtDistance = d;
    endActor = actor;
    endAtFrame = f;
    endTruncated = t;
    leakLoads = leak;
  }
  void step(const uint8_t* actions, int n) {
    for (int i = 0; i < n; ++i) {
      h = (h ^ (actions[i] + 31u * static_cast<unsigned>(i))) * 1099511628211ull;
      int a = actions[i] % 5;
      pos[static_cast<size_t>(i)] += a == 1 ? 1 : a == 2 ? -1 : a == 3 ? 7 : a == 4 ? -7 : 0;
    }
    ++frame;
  }
  bool done() const {
    return (endAtDistance > 0 && std::abs(pos[static_cast<size_t>(endActor)]) >= endAtDistance) || (endAtFrame >= 0 && static_cast<int64_t>(frame) > endAtFrame);
  }
  std::string state() const {
    nlohmann::json j{{"frame", frame}, {"h", std::to_string(h)}, {"pos", pos}};
    if (leakLoads) j["hidden"] = loads;
    if (padBytes) j["pad"] = std::string(padBytes, 'p');
    return j.dump();
  }
  bool load(const uint8_t* data, size_t len) {
    ++loads;
    auto j = nlohmann::json::parse(data, data + len, nullptr, false);
    if (j.is_discarded()) return false;
    frame = j["frame"].get<uint32_t>();
    h = std::stoull(j["h"].get<std::string>());
    pos = j["pos"].get<std::vector<int>>();
    padBytes = j.contains("pad") ? j["pad"].get<std::string>().size() : 0;
    return true;
  }
  // The driver's env interface (driver.hpp).
  StepOutcome step(const uint8_t* actions, int n, const RequestView&) {
    step(actions, n);
    const bool d = done();
    return StepOutcome{d && !endTruncated, d && endTruncated};
  }
  // The state hash of snapshot frames 0..n (pre-step states) for a log of n frames.
  static std::vector<std::string> statesOf(const std::vector<uint8_t>& log, int actors) {
    ToyGame g(actors);
    std::vector<std::string> s{g.state()};
    for (size_t k = 0; k + static_cast<size_t>(actors) <= log.size(); k += static_cast<size_t>(actors)) {
      g.step(log.data() + k, actors);
      s.push_back(g.state());
    }
    return s;
  }
};

// ---------------------------------------------------------------- the last plan, copied out
struct PlanCopy {
  struct Req {
    RequestKind kind;
    uint8_t flags;
    uint16_t predictedMask;
    Frame frame, episodeFrame;
    std::array<uint8_t, kMaxActors> actions{};
    bool replay() const { return (flags & kRequestReplay) != 0; }
  };
  Status status = Status::Run;
  Frame frame = 0;  // the header's frame word after advance (the next frame to plan)
  Frame rollbackTarget = kNoFrame, loadFrame = kNoFrame;
  Frame terminalFrame = kNoFrame;  // the header's terminal frame after advance
  int replayCount = 0;
  std::vector<Req> requests;
  PlanStats ran;  // what runPlan did with it

  bool rollback() const { return loadFrame != kNoFrame; }
  // The Advance request of the frame run now (not a replay), or null.
  const Req* current() const {
    for (const Req& r : requests)
      if (r.kind == RequestKind::Advance && !r.replay()) return &r;
    return nullptr;
  }
  std::vector<Req> advances(bool replayed) const {
    std::vector<Req> v;
    for (const Req& r : requests)
      if (r.kind == RequestKind::Advance && r.replay() == replayed) v.push_back(r);
    return v;
  }
  const Req* advanceOf(Frame f) const {
    const Req* found = nullptr;
    for (const Req& r : requests)
      if (r.kind == RequestKind::Advance && r.frame == f) found = &r;
    return found;
  }
  bool saves(Frame f) const {
    for (const Req& r : requests)
      if (r.kind == RequestKind::Save && r.frame == f) return true;
    return false;
  }
  // "L10 S11 A10r A11r A12" (tests' messages)
  std::string str() const {
    std::string s;
    for (const Req& r : requests) {
      s += r.kind == RequestKind::Load ? "L" : r.kind == RequestKind::Save ? "S" : "A";
      s += std::to_string(r.frame) + (r.replay() ? "r " : " ");
    }
    return s;
  }
};

// ---------------------------------------------------------------- peer
struct Peer {
  // A state hash this peer sent (STATE_HASH or p2p_state_sync), logged when logHashes.
  struct SentHash {
    uint32_t frame;        // episode frame
    uint64_t hash;
    int64_t confirmedRel;  // the engine's confirmed frame (episode-relative) when it was sent
    uint32_t episode;
    bool relay;            // p2p_state_sync (else binary STATE_HASH)
    int64_t countsTotal;   // p2p_state_sync: sum of action_counts (-1 for STATE_HASH)
  };

  int index;
  int actors;
  std::unique_ptr<SyncEngine> engine;
  ToyGame game;
  Rng rng;
  // The local policy: a random action, changed with probability changeProb each frame, or the
  // forced one.
  int action = 0;
  double changeProb = 0.2;
  int forcedAction = -1;
  Frame corruptFrame = kNoFrame;  // alter the state right after stepping this frame (live and replayed)
  bool keepExecuted = false;      // record what the game executed per frame (its last execution)
  std::map<Frame, std::vector<uint8_t>> executed;
  bool logHashes = false;
  std::vector<SentHash> hashesSent;
  // Every engine event (but hashBroadcast / verified, which are only counted), in order.
  std::vector<nlohmann::json> events;
  std::map<std::string, uint64_t> eventCount;
  std::vector<nlohmann::json> episodeEnds;  // every episodeEnd event (kept whatever maxEventsKept)
  size_t maxEventsKept = 20000;
  std::function<void(const nlohmann::json&)> onEvent;
  std::vector<Packet> sent;      // records produced and not yet put on a network
  std::vector<Packet> lastSent;  // the records of the last step() (Session: of this tick)
  PlanCopy plan;                 // the last plan
  bool keepPlan = true;
  std::map<RxResult, uint64_t> rx;  // receive results
  uint64_t runs = 0, stalls = 0, waits = 0, ended = 0, starting = 0, joining = 0, rollbacks = 0, replayedFrames = 0, steps = 0, cuts = 0;
  uint64_t stepsPastEnd = 0;  // env steps of a state that had already ended (must stay 0)
  uint64_t desyncs = 0, nondeterminism = 0, errors = 0;
  Status lastStatus = Status::Run;
  double pacingMs = 0;  // the last plan's pacing hint: stretch (>0) or shrink of the next frame interval
  bool planPending = false;  // advance() done, plan not run yet

  Peer(int idx, const std::string& cfgJson, uint64_t seed, int numActors) : index(idx), actors(numActors), game(numActors), rng(seed) {
    std::string err;
    engine = SyncEngine::create(cfgJson.data(), cfgJson.size(), err);
    if (!engine) throw std::runtime_error("config: " + err);
  }

  SyncEngine& e() { return *engine; }

  // The page's per-frame step: advance, send, run the plan, read the events.
  Status step(double now, const uint8_t* bots = nullptr) {
    const Status st = advance(now, bots);
    run();
    return st;
  }

  // The first half of step(): advance and send (the plan is run by run(); packets may arrive
  // in between, as they do while an async env replays).
  Status advance(double now, const uint8_t* bots = nullptr) {
    if (planPending) throw std::runtime_error("Peer::advance: the previous plan was not run");
    if (forcedAction >= 0) action = forcedAction;
    else if (rng.chance(changeProb)) action = rng.below(5);
    if (bots) std::memcpy(engine->botInput(), bots, static_cast<size_t>(engine->config().numBots));
    const Status st = engine->advance(now, static_cast<uint8_t>(action), 0);
    lastStatus = st;
    pacingMs = engine->planHeader()[plan::kPacingUs] / 1000.0;
    switch (st) {
      case Status::Run: ++runs; break;
      case Status::Stall: ++stalls; break;
      case Status::Wait: ++waits; break;
      case Status::Ended: ++ended; break;
      case Status::Starting: ++starting; break;
      case Status::Joining: ++joining; break;
      case Status::Count_: break;
    }
    lastSent.clear();
    take(engine->outbox(), true);
    if (keepPlan) copyPlan(st);
    planPending = true;
    return st;
  }

  // The second half: the plan through the driver, then the events.
  PlanStats run() {
    if (!planPending) throw std::runtime_error("Peer::run: no plan");
    planPending = false;
    Env env{*this};
    const PlanStats ps = runPlan(*engine, env);
    if (ps.rolledBack) ++rollbacks;
    if (ps.cut) ++cuts;
    replayedFrames += static_cast<uint64_t>(ps.replayed);
    if (keepPlan) plan.ran = ps;
    takeEvents();
    return ps;
  }

  RxResult receive(const Packet& p, double now) {
    RxResult r;
    if (p.kind == OutKind::Packet)
      r = engine->receive(p.bytes.data(), p.bytes.size(), p.from, p.path, now);
    else
      r = engine->receiveRelayJson(p.event, reinterpret_cast<const char*>(p.bytes.data()), p.bytes.size(), p.from, now);
    ++rx[r];
    take(engine->replies(), false);
    takeEvents();
    return r;
  }
  // Bytes from `from` as a binary packet on `via`.
  RxResult rxBytes(const std::vector<uint8_t>& b, int from, double now, Path via = Path::P2P) {
    Packet p;
    p.from = from;
    p.to = index;
    p.path = via;
    p.kind = OutKind::Packet;
    p.event = via == Path::Relay ? RelayEvent::Packet : RelayEvent::None;
    p.bytes = b;
    return receive(p, now);
  }

  void takeEvents() {
    drainEvents(*engine, [&](const nlohmann::json& j) {
      const std::string t = j.value("type", "");
      ++eventCount[t];
      if (t == "desync") ++desyncs;
      else if (t == "nondeterminism") ++nondeterminism;
      else if (t == "error") ++errors;
      else if (t == "episodeEnd") episodeEnds.push_back(j);
      if (events.size() < maxEventsKept && t != "hashBroadcast" && t != "verified") events.push_back(j);
      if (onEvent) onEvent(j);
    });
  }

  std::vector<nlohmann::json> ofType(const std::string& t) const { return test::ofType(events, t); }
  bool hasEpisodeEnd(uint32_t episode) const {
    for (const nlohmann::json& e : episodeEnds)
      if (e["episode"] == episode) return true;
    return false;
  }
  uint64_t count(const std::string& type) const {
    auto it = eventCount.find(type);
    return it == eventCount.end() ? 0 : it->second;
  }
  // A new episode of the game (the same end rules), as the page resets its env.
  void resetGame() { game.reset(); }

  // What the game executed for frames [from, to] (numActors bytes each), up to the first gap.
  std::vector<uint8_t> executedLog(Frame from, Frame to) const {
    std::vector<uint8_t> out;
    for (Frame f = from; f <= to; ++f) {
      auto it = executed.find(f);
      if (it == executed.end()) break;
      out.insert(out.end(), it->second.begin(), it->second.end());
    }
    return out;
  }

  // The env adapter the driver runs the plan against.
  struct Env {
    Peer& p;
    bool load(const uint8_t* d, size_t n) { return p.game.load(d, n); }
    std::string state() const { return p.game.state(); }
    StepOutcome step(const uint8_t* a, int n, const RequestView& r) {
      if (p.game.done()) ++p.stepsPastEnd;
      ++p.steps;
      StepOutcome o = p.game.step(a, n, r);
      if (r.frame == p.corruptFrame) p.game.h ^= 0xdeadbeefull;
      if (p.keepExecuted) p.executed[r.frame] = std::vector<uint8_t>(a, a + n);
      return o;
    }
  };

 private:
  void copyPlan(Status st) {
    const int32_t* H = engine->planHeader();
    plan.status = st;
    plan.frame = H[plan::kFrame];
    plan.rollbackTarget = H[plan::kRollbackTarget];
    plan.loadFrame = H[plan::kLoadFrame];
    plan.replayCount = H[plan::kReplayCount];
    plan.terminalFrame = H[plan::kTerminalFrame];
    plan.requests.clear();
    plan.ran = PlanStats{};
    for (size_t i = 0; i < engine->requestCount(); ++i) {
      const RequestView r = engine->request(i);
      PlanCopy::Req q{r.kind, r.flags, r.predictedMask, r.frame, r.episodeFrame, {}};
      if (r.kind == RequestKind::Advance) std::memcpy(q.actions.data(), r.actions, static_cast<size_t>(actors));
      plan.requests.push_back(q);
    }
  }

  void take(const Outbox& box, bool fromStep) {
    const int64_t confRel = engine->confirmedFrame() - engine->episodeStart();
    box.forEach([&](const OutRecord& r) {
      Packet p;
      p.from = index;
      p.to = r.to;
      p.path = r.path;
      p.kind = r.kind;
      p.event = r.event;
      p.bytes.assign(r.data, r.data + r.length);
      if (logHashes) logHash(p, confRel);
      if (fromStep) lastSent.push_back(p);
      sent.push_back(std::move(p));
    });
  }

  void logHash(const Packet& p, int64_t confRel) {
    if (p.type() == kStateHash) {
      Message m;
      if (decodes(p.bytes, m)) hashesSent.push_back({m.frame, m.digest, confRel, engine->episode(), false, -1});
    } else if (p.relayJson() && p.event == RelayEvent::StateSync) {
      StateSyncMsg s;
      const std::string t = p.text();
      if (parseStateSync(t.data(), t.size(), s) != RxResult::Ok) throw std::runtime_error("the engine sent a bad p2p_state_sync");
      int64_t total = 0;
      for (int actor = 0; actor < actors; ++actor)
        for (int a = 0; a < 256; ++a) total += s.counts.get(actor, a);
      hashesSent.push_back({s.frame, s.hash, confRel, engine->episode(), true, total});
    }
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
  bool evenPhases = false;  // peer i ticks at i/players of a frame (else a seeded random phase)
  double changeProb = 0.2;  // the peers' action policy
  bool logHashes = false;   // peers log the state hashes they send
  bool keepExecuted = false;  // peers record what their game executed per frame

  // Peers over `link`, recording what they execute.
  static SessionOptions over(int players, const std::string& extra, LinkProfile link, uint64_t seed) {
    SessionOptions o;
    o.players = players;
    o.seed = seed;
    o.link = link;
    o.extraConfig = extra;
    o.keepExecuted = true;
    return o;
  }

  // The scripted link of the engine tests: P2P 25 ms one way, no jitter, no loss; the relay
  // 45 ms one way, whatever the P2P latency becomes; pages ticking evenly spaced.
  static SessionOptions scripted(int players, const std::string& extra, uint64_t seed) {
    SessionOptions o;
    o.players = players;
    o.seed = seed;
    o.link = LinkProfile{25, 0, 0, 0, 0, 20, 45};
    o.extraConfig = extra;
    o.evenPhases = true;
    o.changeProb = 0.25;
    o.logHashes = true;
    return o;
  }
};

struct Session {
  struct EpisodeEnd {
    uint32_t episode;
    Frame frame;          // session frame of the last frame of the episode
    int64_t episodeFrame;
    bool truncated;
    double atMs;
  };

  SessionOptions opt;
  Network net;
  std::vector<std::unique_ptr<Peer>> peers;
  std::vector<double> nextAt, period, pausedUntil;
  bool pacing = true;  // each peer's frame loop applies the engine's pacing hint, as a page's does
  double now = 0;
  // Every peer's confirmed action log (numActors bytes per frame; the episodes one after the
  // other), collected after each of its steps and deliveries.
  std::vector<std::vector<uint8_t>> logs;
  std::vector<Frame> logged;  // the next frame to collect
  // episodeEnd events seen, per peer; with autoReset every one starts the next episode at once
  // (resetEpisode(resetInputDelay), a fresh game), as a page does.
  std::vector<std::vector<EpisodeEnd>> ends;
  bool autoReset = false;
  int resetInputDelay = -1;
  std::vector<std::string> resetErrors;
  std::function<void(size_t)> afterStep;          // after each step of a peer
  std::function<void(const Packet&)> onDeliver;  // before each delivery (what a peer receives)

  explicit Session(SessionOptions o) : opt(o), net(o.players, o.link, o.seed ^ 0xabcdef) {
    Rng r(o.seed);
    for (int i = 0; i < o.players; ++i) {
      const std::string c = cfg(o.players, i, ",\"numBots\":" + std::to_string(o.bots) + o.extraConfig);
      peers.push_back(std::make_unique<Peer>(i, c, o.seed * 977 + static_cast<uint64_t>(i), o.players + o.bots));
      peers.back()->changeProb = o.changeProb;
      peers.back()->logHashes = o.logHashes;
      peers.back()->keepExecuted = o.keepExecuted;
      const double frameMs = 1000.0 / o.fps;
      nextAt.push_back(o.evenPhases ? static_cast<double>(i) * frameMs / o.players : r.uniform() * frameMs);
      period.push_back(frameMs);
      pausedUntil.push_back(0);
    }
    logs.resize(static_cast<size_t>(o.players));
    logged.assign(static_cast<size_t>(o.players), 0);
    ends.resize(static_cast<size_t>(o.players));
  }

  Peer& operator[](int i) { return *peers[static_cast<size_t>(i)]; }
  int size() const { return static_cast<int>(peers.size()); }
  // Peer i's page reloaded: a fresh engine (config rejoin) and a fresh game; what the old one had
  // is gone (its collected action log stays in logs[i]).
  void reloadPeer(size_t i, const std::string& extra = "") {
    const std::string c = cfg(opt.players, static_cast<int>(i), ",\"numBots\":" + std::to_string(opt.bots) + opt.extraConfig + extra + ",\"rejoin\":true");
    auto p = std::make_unique<Peer>(static_cast<int>(i), c, opt.seed * 977 + 1000 + i, opt.players + opt.bots);
    p->changeProb = opt.changeProb;
    p->logHashes = opt.logHashes;
    p->keepExecuted = opt.keepExecuted;
    peers[i] = std::move(p);
  }
  void pause(int i, bool on = true) { pausedUntil[static_cast<size_t>(i)] = on ? 1e300 : 0; }

  // Puts what peer i produced on the wire.
  void flush(size_t i) {
    Peer& p = *peers[i];
    for (const Packet& k : p.sent) net.send(k.from, k.to, k.path, k.kind, k.event, k.bytes.data(), k.bytes.size(), now);
    p.sent.clear();
  }

  void stepPeer(size_t i) {
    Peer& p = *peers[i];
    std::vector<uint8_t> bots(static_cast<size_t>(opt.bots));
    for (int b = 0; b < opt.bots; ++b) bots[static_cast<size_t>(b)] = static_cast<uint8_t>((p.engine->frame() + b) % 5);
    p.step(now, opt.bots ? bots.data() : nullptr);
    flush(i);
    after(i);
    if (afterStep) afterStep(i);
  }

  void deliver(const Packet& d) {
    if (onDeliver) onDeliver(d);
    const size_t i = static_cast<size_t>(d.to);
    peers[i]->receive(d, now);
    flush(i);
    after(i);
  }

  // Delivers everything due up to `t`.
  void deliverUntil(double t) {
    while (net.due(t)) {
      Packet d;
      const double at = net.nextAt();
      const bool arrives = net.pop(d);
      now = std::max(now, at);
      if (arrives) deliver(d);
    }
  }
  // Delivers everything in flight (and what that produces), without stepping any peer.
  void drain() {
    while (!net.empty()) deliverUntil(net.nextAt());
  }

  // Advances virtual time to the next frame of some peer: deliveries due before it, then the
  // steps of every peer due.
  void tick() {
    const double next = *std::min_element(nextAt.begin(), nextAt.end());
    for (auto& p : peers) p->lastSent.clear();  // lastSent: what a peer's step sent in this tick
    deliverUntil(next);
    now = std::max(now, next);
    for (size_t i = 0; i < peers.size(); ++i) {
      if (nextAt[i] > now) continue;
      nextAt[i] += period[i];
      if (pausedUntil[i] > now) continue;
      stepPeer(i);
      if (pacing) nextAt[i] += peers[i]->pacingMs;
    }
  }

  // Collects newly confirmed frames; handles an episode end.
  void after(size_t i) {
    collect(i);
    Peer& p = *peers[i];
    SyncEngine& e = *p.engine;
    if (p.episodeEnds.size() <= ends[i].size()) return;
    const nlohmann::json& j = p.episodeEnds[ends[i].size()];
    ends[i].push_back(EpisodeEnd{j["episode"].get<uint32_t>(), j["frame"].get<Frame>(), j["episodeFrame"].get<int64_t>(),
                                 j["truncated"].get<bool>(), now});
    if (!autoReset) return;
    const std::string err = e.resetEpisode(resetInputDelay);
    if (!err.empty()) {
      resetErrors.push_back("peer " + std::to_string(i) + ": " + err);
      return;
    }
    p.resetGame();
    logged[i] = e.episodeStart();
  }

  void collect(size_t i) {
    SyncEngine& e = *peers[i]->engine;
    const Frame c = e.confirmedFrame();
    if (logged[i] < e.episodeStart()) logged[i] = e.episodeStart();
    if (c < logged[i]) return;
    std::vector<uint8_t> out;
    const size_t n = e.actionLog(logged[i], c, out, true);
    logs[i].insert(logs[i].end(), out.begin(), out.end());
    logged[i] += static_cast<Frame>(n);
  }

  // Ticks until every peer's next frame is at least `frames`. Throws when that takes more than
  // 50 times the game time it needs plus a minute (a deadlock: the test fails, it does not hang).
  void runFrames(Frame frames) {
    const double limit = now + 60000.0 + 50.0 * static_cast<double>(std::max<Frame>(0, frames - minFrame())) * 1000.0 / opt.fps;
    while (minFrame() < frames) {
      if (now > limit) throw std::runtime_error("Session::runFrames: no progress to frame " + std::to_string(frames));
      tick();
    }
  }
  // Ticks until pred() holds (checked before every tick). False when maxTicks ran out.
  bool runUntil(const std::function<bool()>& pred, int64_t maxTicks) {
    for (int64_t k = 0; k < maxTicks; ++k) {
      if (pred()) return true;
      tick();
    }
    return pred();
  }
  void runTicks(int n) {
    for (int k = 0; k < n; ++k) tick();
  }

  Frame minFrame() const {
    Frame m = INT64_MAX;
    for (const auto& p : peers) m = std::min(m, p->engine->frame());
    return m;
  }
  Frame minConfirmed() const {
    Frame m = INT64_MAX;
    for (const auto& p : peers) m = std::min(m, p->engine->confirmedFrame());
    return m;
  }
  uint64_t events(const std::string& type) const {
    uint64_t c = 0;
    for (const auto& p : peers) c += p->count(type);
    return c;
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

// ---------------------------------------------------------------- one engine fed by hand
// Player 0 of `players`; the others are crafted packets: every frame they send a KEEPALIVE (they
// are alive), and their READY for episode 0 answers ours.
struct Solo {
  Peer a;
  double now = 0;
  std::vector<std::pair<int, std::vector<uint8_t>>> pendingReady;

  explicit Solo(const std::string& extra = ",\"timeSync\":false,\"catchUp\":false", int players = 2) : a(0, cfg(players, 0, extra), 1, players) {
    a.changeProb = 0;
    a.keepExecuted = true;
    const std::string s = ToyGame(players).state();
    for (int p = 1; p < players; ++p) {
      Message m;
      m.type = MsgType::EpisodeReady;
      m.episode = 0;
      m.digest = a.engine->hashState(reinterpret_cast<const uint8_t*>(s.data()), s.size());
      pendingReady.push_back({p, enc(m)});
    }
    // The episode's start barrier: the first advance plans only the frame-0 Save (our READY
    // goes out), then the peers' READYs arrive; frame 0 runs at the next step.
    if (step() != Status::Starting) throw std::runtime_error("Solo: no start barrier");
  }
  SyncEngine& e() { return *a.engine; }

  // One frame: keepalives, advance, and (unless `run` is false) the plan.
  Status step(bool run = true) {
    now += kFrameMs;
    for (int p = 1; p < a.actors; ++p) {
      Message k;
      k.type = MsgType::Keepalive;
      a.rxBytes(enc(k), p, now);
    }
    const Status st = a.advance(now);
    if (run) a.run();
    if (!pendingReady.empty()) {  // our READY is out (the first snapshot was saved): answer
      for (auto& [p, b] : pendingReady)
        if (a.rxBytes(b, p, now) != RxResult::Ok) throw std::runtime_error("Solo: READY refused");
      pendingReady.clear();
    }
    a.sent.clear();
    return st;
  }
  // Steps until the engine's next frame is `frame` (every step must RUN).
  void stepTo(Frame frame) {
    while (a.engine->frame() < frame)
      if (step() != Status::Run) throw std::runtime_error("Solo::stepTo: not RUN");
  }
  // INPUT from `player` carrying `entries` (ascending frames); header = newest entry unless given.
  static std::vector<uint8_t> inputPacket(int player, const std::vector<std::pair<uint32_t, uint8_t>>& entries, int64_t header = -1) {
    Message m;
    m.type = MsgType::Input;
    m.playerIndex = static_cast<uint16_t>(player);
    m.count = static_cast<uint16_t>(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) m.inputs[i] = FrameAction{entries[i].first, entries[i].second};
    m.frame = header >= 0 ? static_cast<uint32_t>(header) : entries.back().first;
    return enc(m);
  }
  RxResult in(const std::vector<std::pair<uint32_t, uint8_t>>& entries, int player = 1) {
    return a.rxBytes(inputPacket(player, entries), player, now);
  }
  // Player `player`'s inputs for [from, to], all `action`.
  RxResult inRange(uint32_t from, uint32_t to, uint8_t action, int player = 1) {
    RxResult agg = RxResult::Duplicate;
    for (uint32_t f = from; f <= to; f += 15) {
      std::vector<std::pair<uint32_t, uint8_t>> v;
      for (uint32_t g = f; g <= std::min(to, f + 14); ++g) v.emplace_back(g, action);
      const RxResult r = in(v, player);
      if (r == RxResult::Ok) agg = r;
    }
    return agg;
  }
};

// ---------------------------------------------------------------- checks over engines
// State hashes of snapshot frames 0..upTo (the state before stepping f) of the first episode,
// from the engine's confirmed action log.
inline std::map<uint32_t, uint64_t> truthHashes(const SyncEngine& e, uint32_t upTo, int actors) {
  std::vector<uint8_t> log;
  if (e.actionLog(0, static_cast<Frame>(upTo) - 1, log, true) != upTo) throw std::runtime_error("truthHashes: frames not confirmed");
  std::map<uint32_t, uint64_t> t;
  const std::vector<std::string> states = ToyGame::statesOf(log, actors);
  for (uint32_t f = 0; f <= upTo; ++f) t[f] = e.hashState(reinterpret_cast<const uint8_t*>(states[f].data()), states[f].size());
  return t;
}

// The confirmed action logs of [from, to] exist on both engines and are identical.
inline bool sameLogs(const SyncEngine& a, const SyncEngine& b, Frame from, Frame to) {
  std::vector<uint8_t> la, lb;
  const size_t na = a.actionLog(from, to, la, true);
  const size_t nb = b.actionLog(from, to, lb, true);
  return na == nb && na == static_cast<size_t>(to - from + 1) && la == lb;
}

}  // namespace p2psync::test
