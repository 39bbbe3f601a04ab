// Native soak: a long harness session (the toy game over the in-memory lossy network, every peer
// driving a real SyncEngine through the frame driver, tests/unit/driver.hpp) with optional random
// faults, checking the engine's invariants all the way:
//   * the confirmed frame of every peer never decreases;
//   * the inputs of confirmed frames never change (every confirmed frame is re-read from the
//     engine - action log and known inputs - once more shortly before it leaves the ring);
//   * identical confirmed action logs on every peer (compared frame by frame as they confirm,
//     plus a running hash of each whole log);
//   * 0 desyncs, 0 nondeterminism reports, 0 missing snapshots;
//   * every step report in plan order, no plan left unreported, no env stepped past its end;
//   * memory flat after warm-up: engine->memoryBytes() never changes, and the process RSS
//     (/proc/self/statm) sampled at 10% and 100% of the run grows by at most 1 MiB + 2%.
//
//   build/native/soak --frames 100000 --players 4 --profile bad --faults --seed 7
//     --profile lan|wifi|mobile|bad|hostile   link model (web/netsim.js PROFILES)
//     --faults    random faults every 20..40 s of game time: P2P cut and restore (every engine
//                 is told onChannelClosed / onChannelOpen for every peer), a peer stalling for
//                 1..4 s, loss bursts (90% loss for 0.5..2 s)
//     --quiet     no progress lines
// Prints a table of figures; exits 1 on any violation, 2 on bad usage.
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;

namespace {

struct Options {
  uint64_t frames = 100000;
  int players = 4;
  std::string profile = "bad";
  bool faults = false;
  uint64_t seed = 7;
  bool quiet = false;
};

int usage(const char* why) {
  std::fprintf(stderr, "soak: %s\nusage: soak [--frames N] [--players 2..4] [--profile lan|wifi|mobile|bad|hostile] [--faults] [--seed S] [--quiet]\n", why);
  return 2;
}

bool profileOf(const std::string& name, LinkProfile& p, bool& bursts) {
  // oneWay = rtt / 2, jitter = the full width of the uniform one-way jitter, relay +20 ms one way.
  bursts = false;
  if (name == "lan") p = LinkProfile{1, 0, 0, 0, 0, 20};
  else if (name == "wifi") p = LinkProfile{25, 20, 0.01, 0, 0, 20};
  else if (name == "mobile") p = LinkProfile{50, 30, 0.05, 0, 0, 20};
  else if (name == "bad") p = LinkProfile{150, 100, 0.15, 0.05, 0.02, 20};
  else if (name == "hostile") { p = LinkProfile{250, 250, 0.5, 0.2, 0.1, 20}; bursts = true; }
  else return false;
  return true;
}

double rssMiB() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long size = 0, resident = 0;
  int n = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

struct Violations {
  uint64_t count = 0;
  void report(const char* what, int peer, long long a, long long b) {
    if (count++ < 20) std::fprintf(stderr, "VIOLATION: %s (peer %d: %lld / %lld)\n", what, peer, a, b);
  }
};

// Per-peer confirmed logs, compared across peers as frames confirm and then dropped, so the
// soak's own memory stays flat however long it runs.
struct LogCompare {
  int actors;
  std::vector<std::deque<uint8_t>> pending;
  std::vector<uint64_t> hash;
  uint64_t comparedFrames = 0;
  uint64_t mismatches = 0;
  LogCompare(int peers, int nActors) : actors(nActors), pending(static_cast<size_t>(peers)), hash(static_cast<size_t>(peers), 1469598103934665603ull) {}
  void add(size_t peer, std::vector<uint8_t>& log) {
    for (uint8_t b : log) {
      pending[peer].push_back(b);
      hash[peer] = (hash[peer] ^ b) * 1099511628211ull;
    }
    log.clear();
  }
  void compare() {
    size_t n = SIZE_MAX;
    for (const auto& p : pending) n = std::min(n, p.size());
    n -= n % static_cast<size_t>(actors);
    if (n == 0) return;
    for (size_t i = 1; i < pending.size(); ++i)
      if (!std::equal(pending[0].begin(), pending[0].begin() + static_cast<long>(n), pending[i].begin())) ++mismatches;
    for (auto& p : pending) p.erase(p.begin(), p.begin() + static_cast<long>(n));
    comparedFrames += n / static_cast<size_t>(actors);
  }
};

// The confirmed actions of one peer's recent frames, re-read from the engine before they age out.
struct Recheck {
  std::deque<std::pair<Frame, std::vector<uint8_t>>> frames;  // frame -> actions
  uint64_t rechecked = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--frames" && (v = val())) o.frames = std::strtoull(v, nullptr, 10);
    else if (a == "--players" && (v = val())) o.players = std::atoi(v);
    else if (a == "--profile" && (v = val())) o.profile = v;
    else if (a == "--seed" && (v = val())) o.seed = std::strtoull(v, nullptr, 10);
    else if (a == "--faults") o.faults = true;
    else if (a == "--quiet") o.quiet = true;
    else return usage(("bad argument " + a).c_str());
  }
  if (o.players < 2 || o.players > 4) return usage("--players must be 2..4");
  if (o.frames < 100 || o.frames > 100000000) return usage("--frames must be 100..1e8");
  LinkProfile link;
  bool bursts = false;
  if (!profileOf(o.profile, link, bursts)) return usage("unknown --profile");
  const LinkProfile base = link;

  SessionOptions so;
  so.players = o.players;
  so.seed = o.seed;
  so.link = link;
  // P2P comes back after a fault once the link has been healthy for a while (else the first cut
  // would leave the rest of the run on the relay); 'bad' has ~150 ms latency.
  so.extraConfig = ",\"fallbackRecovery\":{\"healthyForMs\":3000,\"latencyBelowMs\":400}";
  Session s(so);
  const int actors = o.players;
  for (auto& p : s.peers) p->maxEventsKept = 0;  // events are counted, not kept

  uint64_t snapshotErrors = 0, fallbacks = 0, recoveries = 0, interrupts = 0, eventsSeen = 0;
  for (auto& p : s.peers)
    p->onEvent = [&](const nlohmann::json& ev) {
      ++eventsSeen;
      const std::string t = ev.value("type", "");
      if (t == "error") ++snapshotErrors;
      else if (t == "fallback") ++fallbacks;
      else if (t == "recovery") ++recoveries;
      else if (t == "interrupted") ++interrupts;
    };

  Violations viol;
  LogCompare logs(o.players, actors);
  std::vector<Recheck> recheck(static_cast<size_t>(o.players));
  std::vector<int64_t> lastConfirmed(static_cast<size_t>(o.players), -1);
  std::vector<size_t> memBytes;
  for (auto& p : s.peers) memBytes.push_back(p->engine->memoryBytes());
  const uint32_t ring = static_cast<uint32_t>(s.peers[0]->engine->config().bufferFrames);

  // Faults.
  Rng frng(o.seed ^ 0xfa17u);
  uint64_t cuts = 0, peerStalls = 0, burstsDone = 0;
  double nextFault = 20000 + frng.uniform() * 20000;
  double restoreAt = -1, burstEndAt = -1;

  auto frameMin = [&]() { return s.minFrame(); };

  double rss10 = -1, rss100 = -1;
  std::vector<size_t> mem10;
  const uint64_t warm = o.frames / 10;
  uint64_t nextProgress = o.frames / 10;
  auto t0 = std::chrono::steady_clock::now();
  uint64_t ticks = 0;

  while (frameMin() < static_cast<Frame>(o.frames)) {
    s.tick();
    ++ticks;

    // ---- faults
    if (o.faults) {
      if (restoreAt >= 0 && s.now >= restoreAt) {
        s.net.restoreP2P();
        for (auto& p : s.peers)
          for (int q = 0; q < o.players; ++q) p->engine->onChannelOpen(q, s.now);
        restoreAt = -1;
      }
      if (burstEndAt >= 0 && s.now >= burstEndAt) {
        s.net.profile().loss = base.loss;
        burstEndAt = -1;
      }
      if (s.now >= nextFault) {
        nextFault = s.now + 20000 + frng.uniform() * 20000;
        switch (frng.below(3)) {
          case 0:
            if (restoreAt < 0) {
              ++cuts;
              s.net.cutP2P();
              for (auto& p : s.peers)
                for (int q = 0; q < o.players; ++q) p->engine->onChannelClosed(q, s.now);
              restoreAt = s.now + 2000 + frng.uniform() * 8000;
            }
            break;
          case 1: {
            ++peerStalls;
            const int who = frng.below(o.players);
            s.pausedUntil[static_cast<size_t>(who)] = s.now + 1000 + frng.uniform() * 3000;
            break;
          }
          default:
            if (burstEndAt < 0) {
              ++burstsDone;
              s.net.profile().loss = 0.9;
              burstEndAt = s.now + 500 + frng.uniform() * 1500;
            }
            break;
        }
      }
      if (bursts && burstEndAt < 0 && frng.chance(0.0005)) {  // hostile: extra short bursts
        s.net.profile().loss = 0.95;
        burstEndAt = s.now + 300;
      }
    }

    // ---- invariants
    for (size_t i = 0; i < s.peers.size(); ++i) {
      SyncEngine& e = *s.peers[i]->engine;
      s.collect(i);  // frames confirmed by deliveries since this peer's last step, too
      const int64_t c = e.confirmedFrame();
      if (c < lastConfirmed[i]) viol.report("confirmed frame decreased", static_cast<int>(i), c, lastConfirmed[i]);
      if (e.memoryBytes() != memBytes[i]) viol.report("memoryBytes changed", static_cast<int>(i), static_cast<long long>(e.memoryBytes()), static_cast<long long>(memBytes[i]));
      // Newly confirmed frames (Session::tick appended them to s.logs[i]).
      std::vector<uint8_t>& l = s.logs[i];
      const size_t n = l.size() / static_cast<size_t>(actors);
      const Frame first = s.logged[i] - static_cast<Frame>(n);
      for (size_t k = 0; k < n; ++k) {
        const Frame f = first + static_cast<Frame>(k);
        std::vector<uint8_t> acts(l.begin() + static_cast<long>(k * static_cast<size_t>(actors)),
                                  l.begin() + static_cast<long>((k + 1) * static_cast<size_t>(actors)));
        for (int p = 0; p < o.players; ++p) {
          uint8_t a;
          if (!e.inputKnown(p, f, a)) viol.report("confirmed input unknown", static_cast<int>(i), f, p);
          else if (a != acts[static_cast<size_t>(p)]) viol.report("executed action differs from the confirmed input", static_cast<int>(i), f, p);
        }
        recheck[i].frames.emplace_back(f, std::move(acts));
      }
      if (s.logged[i] != c + 1)
        viol.report("confirmed frames missing from the action log", static_cast<int>(i), c, s.logged[i]);
      lastConfirmed[i] = std::max(lastConfirmed[i], c);
      logs.add(i, l);
      // Re-read confirmed frames that are about to leave the ring: nothing may have changed.
      auto& q = recheck[i].frames;
      while (!q.empty() && q.front().first + static_cast<Frame>(ring) / 2 < c) {
        const Frame f = q.front().first;
        std::vector<uint8_t> now;
        if (e.actionLog(f, f, now, true) != 1) viol.report("confirmed frame left the log early", static_cast<int>(i), f, c);
        else if (now != q.front().second) viol.report("confirmed actions changed", static_cast<int>(i), f, c);
        for (int p = 0; p < o.players; ++p) {
          uint8_t a;
          if (e.inputKnown(p, f, a) && a != q.front().second[static_cast<size_t>(p)]) viol.report("confirmed input changed", static_cast<int>(i), f, p);
        }
        ++recheck[i].rechecked;
        q.pop_front();
      }
    }
    logs.compare();

    const Frame fm = frameMin();
    if (rss10 < 0 && fm >= static_cast<Frame>(warm)) {
      rss10 = rssMiB();
      for (auto& p : s.peers) mem10.push_back(p->engine->memoryBytes());
    }
    if (!o.quiet && fm >= static_cast<Frame>(nextProgress)) {
      double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "[soak] %3d%%  frame %lld  %.1f s  rss %.1f MiB\n", static_cast<int>(100.0 * static_cast<double>(fm) / static_cast<double>(o.frames)),
                   static_cast<long long>(fm), el, rssMiB());
      nextProgress += o.frames / 10;
    }
  }
  rss100 = rssMiB();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // ---- figures
  uint64_t desyncs = 0, nondet = 0, rollbacks = 0, stalls = 0, waits = 0, replayed = 0, engineDesyncs = 0;
  uint64_t badReports = 0, unreported = 0, pastEnd = 0;
  int64_t minVerified = INT64_MAX;
  for (auto& p : s.peers) {
    desyncs += p->desyncs;
    nondet += p->nondeterminism;
    rollbacks += p->rollbacks;
    stalls += p->stalls;
    waits += p->waits;
    replayed += p->replayedFrames;
    engineDesyncs += p->engine->stateSync().desyncCount();
    minVerified = std::min<int64_t>(minVerified, p->engine->verifiedFrame());
    const nlohmann::json session = p->engine->exportSessionMetrics()["session"];
    badReports += session["badStepReports"].get<uint64_t>();
    unreported += session["unreportedSteps"].get<uint64_t>();
    pastEnd += p->stepsPastEnd;
  }
  // The running hashes cover each peer's whole log: comparable when every peer logged as many
  // frames (the frame-by-frame comparison above covers the common prefix in any case).
  bool hashesEqual = true;
  bool sameLength = true;
  for (size_t i = 1; i < s.logged.size(); ++i) sameLength = sameLength && s.logged[i] == s.logged[0];
  if (sameLength)
    for (size_t i = 1; i < logs.hash.size(); ++i) hashesEqual = hashesEqual && logs.hash[i] == logs.hash[0];

  const double growth = rss100 - rss10;
  const double allowed = 1.0 + 0.02 * rss10;
  bool memFlat = growth <= allowed;
  for (size_t i = 0; i < s.peers.size(); ++i) memFlat = memFlat && mem10[i] == s.peers[i]->engine->memoryBytes();

  uint64_t rechecked = 0;
  for (auto& r : recheck) rechecked += r.rechecked;

  std::printf("soak: %" PRIu64 " frames, %d players, profile %s%s, seed %" PRIu64 "\n", o.frames, o.players, o.profile.c_str(),
              o.faults ? " + faults" : "", o.seed);
  std::printf("  %-34s %s\n", "figure", "value");
  std::printf("  %-34s %.1f s (%.0f frames/s per peer)\n", "wall time", wall, static_cast<double>(o.frames) / std::max(wall, 1e-9));
  std::printf("  %-34s %.0f s\n", "game time", s.now / 1000.0);
  std::printf("  %-34s %" PRIu64 "\n", "frames compared across peers", logs.comparedFrames);
  std::printf("  %-34s %s\n", "action logs identical", logs.mismatches == 0 && hashesEqual ? "yes" : "NO");
  std::printf("  %-34s %" PRIu64 "\n", "confirmed frames re-checked", rechecked);
  std::printf("  %-34s %" PRIu64 "\n", "invariant violations", viol.count);
  std::printf("  %-34s %" PRIu64 " (engines: %" PRIu64 ")\n", "desyncs", desyncs, engineDesyncs);
  std::printf("  %-34s %" PRIu64 "\n", "nondeterminism reports", nondet);
  std::printf("  %-34s %" PRIu64 "\n", "engine errors (snapshot missing)", snapshotErrors);
  std::printf("  %-34s %" PRIu64 " bad, %" PRIu64 " unreported, %" PRIu64 " past the end\n", "step reports", badReports, unreported, pastEnd);
  std::printf("  %-34s %" PRId64 "\n", "min verified frame", minVerified);
  std::printf("  %-34s %" PRIu64 " (%" PRIu64 " frames replayed)\n", "rollbacks", rollbacks, replayed);
  std::printf("  %-34s %" PRIu64 " / %" PRIu64 "\n", "stall / wait frames", stalls, waits);
  std::printf("  %-34s %" PRIu64 " sent, %.1f%% lost\n", "P2P packets", s.net.p2pSent,
              s.net.p2pSent ? 100.0 * static_cast<double>(s.net.p2pLost) / static_cast<double>(s.net.p2pSent) : 0.0);
  std::printf("  %-34s %" PRIu64 " cuts, %" PRIu64 " peer stalls, %" PRIu64 " loss bursts\n", "faults", cuts, peerStalls, burstsDone);
  std::printf("  %-34s %" PRIu64 " fallbacks, %" PRIu64 " recoveries, %" PRIu64 " interruptions\n", "health events", fallbacks, recoveries, interrupts);
  std::printf("  %-34s %zu bytes per engine (10%%: %zu, 100%%: %zu)\n", "engine memoryBytes()", memBytes[0], mem10.empty() ? 0 : mem10[0],
              s.peers[0]->engine->memoryBytes());
  std::printf("  %-34s %.1f MiB at 10%%, %.1f MiB at 100%% (%+.2f MiB, allowed %.2f)\n", "process RSS", rss10, rss100, growth, allowed);
  std::printf("  %-34s %s\n", "memory flat after warm-up", memFlat ? "yes" : "NO");

  const bool ok = viol.count == 0 && logs.mismatches == 0 && hashesEqual && desyncs == 0 && engineDesyncs == 0 && nondet == 0 &&
                  snapshotErrors == 0 && memFlat && logs.comparedFrames + 200 >= o.frames && badReports == 0 && unreported == 0 &&
                  pastEnd == 0;
  std::printf("soak: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
