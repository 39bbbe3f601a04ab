// Native benchmarks (not tests: nothing here fails on a slow machine). Run by scripts/bench.
//
//   build/native/bench_native [--json] [--quick]
//
// Figures (each the median of repeated runs, with min and max):
//   codec.encodeNsPerPacket / decodeNsPerPacket   INPUT packet of 10 entries (protocol.hpp)
//   hash.<size>.rawGBps                           XXH3-64 of a state text (hashBytes)
//   hash.<size>.canonicalGBps                     canonicalHash(text, floatDigits 6)
//   frameUs.steady2p / late10pct2p / steady4p / steady2pHashSync
//                                                 the same frame loops as web/bench.mjs: per
//                                                 engine-frame, advance() + the plan run through the
//                                                 frame driver (tests/unit/driver.hpp runPlan) against
//                                                 a trivial env whose state is 16 bytes + receive()
//                                                 of each packet the remote engines sent that tick
//                                                 (no WASM, no JS), for comparison with the WASM figures.
// The state texts and the link model are the same as in web/bench.mjs (see there).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "driver.hpp"
#include "protocol.hpp"
#include "state_hash.hpp"
#include "sync_engine.hpp"

using namespace p2psync;

namespace {

bool g_quick = false;
uint64_t g_sink = 0;  // printed if odd: keeps the results alive

double nowSec() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// CPU time of this thread: on a loaded host the wall time includes time spent descheduled.
double cpuSec() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Stat {
  double median = 0, min = 0, max = 0, cpu = 0;  // cpu: median of the CPU-time samples
  int runs = 0;
};

double medianOf(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

Stat stat(std::vector<double> v, const std::vector<double>& cpu) {
  Stat s;
  if (v.empty()) return s;
  s.median = medianOf(v);
  std::sort(v.begin(), v.end());
  s.runs = static_cast<int>(v.size());
  s.min = v.front();
  s.max = v.back();
  s.cpu = medianOf(cpu);
  return s;
}

struct Sample {
  double wall, cpu;
};

// Runs `fn` (which returns one sample) `runs` times after one warm-up call.
Stat repeat(int runs, const std::function<Sample()>& fn) {
  fn();
  std::vector<double> w, c;
  for (int i = 0; i < runs; ++i) {
    Sample x = fn();
    w.push_back(x.wall);
    c.push_back(x.cpu);
  }
  return stat(w, c);
}

// Calls `op(i)` in batches until at least `minSec` have passed; returns seconds per call.
template <typename F>
Sample perCall(F&& op, double minSec) {
  uint64_t n = 0, batch = 16;
  double c0 = cpuSec();
  double t0 = nowSec(), t = t0;
  while (t - t0 < minSec) {
    for (uint64_t i = 0; i < batch; ++i) op(n + i);
    n += batch;
    if (batch < (1u << 20)) batch *= 2;
    t = nowSec();
  }
  double c = cpuSec() - c0;
  return Sample{(t - t0) / static_cast<double>(n), c / static_cast<double>(n)};
}
Sample scaled(Sample s, double k) { return Sample{s.wall * k, s.cpu * k}; }
Sample rate(double amount, Sample perCallSec) { return Sample{amount / perCallSec.wall, amount / perCallSec.cpu}; }

// ------------------------------------------------------------------ deterministic PRNG (mulberry32)
struct Rng {
  uint32_t a;
  explicit Rng(uint32_t seed) : a(seed) {}
  uint32_t u32() {
    a += 0x6d2b79f5u;
    uint32_t t = (a ^ (a >> 15)) * (1u | a);
    t = (t + ((t ^ (t >> 7)) * (61u | t))) ^ t;
    return t ^ (t >> 14);
  }
  double uniform() { return u32() / 4294967296.0; }
  int below(int n) { return static_cast<int>(uniform() * n); }
};

// ------------------------------------------------------------------ state texts
// A JSON state text of exactly `bytes` bytes, like an env's get_state(): an array of entity
// objects with integer and float fields, then a padding string. Same generator in web/bench.mjs.
std::string stateText(size_t bytes) {
  Rng r(12345);
  std::string s = "{\"entities\":[";
  std::string item;
  for (int i = 0;; ++i) {
    char buf[160];
    double v = (static_cast<double>(r.u32() % 2000000) - 1000000.0) / 4096.0;  // exact binary fraction
    std::snprintf(buf, sizeof buf, "%s{\"id\":%d,\"kind\":\"k%u\",\"v\":%.17g,\"x\":%u,\"y\":%u}", i ? "," : "", i,
                  r.u32() % 7, v, r.u32() % 64, r.u32() % 48);
    // keep room for `],"pad":""}` (11 bytes)
    if (s.size() + std::strlen(buf) + 11 > bytes) break;
    s += buf;
  }
  s += "],\"pad\":\"";
  while (s.size() + 2 < bytes) s += 'x';
  s += "\"}";
  return s;
}

// ------------------------------------------------------------------ codec
Message inputMessage() {
  Message m;
  m.type = MsgType::Input;
  m.playerIndex = 1;
  m.frame = 1009;
  m.count = 10;
  for (int i = 0; i < 10; ++i) m.inputs[i] = FrameAction{1000u + static_cast<uint32_t>(i), static_cast<uint8_t>(i % 5)};
  return m;
}

// ------------------------------------------------------------------ frame loops
// N engines in one process exchange their P2P packets after every tick (all engines advance and
// run their plan, then every packet due is received). The env's state is 16 bytes (its frame
// count and a running sum of the actions), so the per-frame cost excludes state hashing;
// hashInterval is 6000 unless `hashSync`.
// Late mode: each directed link freezes with probability `freezeP` per tick for D+k-1 ticks
// (k uniform 1..4, D = inputDelay): packets sent meanwhile are held and released together, so
// the input sent first arrives k frames after the receiver executed (predicted) its frame.
struct FrameSim {
  struct Pkt {
    uint64_t release;
    int from;
    std::vector<uint8_t> bytes;
  };
  struct Link {
    std::deque<Pkt> q;
    uint64_t frozenUntil = 0;
    int64_t maxHeader = -1;
  };
  int n;
  int delay = 2;
  double freezeP = 0;
  std::vector<std::unique_ptr<SyncEngine>> eng;
  std::vector<Link> links;  // from * n + to
  std::vector<Rng> actRng;
  Rng linkRng{777};
  uint64_t tick = 0;
  uint64_t packets = 0, inputsTotal = 0, inputsLate = 0, rollbacks = 0, replayed = 0, nonRun = 0;
  // The trivial env of one engine (driver.hpp's Env interface).
  struct Env {
    uint64_t frame = 0, sum = 0;
    bool load(const uint8_t* d, size_t n) {
      if (n != 16) return false;
      std::memcpy(&frame, d, 8);
      std::memcpy(&sum, d + 8, 8);
      return true;
    }
    std::string state() const {
      std::string s(16, '\0');
      std::memcpy(s.data(), &frame, 8);
      std::memcpy(s.data() + 8, &sum, 8);
      return s;
    }
    test::StepOutcome step(const uint8_t* actions, int n, const RequestView&) {
      for (int i = 0; i < n; ++i) sum = sum * 31 + actions[i];
      ++frame;
      return {};
    }
  };
  std::vector<Env> envs;

  FrameSim(int players, double p, bool hashSync) : n(players), freezeP(p), links(static_cast<size_t>(players * players)) {
    for (int i = 0; i < n; ++i) {
      std::string cfg = "{\"numPlayers\":" + std::to_string(n) + ",\"localPlayerIndex\":" + std::to_string(i) +
                        (hashSync ? "" : ",\"hashInterval\":6000") + "}";
      std::string err;
      eng.push_back(SyncEngine::create(cfg.data(), cfg.size(), err));
      if (!eng.back()) {
        std::fprintf(stderr, "bench_native: %s\n", err.c_str());
        std::exit(2);
      }
      for (int j = 0; j < n; ++j)
        if (j != i) eng.back()->onChannelOpen(j, 0);
      actRng.emplace_back(1000 + static_cast<uint32_t>(i));
    }
    envs.resize(static_cast<size_t>(n));
  }

  void enqueue(int from, int to, const uint8_t* b, size_t len) {
    Link& l = links[static_cast<size_t>(from * n + to)];
    uint64_t release = tick;
    if (freezeP > 0) {
      if (tick < l.frozenUntil) {
        release = l.frozenUntil;
      } else if (linkRng.uniform() < freezeP) {
        int k = 1 + linkRng.below(4);
        l.frozenUntil = tick + static_cast<uint64_t>(delay + k - 1);
        release = l.frozenUntil;
      }
    }
    l.q.push_back(Pkt{release, from, std::vector<uint8_t>(b, b + len)});
  }

  // Queues the P2P packets of an outbox (relay records are not delivered: P2P is healthy here).
  void sendBox(int from, const Outbox& box) {
    box.forEach([&](const OutRecord& r) {
      if (r.kind != OutKind::Packet || r.path != Path::P2P) return;
      for (int t = 0; t < n; ++t)
        if (t != from && (r.to < 0 || r.to == t)) enqueue(from, t, r.data, r.length);
    });
  }

  void step() {
    const double now = static_cast<double>(tick) * (1000.0 / 60.0);
    for (int i = 0; i < n; ++i) {
      SyncEngine& e = *eng[static_cast<size_t>(i)];
      const Status st = e.advance(now, static_cast<uint8_t>(actRng[static_cast<size_t>(i)].below(5)), 0);
      sendBox(i, e.outbox());
      const test::PlanStats ps = test::runPlan(e, envs[static_cast<size_t>(i)]);
      if (ps.rolledBack) ++rollbacks;
      replayed += static_cast<uint64_t>(ps.replayed);
      if (st != Status::Run) ++nonRun;
      e.consumeEvents();  // the reader marks the events read (JS: the kEventRead word)
    }
    for (int to = 0; to < n; ++to) {
      SyncEngine& e = *eng[static_cast<size_t>(to)];
      for (int from = 0; from < n; ++from) {
        if (from == to) continue;
        Link& l = links[static_cast<size_t>(from * n + to)];
        while (!l.q.empty() && l.q.front().release <= tick) {
          Pkt& k = l.q.front();
          if (k.bytes.size() >= 9 && k.bytes[0] == 0x01) {  // INPUT: count input lateness
            int64_t h = (int64_t(k.bytes[3]) << 24) | (k.bytes[4] << 16) | (k.bytes[5] << 8) | k.bytes[6];
            int64_t c = e.frame();
            for (int64_t g = l.maxHeader + 1; g <= h; ++g) {
              ++inputsTotal;
              if (g < c) ++inputsLate;
            }
            l.maxHeader = std::max(l.maxHeader, h);
          }
          e.receive(k.bytes.data(), k.bytes.size(), from, Path::P2P, now);
          ++packets;
          l.q.pop_front();
          sendBox(to, e.replies());  // PONG etc. (the JS glue sends them with the next plan)
        }
      }
    }
    ++tick;
  }
};

struct FrameResult {
  Stat us;
  double packetsPerEngineFrame = 0, lateFraction = 0, rollbacksPerFrame = 0, replayedPerFrame = 0, nonRunFraction = 0;
};

FrameResult frameBench(int players, double freezeP, bool hashSync, int runs, uint64_t framesPerRun) {
  FrameSim sim(players, freezeP, hashSync);
  for (int i = 0; i < 2000; ++i) sim.step();  // warm-up
  uint64_t pk0 = sim.packets, r0 = sim.rollbacks, rp0 = sim.replayed, nr0 = sim.nonRun, it0 = sim.inputsTotal, il0 = sim.inputsLate;
  std::vector<double> v, cpu;
  const double ef1 = static_cast<double>(framesPerRun * static_cast<uint64_t>(players));
  for (int r = 0; r < runs; ++r) {
    double t0 = nowSec(), c0 = cpuSec();
    for (uint64_t f = 0; f < framesPerRun; ++f) sim.step();
    v.push_back((nowSec() - t0) * 1e6 / ef1);
    cpu.push_back((cpuSec() - c0) * 1e6 / ef1);
  }
  FrameResult res;
  res.us = stat(v, cpu);
  double ef = static_cast<double>(framesPerRun) * runs * players;
  res.packetsPerEngineFrame = static_cast<double>(sim.packets - pk0) / ef;
  res.rollbacksPerFrame = static_cast<double>(sim.rollbacks - r0) / ef;
  res.replayedPerFrame = static_cast<double>(sim.replayed - rp0) / ef;
  res.nonRunFraction = static_cast<double>(sim.nonRun - nr0) / ef;
  res.lateFraction = sim.inputsTotal > it0 ? static_cast<double>(sim.inputsLate - il0) / static_cast<double>(sim.inputsTotal - it0) : 0;
  return res;
}

// ------------------------------------------------------------------ output
std::string statJson(const Stat& s, const char* unit) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "{\"median\":%.4g,\"min\":%.4g,\"max\":%.4g,\"cpu\":%.4g,\"runs\":%d,\"unit\":\"%s\"}",
                s.median, s.min, s.max, s.cpu, s.runs, unit);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  std::string only;        // codec | hash | frame (profiling one section)
  std::string caseFilter;  // one frame case, e.g. steady2p (profiling)
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) json = true;
    else if (!std::strcmp(argv[i], "--quick")) g_quick = true;
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else if (!std::strcmp(argv[i], "--case") && i + 1 < argc) caseFilter = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_native [--json] [--quick] [--only codec|hash|frame] [--case NAME]\n");
      return 2;
    }
  }
  auto want = [&](const char* s) { return only.empty() || only == s; };
  const int runs = g_quick ? 3 : 9;
  const double minSec = g_quick ? 0.02 : 0.1;
  std::string out = "{\"native\":{";

  // ---- codec
  if (want("codec")) {
    Message m = inputMessage();
    uint8_t buf[128];
    const size_t len = encode(m, buf, sizeof buf);
    Message d;
    Stat enc = repeat(runs, [&] {
      return scaled(perCall([&](uint64_t i) {
        m.inputs[9].action = static_cast<uint8_t>(i & 3);
        g_sink += encode(m, buf, sizeof buf);
      }, minSec), 1e9);
    });
    Stat dec = repeat(runs, [&] {
      return scaled(perCall([&](uint64_t i) {
        buf[len - 1] = static_cast<uint8_t>(i & 3);
        g_sink += static_cast<uint64_t>(decode(buf, len, d)) + d.inputs[9].action;
      }, minSec), 1e9);
    });
    out += "\"codec\":{\"packetBytes\":" + std::to_string(len) + ",\"encodeNsPerPacket\":" + statJson(enc, "ns") +
           ",\"decodeNsPerPacket\":" + statJson(dec, "ns") + "},";
    if (!json) std::printf("codec INPUT(10) %zu B: encode %.1f ns, decode %.1f ns\n", len, enc.median, dec.median);
  }

  // ---- hash
  if (want("hash")) {
    out += "\"hash\":{";
    const size_t sizes[] = {1024, 16 * 1024, 256 * 1024};
    const char* names[] = {"1KB", "16KB", "256KB"};
    for (int k = 0; k < 3; ++k) {
      std::string text = stateText(sizes[k]);
      const auto* b = reinterpret_cast<const uint8_t*>(text.data());
      const double gb = static_cast<double>(text.size()) / 1e9;
      Stat raw = repeat(runs, [&] {
        return rate(gb, perCall([&](uint64_t) { g_sink += hashBytes(b, text.size()); }, minSec));
      });
      Stat canon = repeat(g_quick ? 3 : 5, [&] {
        return rate(gb, perCall([&](uint64_t) {
          uint64_t h = 0;
          canonicalHash(text.data(), text.size(), 6, h);
          g_sink += h;
        }, minSec));
      });
      out += std::string(k ? "," : "") + "\"" + names[k] + "\":{\"bytes\":" + std::to_string(text.size()) +
             ",\"rawGBps\":" + statJson(raw, "GB/s") + ",\"canonicalGBps\":" + statJson(canon, "GB/s") + "}";
      if (!json) std::printf("hash %-5s raw %.2f GB/s, canonical %.4f GB/s\n", names[k], raw.median, canon.median);
    }
    out += "},";
  }

  // ---- frame loops
  if (want("frame")) {
    const uint64_t frames = g_quick ? 5000 : 20000;
    struct Case { const char* name; int players; double freezeP; bool hashSync; };
    // freezeP 0.043 gives ~10% late remote inputs (measured, reported as lateFraction)
    const Case cases[] = {{"steady2p", 2, 0, false}, {"late10pct2p", 2, 0.043, false}, {"steady4p", 4, 0, false},
                          {"steady2pHashSync", 2, 0, true}};
    out += "\"frameUs\":{";
    for (int k = 0; k < 4; ++k) {
      if (!caseFilter.empty() && caseFilter != cases[k].name) continue;
      FrameResult r = frameBench(cases[k].players, cases[k].freezeP, cases[k].hashSync, runs, frames);
      char extra[256];
      std::snprintf(extra, sizeof extra,
                    ",\"packetsPerEngineFrame\":%.4g,\"lateInputFraction\":%.4g,\"rollbacksPerFrame\":%.4g,"
                    "\"replayedFramesPerFrame\":%.4g,\"nonRunFraction\":%.4g}",
                    r.packetsPerEngineFrame, r.lateFraction, r.rollbacksPerFrame, r.replayedPerFrame, r.nonRunFraction);
      std::string sj = statJson(r.us, "us");
      sj.pop_back();
      if (out.back() != '{') out += ",";
      out += std::string("\"") + cases[k].name + "\":" + sj + extra;
      if (!json)
        std::printf("frame %-12s %.3f us/engine-frame (late %.1f%%, rollbacks/frame %.3f)\n", cases[k].name, r.us.median,
                    100 * r.lateFraction, r.rollbacksPerFrame);
    }
    out += "}";
  }

  if (out.back() == ',') out.pop_back();
  out += "}}";
  if (json) std::printf("%s\n", out.c_str());
  if (g_sink == 42) std::fprintf(stderr, "(sink %llu)\n", static_cast<unsigned long long>(g_sink));
  return 0;
}
