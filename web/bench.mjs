// p2psync benchmarks through the real .wasm, called from Node the way a page calls it
// (web/p2psync.js). Not tests: nothing here fails on a slow machine. Normally run by scripts/bench.
//
//   node web/bench.mjs [--json [FILE]] [--native FILE] [--quick] [--only LIST] [--memory-frames N]
//
//   --json [FILE]    write the JSON (to stdout, or to FILE and the table to stdout)
//   --native FILE    merge the JSON of build/native/bench_native --json (under "native")
//   --quick          fewer/shorter runs and 100,000 memory frames (for development)
//   --only LIST      comma-separated sections: frame,calls,codec,hash,memory,size,pyodide
//
// Every timed figure is the median of repeated runs, with min and max. The host is shared and may
// be loaded: the load average is recorded, and min is the best estimate of the unloaded cost.
//
// Definitions (the README section written by scripts/bench repeats them):
//  frameUs.*      µs per engine-frame: engine.advance() + running the plan through the one JS
//                 driver (web/driver.js runPlan: its Save/Advance requests, stepped() per frame)
//                 against a trivial env whose state is 16 bytes (the frame number) + engine.receive()
//                 of each packet the remote engines sent that frame (2p: one packet; 4p: three).
//                 All engines live in one module and exchange their P2P packets in-process after
//                 every tick. State hashing costs nothing measurable at 16 bytes; hashInterval is
//                 6000 (the hash-exchange protocol is excluded too; frameUs.steady2pHashSync keeps
//                 the default interval of 5). tests/native/bench_native.cpp measures the same work
//                 with the C++ driver (tests/unit/driver.hpp).
//  late10pct2p    each directed link freezes with probability 0.043 per tick for D+k-1 ticks
//                 (k uniform 1..4, D = inputDelay 2): packets sent meanwhile are held back and
//                 released together, so the first held input arrives k frames after the receiver
//                 predicted it; ~10% of remote inputs are late by 1..4 frames (lateInputFraction
//                 reports the measured share). Actions are uniform random each frame, so most late
//                 inputs were mispredicted and produce rollback plans (replay actions are read and
//                 resnapshot frames saved, as a page does).
import fs from 'node:fs';
import os from 'node:os';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { loadP2PSync } from './p2psync.js';
import { runPlan } from './driver.js';
import { SimWorld } from './sim_session.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

// ---------------------------------------------------------------------------------------------- args
const opt = { json: false, jsonFile: null, native: null, quick: false, only: null, memoryFrames: null };
function parseArgs(args) {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--json') {
      opt.json = true;
      if (args[i + 1] && !args[i + 1].startsWith('--')) opt.jsonFile = args[++i];
    } else if (a === '--native') opt.native = args[++i];
    else if (a === '--quick') opt.quick = true;
    else if (a === '--only') opt.only = new Set(args[++i].split(','));
    else if (a === '--memory-frames') opt.memoryFrames = Number(args[++i]);
    else {
      console.error('usage: node web/bench.mjs [--json [FILE]] [--native FILE] [--quick] [--only frame,calls,codec,hash,memory,size,pyodide] [--memory-frames N]');
      process.exit(2);
    }
  }
  RUNS = opt.quick ? 3 : 9;
  MIN_MS = opt.quick ? 20 : 100;
}
const want = (s) => !opt.only || opt.only.has(s);
let RUNS = 9;
let MIN_MS = 100;
const log = (...m) => { if (!opt.json || opt.jsonFile) console.error('[bench]', ...m); };

// ---------------------------------------------------------------------------------------------- stats
// Every sample is taken twice over: wall time (the figure) and the process's CPU time (user +
// sys, reported as `cpu`: the median of the CPU-time samples). On a loaded host the wall time
// includes time the process was descheduled; the CPU time does not.
const median = (v) => {
  const a = [...v].sort((x, y) => x - y), n = a.length;
  return n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
};
function stat(values, unit, cpuValues = null) {
  const v = [...values].sort((a, b) => a - b);
  const s = { median: round(median(v)), min: round(v[0]), max: round(v[v.length - 1]), runs: v.length, unit };
  if (cpuValues) s.cpu = round(median(cpuValues));
  return s;
}
function round(x) { return Number.isFinite(x) ? Number(x.toPrecision(4)) : x; }
/** fn() returns one sample {wall, cpu}; one warm-up call, then `runs` samples. */
function repeat(runs, unit, fn) {
  fn();
  const w = [], c = [];
  for (let i = 0; i < runs; i++) {
    const x = fn();
    w.push(x.wall);
    c.push(x.cpu);
  }
  return stat(w, unit, c);
}
/** Runs work() once; returns {ms, cpuMs}. */
function timed(work) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  work();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { ms, cpuMs: (c.user + c.system) / 1000 };
}
/** Calls op(i) in growing batches for at least minMs; returns {ms, cpuMs} per call. */
function perCall(op, minMs = MIN_MS) {
  let n = 0, batch = 4;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < minMs) {
    for (let i = 0; i < batch; i++) op(n + i);
    n += batch;
    if (batch < 1 << 20) batch *= 2;
    t = performance.now();
  }
  const c = process.cpuUsage(c0);
  return { ms: (t - t0) / n, cpuMs: (c.user + c.system) / 1000 / n };
}
const ns = (pc) => ({ wall: pc.ms * 1e6, cpu: pc.cpuMs * 1e6 });
const gbps = (gb, pc) => ({ wall: gb / (pc.ms / 1000), cpu: gb / (pc.cpuMs / 1000) });

// mulberry32, as in netsim.js and tests/native/bench_native.cpp
function rng(seed) {
  let a = seed | 0;
  const u32 = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
  const r = () => u32() / 4294967296;
  r.u32 = u32;
  r.below = (n) => Math.floor(r() * n);
  return r;
}

/** A JSON state text of exactly `bytes` bytes (same generator as bench_native.cpp). */
export function stateText(bytes) {
  const r = rng(12345);
  let s = '{"entities":[';
  for (let i = 0; ; i++) {
    const v = ((r.u32() % 2000000) - 1000000) / 4096; // exact binary fraction: same text as %.17g
    const item = `${i ? ',' : ''}{"id":${i},"kind":"k${r.u32() % 7}","v":${v},"x":${r.u32() % 64},"y":${r.u32() % 48}}`;
    if (s.length + item.length + 11 > bytes) break;
    s += item;
  }
  s += '],"pad":"';
  s += 'x'.repeat(Math.max(0, bytes - 2 - s.length));
  return s + '"}';
}

// ---------------------------------------------------------------------------------------------- host
function hostInfo() {
  let cpu = 'unknown';
  try {
    const m = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.+)$/m);
    if (m) cpu = m[1].trim();
  } catch { cpu = os.cpus()[0]?.model ?? 'unknown'; }
  return {
    cpu,
    cores: os.cpus().length,
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.arch()}`,
    nodeFlags: process.execArgv.join(' '),
    loadavg: { start: os.loadavg().map((x) => round(x)) },
  };
}

// ---------------------------------------------------------------------------------------------- frame sim
const FREEZE_P_10PCT = 0.043;
const FRAME_MS = 1000 / 60;

/**
 * N engines in one module exchanging their P2P packets in-process (see the header comment), each
 * running its plans through web/driver.js against an env: the trivial 16-byte env by default;
 * pyodideBench passes the Python gridworld envs.
 */
class FrameSim {
  constructor(lib, { players = 2, freezeP = 0, config = {}, seed = 1, envs = null } = {}) {
    this.n = players;
    this.freezeP = freezeP;
    this.delay = config.inputDelay ?? 2;
    this.engines = [];
    for (let i = 0; i < players; i++) {
      const e = new lib.SyncEngine({ numPlayers: players, localPlayerIndex: i, hashInterval: 6000, ...config });
      for (let j = 0; j < players; j++) if (j !== i) e.onChannelOpen(j, 0);
      this.engines.push(e);
    }
    // the trivial env: its state is the frame number in 16 bytes
    this.envs = envs ?? Array.from({ length: players }, () => tinyEnv());
    this.actRng = Array.from({ length: players }, (_, i) => rng(1000 + i + seed * 7919));
    this.linkRng = rng(777 + seed);
    // per directed link: ring queue of preallocated packet buffers
    this.links = Array.from({ length: players * players }, () => ({
      q: [], head: 0, pool: [], frozenUntil: 0, maxHeader: -1,
    }));
    this.plans = new Array(players).fill(null);
    this.tick = 0;
    this.c = { packets: 0, relay: 0, events: 0, inputs: 0, late: 0, rollbacks: 0, replayed: 0, nonRun: 0, frames: 0, snapshots: 0, desyncs: 0 };
  }

  delete() { for (const e of this.engines) e.delete(); }

  enqueue(from, to, bytes) {
    const l = this.links[from * this.n + to];
    let release = this.tick;
    if (this.freezeP > 0) {
      if (this.tick < l.frozenUntil) release = l.frozenUntil;
      else if (this.linkRng() < this.freezeP) {
        const k = 1 + this.linkRng.below(4); // the first held input arrives k frames late
        l.frozenUntil = this.tick + this.delay + k - 1;
        release = l.frozenUntil;
      }
    }
    const slot = l.pool.pop() ?? { release: 0, len: 0, buf: new Uint8Array(2048) };
    slot.release = release;
    slot.len = bytes.length;
    slot.buf.set(bytes);
    l.q.push(slot);
  }

  step() {
    const now = this.tick * FRAME_MS;
    const n = this.n, c = this.c;
    for (let i = 0; i < n; i++) {
      const e = this.engines[i];
      const plan = e.advance(now, this.actRng[i].below(5));
      this.plans[i] = plan.frame;
      c.frames++;
      if (plan.status !== 'RUN') c.nonRun++;
      const out = plan.outgoing;
      for (let k = 0; k < out.length; k++) {
        const o = out[k];
        if (o.path !== 'p2p') { c.relay++; continue; }
        if (o.to >= 0) this.enqueue(i, o.to, o.bytes);
        else for (let t = 0; t < n; t++) if (t !== i) this.enqueue(i, t, o.bytes);
      }
      const events = plan.events;
      c.events += events.length;
      for (let k = 0; k < events.length; k++) if (events[k].type === 'desync') c.desyncs++;
      if (plan.rollback) { c.rollbacks++; c.replayed += plan.rollback.count; }
      const ran = runPlan(e, plan, this.envs[i]);
      c.snapshots += ran.saves;
    }
    for (let to = 0; to < n; to++) {
      const e = this.engines[to];
      for (let from = 0; from < n; from++) {
        if (from === to) continue;
        const l = this.links[from * n + to];
        while (l.head < l.q.length && l.q[l.head].release <= this.tick) {
          const p = l.q[l.head++];
          const b = p.buf;
          if (p.len >= 9 && b[0] === 0x01) { // INPUT: count input lateness
            const h = ((b[3] << 24) | (b[4] << 16) | (b[5] << 8) | b[6]) >>> 0;
            // the receiver's next frame to execute, from its last plan (no extra WASM call)
            const cur = this.plans[to];
            for (let g = l.maxHeader + 1; g <= h; g++) { c.inputs++; if (g < cur) c.late++; }
            if (h > l.maxHeader) l.maxHeader = h;
          }
          e.receive(b.subarray(0, p.len), from, 'p2p', now);
          l.pool.push(p);
          c.packets++;
        }
        if (l.head === l.q.length) { l.q.length = 0; l.head = 0; }
      }
    }
    this.tick++;
  }
}

/** The trivial env of the frame figures: nothing but a frame counter; its state is 16 bytes of
 * text ({"f":0000000123}). */
function tinyEnv() {
  let f = 0;
  return {
    step() { f++; },
    getState() { return `{"f":${String(f).padStart(10, '0')}}`; },
    setState(text) { f = Number(text.slice(5, 15)); },
  };
}

/**
 * JIT warm-up: steps `sim` for at least `ms` of process CPU time and `minTicks` ticks. CPU time,
 * not wall time: on a loaded host the optimizing compiler threads get their share only slowly.
 */
function warm(sim, ms, minTicks = 2000) {
  const c0 = process.cpuUsage();
  const cpuMs = () => { const c = process.cpuUsage(c0); return (c.user + c.system) / 1000; };
  for (let i = 0; i < minTicks || (i % 256 !== 0 || cpuMs() < ms); i++) sim.step();
}

function frameBench(lib, { players, freezeP = 0, config = {}, frames }) {
  const sim = new FrameSim(lib, { players, freezeP, config });
  warm(sim, opt.quick ? 200 : 500);
  const c0 = { ...sim.c };
  const v = [], cpu = [];
  for (let r = 0; r < RUNS; r++) {
    const t = timed(() => { for (let f = 0; f < frames; f++) sim.step(); });
    v.push((t.ms * 1000) / (frames * players));
    cpu.push((t.cpuMs * 1000) / (frames * players));
  }
  const d = (k) => sim.c[k] - c0[k];
  const ef = d('frames');
  sim.delete();
  return {
    ...stat(v, 'us', cpu),
    framesPerRun: frames,
    packetsPerEngineFrame: round(d('packets') / ef),
    lateInputFraction: round(d('inputs') ? d('late') / d('inputs') : 0),
    rollbacksPerFrame: round(d('rollbacks') / ef),
    replayedFramesPerFrame: round(d('replayed') / ef),
    nonRunFraction: round(d('nonRun') / ef),
    eventsPerFrame: round(d('events') / ef),
  };
}

// ---------------------------------------------------------------------------------------------- calls
/**
 * Loads a second instance of the module whose JS→WASM entry points count their calls: every
 * Embind Engine method (prototype) and every function on the Module object (Embind free functions
 * and the plain _p2psync_* exports). Module properties become accessors, so Emscripten's lazy
 * export wrappers (which assign the raw export on their first call) stay counted, and the glue,
 * which looks the hot exports up once, gets the counting wrapper.
 */
async function countingLib() {
  const url = new URL('../build/wasm/p2psync.mjs', import.meta.url);
  const realFactory = (await import(url.toString())).default;
  const counts = {};
  const instrument = (M) => {
    const proto = M.Engine.prototype;
    for (const name of Object.getOwnPropertyNames(proto)) {
      const d = Object.getOwnPropertyDescriptor(proto, name);
      if (name === 'constructor' || !d || typeof d.value !== 'function') continue;
      const orig = d.value, label = `Engine.${name}`;
      counts[label] = 0;
      proto[name] = function (...a) { counts[label]++; return orig.apply(this, a); };
    }
    for (const name of Object.keys(M)) {
      if (typeof M[name] !== 'function' || /^[A-Z]/.test(name) || name.startsWith('dynCall')) continue;
      if (['print', 'printErr', 'locateFile'].includes(name)) continue;
      let inner = M[name];
      counts[name] = 0;
      const counted = function (...a) { counts[name]++; return inner.apply(this, a); };
      Object.defineProperty(M, name, { configurable: true, enumerable: true, get: () => counted, set: (v) => { inner = v; } });
    }
    return M;
  };
  const lib = await loadP2PSync({ moduleFactory: (args) => realFactory(args).then(instrument) });
  return { lib, counts };
}

function callsBench({ lib, counts }, { players = 2, freezeP = 0, frames }) {
  const sim = new FrameSim(lib, { players, freezeP });
  for (let i = 0; i < 500; i++) sim.step();
  for (const k of Object.keys(counts)) counts[k] = 0;
  const f0 = sim.c.frames, p0 = sim.c.packets;
  for (let i = 0; i < frames; i++) sim.step();
  const ef = sim.c.frames - f0;
  const packets = sim.c.packets - p0;
  sim.delete();
  const byName = {};
  let total = 0, receives = 0;
  for (const [k, v] of Object.entries(counts)) {
    if (!v) continue;
    byName[k] = round(v / ef);
    if (k === '_p2psync_receive' || k === 'Engine.receive') receives += v;
    else total += v;
  }
  return { perFrame: round(total / ef), receivesPerFrame: round(receives / ef), packetsPerFrame: round(packets / ef), byName };
}

// ---------------------------------------------------------------------------------------------- codec
function codecBench(lib) {
  const msg = { type: 'INPUT', playerIndex: 1, frame: 1009, inputs: Array.from({ length: 10 }, (_, i) => ({ frame: 1000 + i, action: i % 5 })) };
  const bytes = lib.encode(msg);
  let sink = 0;
  const enc = repeat(RUNS, 'ns', () => ns(perCall((i) => { msg.inputs[9].action = i & 3; sink += lib.encode(msg).length; })));
  const dec = repeat(RUNS, 'ns', () => ns(perCall((i) => { bytes[bytes.length - 1] = i & 3; sink += lib.decode(bytes).inputs.length; })));
  if (sink === 42) log('sink');
  return { packetBytes: bytes.length, encodeNsPerPacket: enc, decodeNsPerPacket: dec };
}

// ---------------------------------------------------------------------------------------------- hash
function hashBench(lib) {
  const M = lib._module;
  const out = {};
  const stagedFn = M._p2psync_hash_staged ? (len) => M._p2psync_hash_staged(len, 0) : (len) => M.hashStaged(len, 0);
  for (const [name, size] of [['1KB', 1024], ['16KB', 16384], ['256KB', 262144]]) {
    const text = stateText(size);
    const bytes = new TextEncoder().encode(text);
    const gb = bytes.length / 1e9;
    const hex = lib.hash(text); // stages the text
    if (lib.hash(bytes) !== hex) throw new Error('hash(bytes) != hash(text)');
    let sink = 0;
    const staged = repeat(RUNS, 'GB/s', () => { lib.hash(text); return gbps(gb, perCall(() => { sink += stagedFn(bytes.length) ? 1 : 0; })); });
    const str = repeat(RUNS, 'GB/s', () => gbps(gb, perCall(() => { sink += lib.hash(text).length; })));
    const byt = repeat(RUNS, 'GB/s', () => gbps(gb, perCall(() => { sink += lib.hash(bytes).length; })));
    const canon = repeat(opt.quick ? 3 : 5, 'GB/s', () => gbps(gb, perCall(() => { sink += lib.hash(text, { floatDigits: 6 }).length; })));
    if (sink === 42) log('sink');
    out[name] = {
      bytes: bytes.length, digest: hex,
      rawStagedGBps: staged, rawStringGBps: str, rawBytesGBps: byt, canonicalGBps: canon,
    };
  }
  out.stagedCall = M._p2psync_hash_staged ? '_p2psync_hash_staged (plain export)' : 'hashStaged (Embind, returns a string)';
  return out;
}

// ---------------------------------------------------------------------------------------------- memory
/** A toy game (positions + a rolling hash of every action) with ~1 KB JSON snapshots. */
function toyGame(actors) {
  const pad = 'x'.repeat(900);
  let frame = 0, h = 2166136261, pos = new Array(actors).fill(0);
  return {
    step(a) {
      for (let i = 0; i < actors; i++) {
        h = Math.imul(h ^ (a[i] + 31 * i), 16777619) >>> 0;
        const x = a[i] % 5;
        pos[i] += x === 1 ? 1 : x === 2 ? -1 : x === 3 ? 7 : x === 4 ? -7 : 0;
      }
      frame++;
    },
    getState() { return JSON.stringify({ frame, h, pad, pos }); },
    setState(text) { const s = JSON.parse(text); frame = s.frame; h = s.h; pos = s.pos; },
  };
}

async function memoryBench(lib, totalFrames) {
  const N = 2;
  // The simulator's peers (SessionPeer + driver) over the 'bad' profile, one endless episode.
  const world = new SimWorld({ lib, envs: [toyGame(N), toyGame(N)], profile: 'bad', seed: 7, fps: 60 });
  const engines = world.peers.map((p) => p.sp.engine);
  const tick = () => world.tick();
  const M = lib._module;
  const heapUsed = () => (typeof M._p2psync_heap_used === 'function' ? M._p2psync_heap_used() : null);
  const minFrame = () => Math.min(...engines.map((e) => e.frame));
  while (minFrame() < 10000) tick(); // warm-up
  const warm = lib.heapBytes();
  const warmUsed = heapUsed();
  const engineBytes = engines[0].memoryBytes();
  const checkpoints = [{ frames: minFrame(), heapBytes: warm, mallocInUse: warmUsed }];
  const step = Math.max(10000, Math.round(totalFrames / 10));
  const t0 = performance.now();
  let next = step;
  while (minFrame() < totalFrames) {
    tick();
    if (engines[0].frame >= next && engines[1].frame >= next) {
      checkpoints.push({ frames: next, heapBytes: lib.heapBytes(), mallocInUse: heapUsed() });
      log(`memory: ${next} frames, heap ${lib.heapBytes()} B, malloc in use ${heapUsed()} B`);
      next += step;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const end = lib.heapBytes();
  const endUsed = heapUsed();
  const m = engines[0].exportSessionMetrics();
  const healthEvents = engines.map((e) => e.exportSessionMetrics().quality?.fallback?.events?.length ?? 0);
  const c = {
    ticks: world.peers.reduce((a, p) => a + p.ticks, 0),
    rollbacks: world.peers.reduce((a, p) => a + p.sp.counters.rollbacks, 0),
    replayed: world.peers.reduce((a, p) => a + p.sp.counters.framesReplayed, 0),
    stalls: world.peers.reduce((a, p) => a + p.stallTicks, 0),
    waits: world.peers.reduce((a, p) => a + p.waitTicks, 0),
    desyncs: world.peers.reduce((a, p) => a + p.desyncs.length, 0),
    errors: world.peers.reduce((a, p) => a + p.errors.length, 0),
    p2p: world.netsim.counters.p2p.delivered,
    relay: world.netsim.counters.relay.delivered,
  };
  const p2pLost = world.netsim.counters.p2p.lost;
  world.destroy();
  return {
    profile: 'bad', players: N, frames: totalFrames,
    heapBytesAfterWarmup: warm, heapBytesAfter: end, growthBytes: end - warm,
    mallocInUseAfterWarmup: warmUsed, mallocInUseAfter: endUsed,
    mallocGrowthBytes: warmUsed === null ? null : endUsed - warmUsed,
    // malloc in use may settle at bounded high-water marks early on; "flat" = the heap never grew
    // and malloc in use did not change over the last 90% of the run
    mallocGrowthLast90pctBytes: warmUsed === null ? null : endUsed - checkpoints[Math.min(2, checkpoints.length - 1)].mallocInUse,
    flat: end === warm && (warmUsed === null || endUsed === checkpoints[Math.min(2, checkpoints.length - 1)].mallocInUse),
    engineMemoryBytes: engineBytes,
    checkpoints,
    session: {
      ticks: c.ticks, rollbacks: c.rollbacks, replayedFrames: c.replayed, stalls: c.stalls, waits: c.waits,
      desyncEvents: c.desyncs, errorEvents: c.errors, p2pDelivered: c.p2p, relayDelivered: c.relay,
      p2pLost, seconds: round(seconds),
      rollbacksEngine0: m.rollbacks?.count ?? undefined,
      // fallback/recovery records the engines keep (bounded by maxEvents): each one is a few
      // hundred bytes of malloc in use that stays
      healthEvents: healthEvents.reduce((a, b) => a + b, 0),
    },
  };
}

// ---------------------------------------------------------------------------------------------- size
function sizeBench() {
  const files = { wasm: 'build/wasm/p2psync.wasm', loader: 'build/wasm/p2psync.mjs', glue: 'web/p2psync.js' };
  const out = {};
  for (const [k, p] of Object.entries(files)) {
    const b = fs.readFileSync(`${ROOT}/${p}`);
    out[k] = { path: p, bytes: b.length, gzipBytes: zlib.gzipSync(b, { level: 9 }).length };
  }
  out.wasmPlusLoaderGzipBytes = out.wasm.gzipBytes + out.loader.gzipBytes;
  out.wasmPlusLoaderPlusGlueGzipBytes = out.wasmPlusLoaderGzipBytes + out.glue.gzipBytes;
  return out;
}

// ---------------------------------------------------------------------------------------------- pyodide
async function pyodideBench(lib) {
  const { createPyodideEnv } = await import('./envs/pyodide_env.js');
  const { loadPyodide } = await import('pyodide');
  const t0 = performance.now();
  const pyodide = await loadPyodide();
  const loadMs = performance.now() - t0;
  const N = 2;
  const envs = [];
  for (let i = 0; i < N; i++) envs.push(await createPyodideEnv({ pyodide, numPlayers: N, seed: 3 }));
  const FRAMES = opt.quick ? 300 : 600;
  const stateBytes = envs[0].getState().length;

  // Baseline: the same envs stepped with the same kind of actions, no sync.
  function baseline() {
    const r = [rng(90), rng(91)];
    const a = new Uint8Array(N);
    return timed(() => {
      for (let f = 0; f < FRAMES; f++) {
        for (let i = 0; i < N; i++) {
          for (let j = 0; j < N; j++) a[j] = r[j].below(5);
          envs[i].step(a);
        }
      }
    });
  }

  // Sync: the frame loop of the frame figures, with these envs: snapshots (getState), rollbacks
  // (setState + one batched replay), all through the driver.
  function synced(freezeP) {
    for (const env of envs) env.reset(3);
    const sim = new FrameSim(lib, { players: N, freezeP, config: { hashInterval: 5 }, envs });
    for (let f = 0; f < 60; f++) sim.step(); // warm-up
    const c0 = { ...sim.c };
    const t = timed(() => { for (let f = 0; f < FRAMES; f++) sim.step(); });
    const d = (k) => sim.c[k] - c0[k];
    const counts = { rollbacks: d('rollbacks'), replayed: d('replayed'), snapshots: d('snapshots'), desyncs: d('desyncs'), nonRun: d('nonRun') };
    sim.delete();
    return { t, counts };
  }

  const result = { pyodideVersion: pyodide.version, loadMs: round(loadMs), stateBytes, framesPerRun: FRAMES };
  // Breakdown: the per-call cost of the pieces a snapshot and a rollback are made of.
  {
    const e = new lib.SyncEngine({ numPlayers: N, localPlayerIndex: 0 });
    const text = envs[0].getState();
    const a = new Uint8Array(N);
    const each = (op) => repeat(opt.quick ? 3 : 5, 'us', () => ns(perCall(op, opt.quick ? 30 : 80))).median / 1000;
    result.perCallUs = {
      envStep: round(each(() => envs[0].step(a))),
      envGetState: round(each(() => envs[0].getState())),
      envSetState: round(each(() => envs[0].setState(text))),
      saveSnapshot: round(each(() => e.saveSnapshot(0, text))),
      hashState: round(each(() => lib.hash(text))),
    };
    e.delete();
    envs[0].reset(3);
  }
  for (const [name, freezeP] of [['steady', 0], ['late10pct', FREEZE_P_10PCT]]) {
    baseline(); synced(freezeP); // warm-up
    const base = [], sync = [], over = [], baseC = [], syncC = [], overC = [];
    let counts = null;
    const per = (ms) => (ms * 1000) / (FRAMES * N);
    for (let r = 0; r < (opt.quick ? 3 : 5); r++) { // interleaved, so load changes hit both
      const b = baseline();
      const s = synced(freezeP);
      counts = s.counts;
      base.push(per(b.ms)); baseC.push(per(b.cpuMs));
      sync.push(per(s.t.ms)); syncC.push(per(s.t.cpuMs));
      over.push(per(s.t.ms - b.ms)); overC.push(per(s.t.cpuMs - b.cpuMs));
    }
    result[name] = {
      overheadUs: stat(over, 'us', overC), baselineUsPerFrame: stat(base, 'us', baseC), syncedUsPerFrame: stat(sync, 'us', syncC),
      lastRun: {
        rollbacksPerFrame: round(counts.rollbacks / (FRAMES * N)), replayedFramesPerFrame: round(counts.replayed / (FRAMES * N)),
        snapshotsPerFrame: round(counts.snapshots / (FRAMES * N)), desyncEvents: counts.desyncs, nonRunFrames: counts.nonRun,
      },
    };
  }
  for (const env of envs) env.destroy();
  return result;
}

// ---------------------------------------------------------------------------------------------- ratios
/** The figures issue 12 sets goals on, as ratios of medians measured in this one run. */
function ratios(r) {
  const med = (x) => (x && typeof x.median === 'number' ? x.median : null);
  const div = (a, b) => (a !== null && b ? round(a / b) : undefined);
  const out = {};
  const w = med(r.frameUs?.steady2p), n = med(r.native?.frameUs?.steady2p), hs = med(r.frameUs?.steady2pHashSync);
  out.wasmOverNativeSteady2p = div(w, n);
  out.hashSyncOverSteady2p = div(hs, w);
  const c = med(r.hash?.['16KB']?.canonicalGBps);
  if (c !== null) out.canonical16KBMBps = round(c * 1000);
  return out;
}

// ---------------------------------------------------------------------------------------------- goals
function goals(r) {
  const g = [];
  const cmp = (v, op, t) => (op === '<=' ? v <= t : op === '>=' ? v >= t : v === t);
  // s: a stat ({median, min, cpu}) or a plain value
  const add = (figure, s, op, target, unit) => {
    if (s === undefined || s === null) return;
    const isStat = typeof s === 'object';
    const value = isStat ? s.median : s;
    const e = { figure, value, goal: `${op} ${target}${unit ? ' ' + unit : ''}`, met: cmp(value, op, target) };
    if (isStat) {
      e.best = op === '>=' ? s.max : s.min; // the least disturbed run
      e.metByBest = cmp(e.best, op, target);
      if (s.cpu !== undefined) { e.cpu = s.cpu; e.metByCpu = cmp(s.cpu, op, target); }
    }
    g.push(e);
  };
  const q = r.ratios || {};
  add('frameUs.steady2p WASM ÷ native (same run)', q.wasmOverNativeSteady2p, '<=', 2.5, '');
  add('frameUs.steady2pHashSync ÷ frameUs.steady2p', q.hashSyncOverSteady2p, '<=', 1.3, '');
  add('canonical hash, 16 KB, WASM', q.canonical16KBMBps, '>=', 100, 'MB/s');
  add('callsPerFrame (steady 2p)', r.callsPerFrame?.steady2p?.perFrame, '<=', 2, '');
  if (r.memory) {
    add(`memory: heap growth over ${r.memory.frames} frames`, r.memory.growthBytes, '==', 0, 'B');
    if (r.memory.mallocGrowthLast90pctBytes !== null) add('memory: malloc-in-use growth over the last 90% of the run', r.memory.mallocGrowthLast90pctBytes, '==', 0, 'B');
  }
  add('.wasm+loader gzip', r.wasmBytes ? round(r.wasmBytes.wasmPlusLoaderGzipBytes / 1024) : undefined, '<=', 120, 'KiB');
  return g;
}

// ---------------------------------------------------------------------------------------------- table
function table(r) {
  const rows = [];
  const S = (name, s, goal = '', note = '') => { if (s) rows.push([name, s.median, s.min, s.max, s.cpu ?? '', s.unit, goal, note]); };
  const V = (name, v, unit, goal = '', note = '') => { if (v !== undefined) rows.push([name, v, '', '', '', unit, goal, note]); };
  const f = r.frameUs;
  if (f) {
    S('frameUs.steady2p', f.steady2p, '', `${f.steady2p.packetsPerEngineFrame} pkt/frame`);
    S('frameUs.late10pct2p', f.late10pct2p, '',
      `late ${(100 * f.late10pct2p.lateInputFraction).toFixed(1)}%, ${f.late10pct2p.rollbacksPerFrame} rb/frame, ${f.late10pct2p.replayedFramesPerFrame} replayed/frame`);
    S('frameUs.steady4p', f.steady4p, '', `${f.steady4p.packetsPerEngineFrame} pkt/frame`);
    S('frameUs.steady2pHashSync', f.steady2pHashSync, '', 'hashInterval 5 (hash exchange on)');
  }
  const q = r.ratios;
  if (q) {
    V('ratio frameUs.steady2p WASM ÷ native', q.wasmOverNativeSteady2p, '×', '≤ 2.5');
    V('ratio steady2pHashSync ÷ steady2p', q.hashSyncOverSteady2p, '×', '≤ 1.3');
    V('canonical hash 16 KB (WASM)', q.canonical16KBMBps, 'MB/s', '≥ 100');
  }
  const c = r.callsPerFrame;
  if (c) {
    V('callsPerFrame.steady2p', c.steady2p.perFrame, 'calls', '≤ 2', Object.entries(c.steady2p.byName).filter(([k]) => !/receive/.test(k)).map(([k, v]) => `${k} ${v}`).join(', '));
    V('callsPerFrame.late10pct2p', c.late10pct2p.perFrame, 'calls', '', `+ ${c.late10pct2p.receivesPerFrame} receive/frame`);
  }
  if (r.codec) {
    S('codec.encodeNsPerPacket (JS API)', r.codec.encodeNsPerPacket, '', `INPUT x10, ${r.codec.packetBytes} B`);
    S('codec.decodeNsPerPacket (JS API)', r.codec.decodeNsPerPacket);
  }
  const n = r.native;
  if (n?.codec) {
    S('codec.encodeNsPerPacket (native)', n.codec.encodeNsPerPacket);
    S('codec.decodeNsPerPacket (native)', n.codec.decodeNsPerPacket);
  }
  for (const size of ['1KB', '16KB', '256KB']) {
    const h = r.hash?.[size];
    if (h) {
      S(`hash.${size}.rawStaged (copy excluded)`, h.rawStagedGBps, size === '16KB' ? '≥ 3' : '');
      S(`hash.${size}.rawString (copy incl.)`, h.rawStringGBps, '', 'lib.hash(text)');
      S(`hash.${size}.rawBytes (copy incl.)`, h.rawBytesGBps, '', 'lib.hash(Uint8Array)');
      S(`hash.${size}.canonical`, h.canonicalGBps, '', 'floatDigits 6');
    }
    const nh = n?.hash?.[size];
    if (nh) {
      S(`hash.${size}.raw (native)`, nh.rawGBps);
      S(`hash.${size}.canonical (native)`, nh.canonicalGBps);
    }
  }
  if (n?.frameUs) {
    S('frameUs.steady2p (native)', n.frameUs.steady2p);
    S('frameUs.late10pct2p (native)', n.frameUs.late10pct2p, '', `late ${(100 * n.frameUs.late10pct2p.lateInputFraction).toFixed(1)}%`);
    S('frameUs.steady4p (native)', n.frameUs.steady4p);
    S('frameUs.steady2pHashSync (native)', n.frameUs.steady2pHashSync);
  }
  const m = r.memory;
  if (m) {
    V('memory.heapBytes after warm-up', m.heapBytesAfterWarmup, 'B');
    V(`memory.heapBytes after ${m.frames} frames (bad)`, m.heapBytesAfter, 'B', 'flat', m.growthBytes === 0 ? 'no growth' : `GREW by ${m.growthBytes} B`);
    if (m.mallocInUseAfter !== null) {
      V('memory.mallocInUse after warm-up', m.mallocInUseAfterWarmup, 'B');
      V(`memory.mallocInUse after ${m.frames} frames`, m.mallocInUseAfter, 'B', 'flat',
        `${m.mallocGrowthBytes >= 0 ? '+' : ''}${m.mallocGrowthBytes} B since warm-up; ${m.mallocGrowthLast90pctBytes >= 0 ? '+' : ''}${m.mallocGrowthLast90pctBytes} B over the last 90%; ${m.session.healthEvents} fallback/recovery records kept`);
    }
    V('memory.engine.memoryBytes()', m.engineMemoryBytes, 'B');
  }
  const w = r.wasmBytes;
  if (w) {
    V('wasmBytes.wasm', w.wasm.bytes, 'B', '', `gzip -9 ${w.wasm.gzipBytes} B`);
    V('wasmBytes.loader (p2psync.mjs)', w.loader.bytes, 'B', '', `gzip -9 ${w.loader.gzipBytes} B`);
    V('wasmBytes.glue (web/p2psync.js)', w.glue.bytes, 'B', '', `gzip -9 ${w.glue.gzipBytes} B`);
    V('wasmBytes.wasm+loader gzip', w.wasmPlusLoaderGzipBytes, 'B', '≤ 120 KiB', `${(w.wasmPlusLoaderGzipBytes / 1024).toFixed(1)} KiB; +glue ${(w.wasmPlusLoaderPlusGlueGzipBytes / 1024).toFixed(1)} KiB`);
  }
  const p = r.pyodideOverheadUs;
  if (p) {
    if (p.perCallUs) {
      const c = p.perCallUs;
      V('pyodide per call: env.step', c.envStep, 'us', '', `getState ${c.envGetState} µs, setState ${c.envSetState} µs, engine.saveSnapshot ${c.saveSnapshot} µs (state ${p.stateBytes} B)`);
    }
    for (const k of ['steady', 'late10pct']) {
      const x = p[k];
      if (!x) continue;
      S(`pyodideOverheadUs.${k}`, x.overheadUs, '', `env alone ${x.baselineUsPerFrame.median} µs, synced ${x.syncedUsPerFrame.median} µs; ${x.lastRun.rollbacksPerFrame} rb/frame`);
    }
  }
  const fmt = (x) => (typeof x === 'number' ? (Math.abs(x) >= 1e5 ? String(x) : String(round(x))) : String(x));
  const head = ['figure', 'median', 'min', 'max', 'cpu', 'unit', 'goal', 'notes'];
  const all = [head, ...rows.map((row) => row.map(fmt))];
  const wcol = head.map((_, i) => Math.max(...all.map((row) => row[i].length)));
  const line = (row) => row.map((x, i) => (i >= 1 && i <= 4 ? x.padStart(wcol[i]) : x.padEnd(wcol[i]))).join('  ').trimEnd();
  const outLines = [line(head), wcol.map((x) => '-'.repeat(x)).join('  ')];
  for (const row of all.slice(1)) outLines.push(line(row));
  return outLines.join('\n');
}

export function render(r) {
  const h = r.host;
  const lines = [];
  lines.push(`p2psync benchmarks, ${r.date}`);
  lines.push(`host: ${h.cpu} (${h.cores} logical CPUs), Node ${h.node} (V8 ${h.v8}${h.nodeFlags ? ', ' + h.nodeFlags : ''}), ${h.platform}; ` +
    `load average ${h.loadavg.start.join(' ')} at start, ${(h.loadavg.end ?? []).join(' ')} at end`);
  lines.push(`each timed figure: median of ${RUNS} runs of wall time, min, max; cpu = median of the same runs in process CPU time`);
  lines.push('frameUs: µs per engine-frame (advance + the plan run by the driver + receive of the remote packets); see web/bench.mjs for definitions');
  lines.push('');
  lines.push(table(r));
  if (r.goals?.length) {
    lines.push('');
    lines.push('goals:');
    for (const g of r.goals) {
      let extra = '';
      if (g.best !== undefined) extra = `; best run ${g.best} ${g.metByBest ? 'meets' : 'misses'} it`;
      if (g.cpu !== undefined) extra += `; CPU-time median ${g.cpu} ${g.metByCpu ? 'meets' : 'misses'} it`;
      lines.push(`  ${g.met ? 'met   ' : 'MISSED'}  ${g.figure}: ${g.best !== undefined ? 'median ' : ''}${g.value} (goal ${g.goal})${extra}`);
    }
    const la = h.loadavg.start[0];
    if (la > h.cores) lines.push(`  note: the host was loaded (load average ${la} on ${h.cores} CPUs): wall-time medians include time spent descheduled.`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------- main
async function main() {
  parseArgs(process.argv.slice(2));
  const result = { date: new Date().toISOString().slice(0, 10), host: hostInfo(), quick: opt.quick };
  const lib = await loadP2PSync();
  result.hotPath = lib._module._p2psync_advance ? 'plain WASM exports (_p2psync_advance/_receive/_save_snapshot)' : 'Embind methods';
  const frames = opt.quick ? 5000 : 20000;
  if (want('frame')) {
    log('frame loops');
    // JIT warm-up of the whole frame path (JS and WASM) before the first measurement
    for (const freezeP of [0, FREEZE_P_10PCT]) {
      const sim = new FrameSim(lib, { players: 2, freezeP });
      warm(sim, opt.quick ? 500 : 1500);
      sim.delete();
    }
    result.frameUs = {
      steady2p: frameBench(lib, { players: 2, frames }),
      late10pct2p: frameBench(lib, { players: 2, freezeP: FREEZE_P_10PCT, frames }),
      steady4p: frameBench(lib, { players: 4, frames: frames / 2 }),
      steady2pHashSync: frameBench(lib, { players: 2, config: { hashInterval: 5 }, frames }),
    };
  }
  if (want('calls')) {
    log('calls per frame');
    const counting = await countingLib();
    result.callsPerFrame = {
      steady2p: callsBench(counting, { players: 2, frames: 6000 }),
      late10pct2p: callsBench(counting, { players: 2, freezeP: FREEZE_P_10PCT, frames: 6000 }),
      steady4p: callsBench(counting, { players: 4, frames: 3000 }),
    };
  }
  if (want('codec')) { log('codec'); result.codec = codecBench(lib); }
  if (want('hash')) { log('hash'); result.hash = hashBench(lib); }
  if (want('size')) result.wasmBytes = sizeBench();
  if (want('pyodide')) {
    log('pyodide (loading Pyodide)');
    try {
      result.pyodideOverheadUs = await pyodideBench(lib);
    } catch (e) {
      result.pyodideOverheadUs = { error: String(e && e.message || e) };
      log('pyodide skipped:', e && e.message);
    }
  }
  if (want('memory')) {
    const mf = opt.memoryFrames ?? (opt.quick ? 100000 : 1000000);
    log(`memory (${mf} frames of the 'bad' profile)`);
    result.memory = await memoryBench(lib, mf);
  }
  if (opt.native) {
    try {
      result.native = JSON.parse(fs.readFileSync(opt.native, 'utf8')).native;
    } catch (e) {
      log('native results unreadable:', e.message);
    }
  }
  result.host.loadavg.end = os.loadavg().map((x) => round(x));
  result.ratios = ratios(result);
  result.goals = goals(result);
  if (result.pyodideOverheadUs?.error) result.pyodideOverheadUs = { error: result.pyodideOverheadUs.error };
  const json = JSON.stringify(result, null, 2);
  if (opt.json && !opt.jsonFile) {
    process.stdout.write(json + '\n');
  } else {
    if (opt.jsonFile) fs.writeFileSync(opt.jsonFile, json + '\n');
    console.log(render(result));
  }
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
