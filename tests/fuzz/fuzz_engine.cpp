// libFuzzer target: a live session of two engines (2 players, or 3 players where player 2 is a
// phantom driven by the fuzzer) over the harness network, where the fuzzer's bytes choose a
// sequence of operations:
//   honest frames (both peers step, the lossy P2P path and the ordered relay carry their traffic),
//   one advance of one engine after a time step, raw packets and structured valid-looking packets
//   (INPUT, INPUT_RESPONSE, INPUT_REQUEST, PING, PONG, STATE_HASH, EPISODE_END/READY, FOCUS_STATE,
//   KEEPALIVE) to either engine from any peer index on either path, floods, relay JSON text
//   (pyodide_player_action / p2p_state_sync, structured or raw), direct relay inputs, channel
//   close/open/fail, P2P cut/restore, a stalled peer, the phantom player's inputs (consistent or
//   equivocating), the env ending its episode a few frames ahead, and episode reset (with a fresh
//   env, as a page does). Every frame is driven through the frame driver (driver.hpp runPlan).
// After every operation, for every engine, abort() on a violated invariant:
//   * memoryBytes() never changes (memory is fixed at construction), but for the state transfers
//     a peer's STATE_REQUEST makes it send (transferBytes(): each bounded by maxTransferBytes);
//   * the confirmed frame never decreases within an episode;
//   * every newly confirmed frame is in the action log and each player's input for it is known
//     and equals the executed action;
//   * the executed actions / known inputs of a confirmed frame never change later (shadow copy);
//   * a rollback plan never names a missing snapshot (the driver throws -> abort);
//   * a plan never has an Advance past the terminal frame the engine knows when it plans, nor
//     past maxEpisodeFrames, and no env is ever stepped past the end of its episode;
//   * every step report is accepted in plan order and no plan is left unreported;
//   * an honest engine's input, as confirmed by the other engine, equals the input that engine
//     really made, unless the fuzzer itself injected something attributed to that player (a
//     packet with that fromPeer, or a relay input naming it) - i.e. an attacker that is not a
//     player cannot change what one honest player sees of another;
//   * a new episode starts after every frame the previous one confirmed.
//
//   CXX=clang++-14 cmake -S . -B /tmp/b-fuzz -DP2PSYNC_FUZZ=ON -DP2PSYNC_TESTS=OFF && cmake --build /tmp/b-fuzz --target fuzz_engine
//   mkdir -p /tmp/c && cp tests/fuzz/corpus/engine/* /tmp/c/ && /tmp/b-fuzz/fuzz_engine /tmp/c
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

namespace {

constexpr int kEngines = 2;
constexpr int kMaxOps = 400;
constexpr int kMaxSteps = 4000;  // engine frames per input: keeps every run well inside -timeout

[[noreturn]] void violation(const char* what, int engine, long long a, long long b) {
  std::fprintf(stderr, "INVARIANT VIOLATION: %s (engine %d: %lld / %lld)\n", what, engine, a, b);
  std::abort();
}

// Rejections that happen before anything is stored: such a packet cannot have changed an input.
bool rejectedUpFront(RxResult r) {
  switch (r) {
    case RxResult::Empty: case RxResult::UnknownType: case RxResult::Truncated: case RxResult::TrailingBytes:
    case RxResult::BadCount: case RxResult::BadFlags: case RxResult::NonMonotonicFrames:
    case RxResult::FrameAfterHeader: case RxResult::BadTimestamp: case RxResult::BadRange: case RxResult::BadValue:
    case RxResult::Oversized: case RxResult::SpoofedPlayer: case RxResult::UnknownPlayer: case RxResult::Flood:
    case RxResult::BadRelayJson:
      return true;
    default:
      return false;
  }
}

void put16(std::vector<uint8_t>& b, uint16_t v) { b.push_back(uint8_t(v >> 8)); b.push_back(uint8_t(v)); }
void put32(std::vector<uint8_t>& b, uint32_t v) { for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s)); }
void put64(std::vector<uint8_t>& b, uint64_t v) { put32(b, uint32_t(v >> 32)); put32(b, uint32_t(v)); }
void putF64(std::vector<uint8_t>& b, double d) { uint64_t u; std::memcpy(&u, &d, 8); put64(b, u); }

struct Tracker {
  size_t memory = 0;
  uint32_t episode = 0;
  Frame episodeStart = 0;
  Frame confirmed = kNoFrame;
  std::map<Frame, std::array<uint8_t, kMaxActors>> shadow;  // confirmed frame -> executed actions
  std::map<Frame, uint8_t> local;                            // this engine's own inputs
  Frame localScan = 0;
  bool tainted[kMaxPlayers] = {};  // the fuzzer injected something attributed to that player
};

struct World {
  FuzzedDataProvider& d;
  int players = 2;
  int bots = 0;
  int bufferFrames = 128;
  double frameMs = 1000.0 / 30;
  std::vector<std::string> ids;  // relay player_id JSON per player
  std::unique_ptr<Network> net;
  std::vector<std::unique_ptr<Peer>> peers;
  std::vector<double> nextAt, pausedUntil;
  Tracker tr[kEngines];
  double now = 0;
  int steps = 0;
  std::map<Frame, uint8_t> phantomSent;
  int maxEpisodeFrames = 0;

  explicit World(FuzzedDataProvider& dp) : d(dp) {}

  bool setup() {
    players = d.ConsumeIntegralInRange<int>(0, 3) == 3 ? 3 : 2;
    bots = d.ConsumeIntegralInRange<int>(0, 2);
    const int delay = d.ConsumeIntegralInRange<int>(0, 4);
    const int redundancy = d.ConsumeIntegralInRange<int>(1, 15);
    static const int kBuf[] = {64, 128, 256};
    bufferFrames = kBuf[d.ConsumeIntegralInRange<int>(0, 2)];
    const int snapInt = d.ConsumeIntegralInRange<int>(1, 8);
    const int hashInt = d.ConsumeIntegralInRange<int>(0, 10);
    const int hashHist = d.ConsumeIntegralInRange<int>(8, 64);
    // Derived from a choice already made, so that the corpus seeds keep their meaning: 1 run in 8
    // truncates its episodes after 32..256 frames.
    maxEpisodeFrames = hashHist % 8 == 0 ? hashHist * 4 : 0;
    const int budget = d.ConsumeIntegralInRange<int>(4, 64);
    const int maxPred = d.ConsumeIntegralInRange<int>(0, 40);
    const bool dual = d.ConsumeBool();
    const bool timeSync = d.ConsumeBool();
    const bool defaultPred = d.ConsumeBool();
    const bool recovery = d.ConsumeBool();
    const bool stringIds = d.ConsumeBool();
    const int syncTest = d.ConsumeIntegralInRange<int>(0, 7) == 7 ? d.ConsumeIntegralInRange<int>(1, 4) : 0;
    const double ping = d.ConsumeIntegralInRange<int>(50, 1000);

    json base = {{"numPlayers", players}, {"numBots", bots}, {"inputDelay", delay}, {"redundancy", redundancy},
                 {"bufferFrames", bufferFrames}, {"snapshotInterval", snapInt}, {"hashInterval", hashInt},
                 {"hashHistory", hashHist}, {"maxPacketsPerPeerPerFrame", budget},
                 {"maxPredictionFrames", maxPred}, {"sendPolicy", dual ? "dual" : "p2p-first"},
                 {"timeSync", timeSync}, {"fallbackRecovery", recovery}, {"pingIntervalMs", ping},
                 {"predictionMethod", defaultPred ? "default_action" : "previous_submitted_action"},
                 {"snapshotBytes", 16384}, {"snapshotSlots", 32}, {"maxEvents", 64}, {"gameId", "fz"}};
    if (hashInt == 0) base.erase("hashInterval");
    if (syncTest) base["syncTest"] = {{"checkDistance", syncTest}};
    if (maxEpisodeFrames) base["maxEpisodeFrames"] = maxEpisodeFrames;
    json idList = json::array();
    for (int p = 0; p < players; ++p) {
      json id = stringIds ? json("player-" + std::to_string(p)) : json(p);
      idList.push_back(id);
      ids.push_back(id.dump());
    }
    base["playerIds"] = idList;

    LinkProfile link;
    link.oneWayMs = d.ConsumeIntegralInRange<int>(1, 250);
    link.jitterMs = d.ConsumeIntegralInRange<int>(0, 100);
    link.loss = d.ConsumeIntegralInRange<int>(0, 50) / 100.0;
    link.reorder = d.ConsumeIntegralInRange<int>(0, 30) / 100.0;
    link.duplicate = d.ConsumeIntegralInRange<int>(0, 20) / 100.0;
    link.relayExtraMs = d.ConsumeIntegralInRange<int>(0, 100);
    net = std::make_unique<Network>(kEngines, link, d.ConsumeIntegral<uint16_t>());

    for (int i = 0; i < kEngines; ++i) {
      json c = base;
      c["localPlayerIndex"] = i;
      std::string text = c.dump();
      // Every config built here is valid: Peer throws (-> abort) if create() rejects it.
      peers.push_back(std::make_unique<Peer>(i, text, 1000u + static_cast<uint64_t>(i), players + bots));
      peers.back()->maxEventsKept = 0;  // counted, not kept
      nextAt.push_back(i * 7.0);
      pausedUntil.push_back(0);
      tr[i].memory = peers[i]->engine->memoryBytes() - peers[i]->engine->transferBytes();
      tr[i].confirmed = peers[i]->engine->confirmedFrame();
      tr[i].episodeStart = peers[i]->engine->episodeStart();
      tr[i].localScan = tr[i].episodeStart;
    }
    return true;
  }

  SyncEngine& eng(int i) { return *peers[static_cast<size_t>(i)]->engine; }

  // ------------------------------------------------------------------ invariants
  void scanLocal(int i) {
    Tracker& t = tr[i];
    uint8_t a;
    while (eng(i).inputKnown(i, t.localScan, a)) {
      auto it = t.local.find(t.localScan);
      if (it != t.local.end() && it->second != a) violation("own input changed", i, t.localScan, a);
      t.local[t.localScan] = a;
      ++t.localScan;
    }
  }

  void checkFrame(int i, Frame f, const std::array<uint8_t, kMaxActors>& want) {
    SyncEngine& e = eng(i);
    const int n = e.numActors();
    std::vector<uint8_t> log;
    if (e.actionLog(f, f, log, true) == 1)
      for (int a = 0; a < n; ++a)
        if (log[static_cast<size_t>(a)] != want[static_cast<size_t>(a)]) violation("confirmed action changed", i, f, a);
    for (int p = 0; p < players; ++p) {
      uint8_t a;
      if (e.inputKnown(p, f, a) && a != want[static_cast<size_t>(p)]) violation("confirmed input changed", i, f, p);
    }
  }

  void check(int i, bool full = false) {
    SyncEngine& e = eng(i);
    Tracker& t = tr[i];
    if (e.memoryBytes() - e.transferBytes() != t.memory)
      violation("memoryBytes changed", i, static_cast<long long>(e.memoryBytes() - e.transferBytes()), static_cast<long long>(t.memory));
    if (e.transferBytes() > 3 * (e.config().maxTransferBytes + 64 * 1024))
      violation("transfer memory unbounded", i, static_cast<long long>(e.transferBytes()), static_cast<long long>(e.config().maxTransferBytes));
    if (e.episode() != t.episode) {
      if (e.episodeStart() <= t.confirmed)
        violation("new episode overlaps confirmed frames of the previous one", i, e.episodeStart(), t.confirmed);
      t.episode = e.episode();
      t.episodeStart = e.episodeStart();
      t.shadow.clear();
      t.confirmed = e.confirmedFrame();
      t.local.erase(t.local.lower_bound(t.episodeStart), t.local.end());
      t.localScan = t.episodeStart;
      // Frames the phantom sent for the new episode's frames are forgotten by the engines.
      phantomSent.erase(phantomSent.lower_bound(t.episodeStart), phantomSent.end());
    }
    scanLocal(i);
    const Frame c = e.confirmedFrame();
    if (c < t.confirmed) violation("confirmed frame decreased", i, c, t.confirmed);
    if (peers[static_cast<size_t>(i)]->stepsPastEnd) violation("env stepped past the end of its episode", i, e.frame(), e.terminalFrame());
    const int n = e.numActors();
    for (Frame f = std::max(t.confirmed + 1, t.episodeStart); f <= c; ++f) {
      std::vector<uint8_t> log;
      if (e.actionLog(f, f, log, true) != 1) violation("confirmed frame missing from the action log", i, f, c);
      std::array<uint8_t, kMaxActors> acts{};
      std::memcpy(acts.data(), log.data(), static_cast<size_t>(n));
      for (int p = 0; p < players; ++p) {
        uint8_t a;
        if (!e.inputKnown(p, f, a)) violation("confirmed input unknown", i, f, p);
        if (a != acts[static_cast<size_t>(p)]) violation("executed action differs from the confirmed input", i, f, p);
      }
      t.shadow[f] = acts;
      // An honest peer's input, as this engine confirmed it, is what that peer really made.
      for (int x = 0; x < kEngines; ++x) {
        if (x == i || t.tainted[x] || tr[x].episode != t.episode) continue;
        auto it = tr[x].local.find(f);
        if (it == tr[x].local.end()) violation("confirmed an input the honest peer never made", i, f, x);
        if (it->second != acts[static_cast<size_t>(x)]) violation("honest peer's input confirmed with another value", i, f, x);
      }
    }
    t.confirmed = c;
    // Re-verify the newest confirmed frames (all of them at the end of the run).
    auto it = full ? t.shadow.begin() : t.shadow.lower_bound(c - 48);
    for (; it != t.shadow.end(); ++it) checkFrame(i, it->first, it->second);
    // Bound the shadow: frames that fell out of the ring cannot be read any more.
    if (c > 2 * bufferFrames) {
      const Frame lo = c - 2 * bufferFrames;
      t.shadow.erase(t.shadow.begin(), t.shadow.lower_bound(lo));
      t.local.erase(t.local.begin(), t.local.lower_bound(lo - 64));
    }
    if (full) {
      const nlohmann::json session = e.exportSessionMetrics()["session"];
      if (session["badStepReports"] != 0) violation("a step report out of plan order", i, session["badStepReports"].get<long long>(), 0);
      if (session["unreportedSteps"] != 0) violation("a plan left unreported", i, session["unreportedSteps"].get<long long>(), 0);
    }
  }

  void checkAll(bool full = false) {
    for (int i = 0; i < kEngines; ++i) check(i, full);
  }

  // ------------------------------------------------------------------ driving
  void stepPeer(int i, int action = -1) {
    Peer& p = *peers[static_cast<size_t>(i)];
    if (action >= 0) {
      p.changeProb = 0;
      p.action = action;
    } else {
      p.changeProb = 0.2;
    }
    std::vector<uint8_t> botActs(static_cast<size_t>(bots));
    for (int b = 0; b < bots; ++b) botActs[static_cast<size_t>(b)] = static_cast<uint8_t>((p.game.frame + static_cast<uint32_t>(b)) % 5);
    p.step(now, bots ? botActs.data() : nullptr);
    flush(i);
    ++steps;
    // The plan: no Advance past the terminal frame the engine knew when it planned, nor past
    // the truncation limit.
    SyncEngine& e = eng(i);
    for (const PlanCopy::Req& r : p.plan.requests) {
      if (r.kind != RequestKind::Advance) continue;
      if (p.plan.terminalFrame != kNoFrame && r.frame > p.plan.terminalFrame) violation("planned past the terminal frame", i, r.frame, p.plan.terminalFrame);
      if (maxEpisodeFrames && r.frame >= e.episodeStart() + maxEpisodeFrames) violation("planned past maxEpisodeFrames", i, r.frame, e.episodeStart());
    }
    scanLocal(i);
  }

  void flush(int i) {
    Peer& p = *peers[static_cast<size_t>(i)];
    for (const Packet& k : p.sent) net->send(k.from, k.to, k.path, k.kind, k.event, k.bytes.data(), k.bytes.size(), now);
    p.sent.clear();
  }

  void deliverDue(double until) {
    while (net->due(until)) {
      Packet dl;
      const double at = net->nextAt();
      const bool arrives = net->pop(dl);
      now = std::max(now, at);
      if (!arrives) continue;
      peers[static_cast<size_t>(dl.to)]->receive(dl, now);
      flush(dl.to);
    }
    now = std::max(now, until);
  }

  // Honest play: `frames` frame periods of both peers (a paused peer skips its frames).
  void tick(int frames) {
    for (int k = 0; k < frames * kEngines; ++k) {
      int i = nextAt[0] <= nextAt[1] ? 0 : 1;
      deliverDue(nextAt[static_cast<size_t>(i)]);
      nextAt[static_cast<size_t>(i)] += frameMs;
      if (pausedUntil[static_cast<size_t>(i)] > now) continue;
      stepPeer(i);
    }
  }

  void taint(int engine, int player) {
    if (player >= 0 && player < kMaxPlayers) tr[engine].tainted[player] = true;
  }

  void inject(int i, const std::vector<uint8_t>& bytes, int from, Path via) {
    const RxResult r = peers[static_cast<size_t>(i)]->rxBytes(bytes, from, now, via);
    if (!rejectedUpFront(r)) taint(i, from);
    flush(i);
  }

  void relayJson(int i, RelayEvent ev, const std::string& text, int from) {
    Packet p;
    p.from = from;
    p.to = i;
    p.path = Path::Relay;
    p.kind = OutKind::RelayJson;
    p.event = ev;
    p.bytes.assign(text.begin(), text.end());
    const RxResult r = peers[static_cast<size_t>(i)]->receive(p, now);
    if (ev == RelayEvent::PlayerAction && !rejectedUpFront(r)) {
      PlayerActionMsg m;
      if (parsePlayerAction(text.data(), text.size(), m) == RxResult::Ok) {
        for (int p = 0; p < players; ++p)
          if (eng(i).config().playerIds[static_cast<size_t>(p)] == m.playerId) taint(i, p);
      } else {
        for (int p = 0; p < players; ++p) taint(i, p);  // cannot tell: assume the worst
      }
    }
    flush(i);
  }

  int pickPeer() {
    switch (d.ConsumeIntegralInRange<int>(0, 9)) {
      case 0: return -1;
      case 1: return 3;
      case 2: return d.ConsumeIntegralInRange<int>(4, 300);
      case 3: case 4: return 2;
      case 5: return 0;
      default: return 1;
    }
  }

  // A wire frame (u32) near the interesting ones (wrapping like the wire does).
  uint32_t pickFrame(int i) {
    SyncEngine& e = eng(i);
    switch (d.ConsumeIntegralInRange<int>(0, 9)) {
      case 0: return d.ConsumeIntegral<uint32_t>();
      case 1: return std::numeric_limits<uint32_t>::max() - d.ConsumeIntegralInRange<uint32_t>(0, 2);
      case 2: return wireFrame(e.confirmedFrame() + d.ConsumeIntegralInRange<int>(-8, 8));
      case 3: return wireFrame(e.episodeStart() + d.ConsumeIntegralInRange<int>(0, 4) - 1);
      case 4: return wireFrame(e.frame() + bufferFrames + d.ConsumeIntegralInRange<int>(0, 3) - 2);
      case 5: return wireFrame(e.frame() - bufferFrames - d.ConsumeIntegralInRange<int>(0, 3));
      default: return wireFrame(e.frame() + d.ConsumeIntegralInRange<int>(-24, 24));
    }
  }

  double pickTimestamp(int i) {
    switch (d.ConsumeIntegralInRange<int>(0, 7)) {
      case 0: return std::numeric_limits<double>::quiet_NaN();
      case 1: return std::numeric_limits<double>::infinity();
      case 2: return -std::numeric_limits<double>::infinity();
      case 3: return -d.ConsumeIntegralInRange<int>(1, 1000);
      case 4: { uint64_t u = d.ConsumeIntegral<uint64_t>(); double x; std::memcpy(&x, &u, 8); return x; }
      case 5: return eng(i).health().lastPingMs();
      default: return std::floor(now) - d.ConsumeIntegralInRange<int>(0, 2000);
    }
  }

  std::vector<uint8_t> buildInput(int i, bool response) {
    std::vector<uint8_t> b;
    const int from = pickPeer();
    const uint16_t pi = d.ConsumeBool() ? static_cast<uint16_t>(from < 0 ? 0 : from) : d.ConsumeIntegral<uint16_t>();
    const uint32_t header = pickFrame(i);
    int n = d.ConsumeIntegralInRange<int>(0, response ? 300 : 16);
    if (d.ConsumeIntegralInRange<int>(0, 15) == 0) n = 255;
    const bool ascending = d.ConsumeIntegralInRange<int>(0, 7) != 0;
    b.push_back(response ? 0x13 : 0x01);
    put16(b, pi);
    if (response) {
      put16(b, static_cast<uint16_t>(n));
    } else {
      put32(b, header);
      b.push_back(static_cast<uint8_t>(n));
      b.push_back(d.ConsumeIntegralInRange<int>(0, 15) == 0 ? d.ConsumeIntegral<uint8_t>() : 0);
    }
    const uint32_t first = header - static_cast<uint32_t>(n > 0 ? n - 1 : 0);
    const int action = d.ConsumeIntegralInRange<int>(0, 5);
    for (int k = 0; k < n && k < 300; ++k) {
      put32(b, ascending ? first + static_cast<uint32_t>(k) : d.ConsumeIntegral<uint32_t>());
      b.push_back(static_cast<uint8_t>(d.ConsumeBool() ? action : d.ConsumeIntegralInRange<int>(0, 5)));
    }
    const int tweak = d.ConsumeIntegralInRange<int>(0, 15);
    if (tweak == 0 && !b.empty()) b.pop_back();
    if (tweak == 1) b.push_back(0);
    pendingFrom_ = from;
    return b;
  }
  int pendingFrom_ = 1;

  std::vector<uint8_t> buildFixed(int i) {
    std::vector<uint8_t> b;
    switch (d.ConsumeIntegralInRange<int>(0, 8)) {
      case 0: b.push_back(0x02); putF64(b, pickTimestamp(i)); break;                    // PING
      case 1: case 2: b.push_back(0x03); putF64(b, pickTimestamp(i)); break;            // PONG
      case 3: b.push_back(0x04); break;                                                 // KEEPALIVE
      case 4: b.push_back(0x05); put32(b, wireFrame(pickFrame(i) - eng(i).episodeStart())); put32(b, eng(i).episode() + d.ConsumeIntegralInRange<uint32_t>(0, 2) - 1); break;
      case 5: b.push_back(0x06); put32(b, eng(i).episode() + d.ConsumeIntegralInRange<uint32_t>(0, 2) - 1); put64(b, d.ConsumeIntegral<uint64_t>()); break;
      case 6: {                                                                          // STATE_HASH
        b.push_back(0x07);
        uint32_t f = pickFrame(i);
        uint64_t h = d.ConsumeIntegral<uint64_t>();
        if (d.ConsumeBool()) {
          if (const SnapshotStore::Entry* e = eng(i).snapshot(f)) h = e->hash;
        }
        put32(b, f - eng(i).episodeStart());
        put64(b, h);
        break;
      }
      case 7: {                                                                          // INPUT_REQUEST
        b.push_back(0x12);
        uint32_t s = pickFrame(i);
        uint32_t span = d.ConsumeBool() ? d.ConsumeIntegralInRange<uint32_t>(0, 300) : d.ConsumeIntegral<uint32_t>();
        put32(b, s);
        put32(b, s + span);
        break;
      }
      default: b.push_back(0x14); b.push_back(d.ConsumeIntegralInRange<uint8_t>(0, 2)); put32(b, pickFrame(i)); break;
    }
    const int tweak = d.ConsumeIntegralInRange<int>(0, 15);
    if (tweak == 0) b.pop_back();
    if (tweak == 1) b.push_back(d.ConsumeIntegral<uint8_t>());
    return b;
  }

  std::string buildPlayerAction(int i) {
    json j = json::object();
    const int who = d.ConsumeIntegralInRange<int>(0, players);
    j["player_id"] = who < players ? json::parse(ids[static_cast<size_t>(who)]) : json(d.ConsumeIntegral<int16_t>());
    j["action"] = d.ConsumeIntegralInRange<int>(0, 5);
    j["frame_number"] = pickFrame(i);
    j["timestamp"] = d.ConsumeBool() ? now : pickTimestamp(i);
    if (d.ConsumeBool()) j["from"] = d.ConsumeIntegralInRange<int>(0, 4);
    std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
    if (d.ConsumeIntegralInRange<int>(0, 7) == 0) s = s.substr(0, d.ConsumeIntegralInRange<size_t>(0, s.size()));
    return s;
  }

  std::string buildStateSync(int i) {
    json j = json::object();
    j["game_id"] = d.ConsumeIntegralInRange<int>(0, 7) ? "fz" : "other";
    const int who = d.ConsumeIntegralInRange<int>(0, players);
    j["sender_id"] = who < players ? json::parse(ids[static_cast<size_t>(who)]) : json(d.ConsumeIntegral<int16_t>());
    uint32_t f = pickFrame(i);
    j["frame_number"] = wireFrame(f - eng(i).episodeStart());
    uint64_t h = d.ConsumeIntegral<uint64_t>();
    if (d.ConsumeBool())
      if (const SnapshotStore::Entry* e = eng(i).snapshot(f)) h = e->hash;
    char hex[17];
    digestToHex(h, hex);
    j["state_hash"] = std::string(hex, 16);
    json counts = json::object();
    for (int k = d.ConsumeIntegralInRange<int>(0, 4); k > 0; --k)
      counts[std::to_string(d.ConsumeIntegralInRange<int>(0, 12))][std::to_string(d.ConsumeIntegralInRange<int>(0, 6))] =
          d.ConsumeIntegral<uint32_t>();
    j["action_counts"] = counts;
    if (d.ConsumeBool()) j["from"] = d.ConsumeIntegralInRange<int>(0, 4);
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  // The phantom player 2 (3-player sessions): sends its inputs up to each engine's frame.
  void phantom(bool equivocate) {
    if (players < 3) return;
    for (int i = 0; i < kEngines; ++i) {
      SyncEngine& e = eng(i);
      const Frame hi = e.frame() + e.config().inputDelay;
      const Frame lo = std::max(e.episodeStart(), hi - 14);
      std::vector<uint8_t> b;
      b.push_back(0x01);
      put16(b, 2);
      put32(b, wireFrame(hi));
      b.push_back(static_cast<uint8_t>(hi - lo + 1));
      b.push_back(0);
      for (Frame f = lo; f <= hi; ++f) {
        auto it = phantomSent.find(f);
        uint8_t a = it != phantomSent.end() ? it->second : static_cast<uint8_t>((wireFrame(f) * 2654435761u >> 13) % 5);
        phantomSent.emplace(f, a);
        if (equivocate && i == 1) a = static_cast<uint8_t>((a + 1) % 5);
        put32(b, wireFrame(f));
        b.push_back(a);
      }
      inject(i, b, 2, d.ConsumeBool() ? Path::P2P : Path::Relay);
    }
  }

  void op() {
    const int i = d.ConsumeIntegralInRange<int>(0, kEngines - 1);
    switch (d.ConsumeIntegralInRange<int>(0, 20)) {
      case 0: case 1: case 2:
        tick(d.ConsumeIntegralInRange<int>(1, 16));
        break;
      case 3: {  // one advance of one engine after a time step
        now += d.ConsumeBool() ? d.ConsumeIntegralInRange<int>(0, 100) : d.ConsumeIntegralInRange<int>(0, 20000);
        deliverDue(now);
        stepPeer(i, d.ConsumeBool() ? d.ConsumeIntegral<uint8_t>() : -1);
        break;
      }
      case 4: {  // raw bytes
        const int from = pickPeer();
        const Path via = d.ConsumeBool() ? Path::P2P : Path::Relay;
        std::vector<uint8_t> b = d.ConsumeBytes<uint8_t>(d.ConsumeIntegralInRange<size_t>(0, 1400));
        inject(i, b, from, via);
        break;
      }
      case 5: case 6: {
        std::vector<uint8_t> b = buildInput(i, false);
        inject(i, b, pendingFrom_, d.ConsumeBool() ? Path::P2P : Path::Relay);
        break;
      }
      case 7: {
        std::vector<uint8_t> b = buildInput(i, true);
        inject(i, b, pendingFrom_, d.ConsumeBool() ? Path::P2P : Path::Relay);
        break;
      }
      case 8: case 9: {
        const int from = pickPeer();
        std::vector<uint8_t> b = buildFixed(i);
        inject(i, b, from, d.ConsumeBool() ? Path::P2P : Path::Relay);
        break;
      }
      case 10:
        relayJson(i, RelayEvent::PlayerAction, buildPlayerAction(i), d.ConsumeBool() ? pickPeer() : -1);
        break;
      case 11:
        relayJson(i, RelayEvent::StateSync, buildStateSync(i), d.ConsumeBool() ? pickPeer() : -1);
        break;
      case 12: {  // raw relay text on either event (or an invalid event id)
        const int ev = d.ConsumeIntegralInRange<int>(0, 4);
        std::string text = d.ConsumeRandomLengthString(2048);
        relayJson(i, static_cast<RelayEvent>(ev), text, pickPeer());
        break;
      }
      case 13: {  // direct relay input (JS receiveRelayInput)
        const int player = pickPeer();
        const int from = d.ConsumeBool() ? player : pickPeer();
        RxResult r = eng(i).receiveRelayInput(player, pickFrame(i), d.ConsumeIntegralInRange<int>(-2, 300), now, from);
        if (!rejectedUpFront(r)) taint(i, player);
        break;
      }
      case 14: {  // connection events
        const int peer = pickPeer();
        switch (d.ConsumeIntegralInRange<int>(0, 4)) {
          case 0: eng(i).onChannelClosed(peer, now); break;
          case 1: eng(i).onChannelOpen(peer, now); break;
          case 2: eng(i).onConnectionFailed(peer, now); break;
          case 3: net->cutP2P(); for (int k = 0; k < kEngines; ++k) for (int p = 0; p < players; ++p) eng(k).onChannelClosed(p, now); break;
          default: net->restoreP2P(); for (int k = 0; k < kEngines; ++k) for (int p = 0; p < players; ++p) eng(k).onChannelOpen(p, now); break;
        }
        break;
      }
      case 15: case 16:
        phantom(d.ConsumeIntegralInRange<int>(0, 7) == 0);
        break;
      case 17: {  // flood: many copies of one packet in one frame
        std::vector<uint8_t> b = d.ConsumeBool() ? buildInput(i, false) : buildFixed(i);
        const int from = d.ConsumeBool() ? pendingFrom_ : pickPeer();
        const int copies = d.ConsumeIntegralInRange<int>(1, 400);
        for (int k = 0; k < copies; ++k) inject(i, b, from, k & 1 ? Path::Relay : Path::P2P);
        break;
      }
      case 18: {  // episode end / reset
        SyncEngine& e = eng(i);
        Peer& p = *peers[static_cast<size_t>(i)];
        if (d.ConsumeBool()) {
          // this peer's env ends its episode after a frame a few ahead (this peer only: the
          // others' envs do not, a mismatch the engines must still settle on one frame)
          p.game.endAtFrame = (e.frame() - e.episodeStart()) + d.ConsumeIntegralInRange<int>(0, 5);
        } else if (e.resetEpisode(d.ConsumeBool() ? -1 : d.ConsumeIntegralInRange<int>(0, 40)).empty()) {
          p.resetGame();  // the page starts its env's next episode
        }
        break;
      }
      case 19:  // a peer stalls for a while
        pausedUntil[static_cast<size_t>(i)] = now + d.ConsumeIntegralInRange<int>(0, 3000);
        break;
      default: {  // bots' input bytes and the local action: any value
        peers[static_cast<size_t>(i)]->action = d.ConsumeIntegral<uint8_t>();
        break;
      }
    }
  }
};

}  // namespace

// Every run builds and frees two engines: a smaller ASan quarantine keeps re-using warm memory
// (page faults dominate otherwise) while still catching use-after-free of recent frees.
extern "C" const char* __asan_default_options() { return "quarantine_size_mb=32"; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider d(data, size);
  World w(d);
  if (!w.setup()) return 0;
  w.checkAll();
  for (int k = 0; k < kMaxOps && d.remaining_bytes() > 0 && w.steps < kMaxSteps; ++k) {
    w.op();
    w.checkAll();
  }
  w.tick(10);  // honest traffic at the end
  w.checkAll(true);
  return 0;
}
