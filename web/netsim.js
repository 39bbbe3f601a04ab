// netsim.js — deterministic network simulator with virtual time (Node and browser).
//
// Model (all times in virtual milliseconds; nothing here reads a real clock or Math.random):
//  * Every ordered pair of peers (a→b) has two independent paths, each with its own PRNG stream
//    derived from (seed, a, b, path), so traffic on one link never perturbs another link.
//  * 'p2p'  (RTCDataChannel, unordered + unreliable):
//      one-way latency = rttMs/2 + U(-jitterMs/2, +jitterMs/2)          (uniform jitter, clamped ≥ 0)
//      loss:       `loss` is the LONG-RUN AVERAGE loss probability. Without `burst` each packet is
//                  lost independently with p = loss. With `burst` a Gilbert–Elliott two-state chain
//                  (state advanced once per packet sent on that link) is used: in 'bad' the loss
//                  probability is burst.lossBad, in 'good' it is chosen so the stationary average
//                  equals `loss` (clamped at 0 — see expectedLoss()).
//      reorder:    with p = reorder a packet gets an extra delay of reorderDelayMs·U(0.5, 1.5)
//                  (default max(10, rttMs/2)), so later packets overtake it.
//      duplicate:  with p = duplicate a second copy is delivered duplicateDelayMs·U(0, 1) later
//                  (default max(5, jitterMs/2)) — the copy is never lost.
//  * 'relay' (Socket.IO through a server, reliable + ORDERED per pair):
//      relay RTT = P2P RTT + relayExtraRttMs (default 40), i.e. one-way = (rttMs + relayExtraRttMs)/2
//      + U(-relayJitterMs/2, +relayJitterMs/2) (default relayJitterMs = jitterMs/4); never lost, and
//      deliverAt = max(own time, previous delivery time on that pair) so it never reorders
//      (ties are broken by insertion sequence).
//  * Event queue: binary min-heap keyed by (deliverAt, insertion seq) → fully reproducible order.
//  * Faults: cutP2P([a, b]) closes P2P channels (all, or the pair a↔b): queued P2P packets are
//    dropped and further P2P sends return false. restoreP2P([a, b]) reopens. disconnectPeer(p)
//    isolates a peer on both paths; reconnectPeer(p) undoes it.

// ---------------------------------------------------------------------------------------------
// PRNG

/** FNV-1a 32-bit hash of a string (used to turn string seeds into numbers). */
function hashString(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function seedToU32(seed) {
  if (typeof seed === 'string') return hashString(seed);
  if (typeof seed === 'bigint') return Number(seed & 0xffffffffn);
  const n = Number(seed ?? 0);
  if (!Number.isFinite(n)) throw new TypeError(`bad seed: ${seed}`);
  // fold in the high part of large integers so 2^32+1 and 1 differ
  return ((n >>> 0) ^ Math.floor(n / 4294967296)) >>> 0;
}

/** 32-bit mixer (murmur3 finalizer) for deriving independent stream seeds. */
function mix32(x) {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x85ebca6b) >>> 0;
  x = (x ^ (x >>> 13)) >>> 0;
  x = Math.imul(x, 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * createRng(seed) → rng: a mulberry32 generator. `rng()` / `rng.next()` return a float in [0, 1);
 * `rng.u32()` a uint32; `rng.int(n)` an integer in [0, n); `rng.range(lo, hi)` a float in [lo, hi);
 * `rng.chance(p)` a boolean; `rng.state` (get/set) the uint32 internal state.
 * seed: number | string | bigint.
 */
export function createRng(seed = 0) {
  let a = seedToU32(seed);
  const u32 = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
  const rng = () => u32() / 4294967296;
  rng.next = rng;
  rng.u32 = u32;
  rng.int = (n) => Math.floor(rng() * n);
  rng.range = (lo, hi) => lo + (hi - lo) * rng();
  rng.chance = (p) => p > 0 && rng() < p;
  Object.defineProperty(rng, 'state', { get: () => a >>> 0, set: (v) => { a = v | 0; } });
  return rng;
}
export const mulberry32 = createRng;

// ---------------------------------------------------------------------------------------------
// Profiles

export const DEFAULT_BURST = Object.freeze({
  enterBad: 0.02, // P(good → bad) per packet
  exitBad: 0.1,   // P(bad → good) per packet (mean burst length 1/exitBad = 10 packets)
  lossBad: 0.95,  // loss probability while in 'bad'
});

const BASE = { relayExtraRttMs: 40, relayJitterMs: null, reorderDelayMs: null, duplicateDelayMs: null };

/** Network profiles: RTT / jitter / loss / reorder / duplicate / burst. */
export const PROFILES = Object.freeze({
  lan:     Object.freeze({ ...BASE, name: 'lan',     rttMs: 2,   jitterMs: 0,   loss: 0,    reorder: 0,    duplicate: 0,    burst: null }),
  wifi:    Object.freeze({ ...BASE, name: 'wifi',    rttMs: 50,  jitterMs: 20,  loss: 0.01, reorder: 0,    duplicate: 0,    burst: null }),
  mobile:  Object.freeze({ ...BASE, name: 'mobile',  rttMs: 100, jitterMs: 30,  loss: 0.05, reorder: 0,    duplicate: 0,    burst: null }),
  bad:     Object.freeze({ ...BASE, name: 'bad',     rttMs: 300, jitterMs: 100, loss: 0.15, reorder: 0.05, duplicate: 0.02, burst: null }),
  hostile: Object.freeze({ ...BASE, name: 'hostile', rttMs: 500, jitterMs: 250, loss: 0.5,  reorder: 0.2,  duplicate: 0.1,  burst: DEFAULT_BURST }),
});

const ALIASES = {
  rtt: 'rttMs', jitter: 'jitterMs', dup: 'duplicate', duplication: 'duplicate', reordering: 'reorder',
  relayExtraRtt: 'relayExtraRttMs', relayJitter: 'relayJitterMs', reorderDelay: 'reorderDelayMs',
  duplicateDelay: 'duplicateDelayMs', bursts: 'burst',
};
const PROB_FIELDS = new Set(['loss', 'reorder', 'duplicate']);
const MS_FIELDS = new Set(['rttMs', 'jitterMs', 'relayExtraRttMs', 'relayJitterMs', 'reorderDelayMs', 'duplicateDelayMs']);

function parseNumber(field, v) {
  let n;
  if (typeof v === 'string') {
    const s = v.trim();
    n = s.endsWith('%') ? Number(s.slice(0, -1)) / 100 : Number(s.replace(/ms$/, ''));
  } else n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`netsim: bad value for ${field}: ${v}`);
  if (PROB_FIELDS.has(field) && n > 1) throw new RangeError(`netsim: ${field} must be in [0, 1]: ${v}`);
  return n;
}

function parseBurst(v) {
  if (v === null || v === undefined || v === false || v === 0) return null;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (['', 'none', 'off', 'false', 'no', '0'].includes(s)) return null;
    if (['on', 'true', 'yes', 'default', 'bursts', '1'].includes(s)) return { ...DEFAULT_BURST };
    if (s.startsWith('{')) return parseBurst(JSON.parse(v));
    throw new RangeError(`netsim: bad burst value: ${v}`);
  }
  if (v === true) return { ...DEFAULT_BURST };
  if (typeof v === 'object') {
    const b = { ...DEFAULT_BURST };
    for (const k of Object.keys(v)) {
      if (!(k in DEFAULT_BURST)) throw new RangeError(`netsim: unknown burst field: ${k}`);
      const n = Number(v[k]);
      if (!Number.isFinite(n) || n < 0 || n > 1) throw new RangeError(`netsim: burst.${k} must be in [0, 1]`);
      b[k] = n;
    }
    if (b.exitBad <= 0) throw new RangeError('netsim: burst.exitBad must be > 0');
    return b;
  }
  throw new RangeError(`netsim: bad burst value: ${v}`);
}

/**
 * resolveProfile(name | profileObject, overrides?) → a plain, fully-populated profile object.
 * overrides may set any of rttMs, jitterMs, loss, reorder, duplicate, burst, relayExtraRttMs,
 * relayJitterMs, reorderDelayMs, duplicateDelayMs (aliases: rtt, jitter, dup, duplication, ...).
 * Values may be strings as they come from flags ("5%", "0.05", "120ms"); burst: none|on|JSON|object.
 * Undefined override values are ignored.
 */
export function resolveProfile(name = 'lan', overrides = {}) {
  let base;
  if (typeof name === 'string') {
    base = PROFILES[name];
    if (!base) throw new RangeError(`netsim: unknown profile '${name}' (known: ${Object.keys(PROFILES).join(', ')})`);
  } else if (name && typeof name === 'object') {
    base = { ...PROFILES.lan, name: 'custom', ...name };
  } else throw new TypeError('netsim: profile must be a name or an object');
  const p = { ...base, burst: base.burst ? { ...base.burst } : null };
  for (const [k0, v] of Object.entries(overrides || {})) {
    if (v === undefined) continue;
    const k = ALIASES[k0] || k0;
    if (k === 'burst') p.burst = parseBurst(v);
    else if (k === 'name') p.name = String(v);
    else if (PROB_FIELDS.has(k) || MS_FIELDS.has(k)) p[k] = (v === null && (k === 'relayJitterMs' || k === 'reorderDelayMs' || k === 'duplicateDelayMs')) ? null : parseNumber(k, v);
    else throw new RangeError(`netsim: unknown profile field '${k0}'`);
  }
  if (p.burst) p.burst = parseBurst(p.burst);
  if (p.relayJitterMs == null) p.relayJitterMs = p.jitterMs / 4;
  if (p.reorderDelayMs == null) p.reorderDelayMs = Math.max(10, p.rttMs / 2);
  if (p.duplicateDelayMs == null) p.duplicateDelayMs = Math.max(5, p.jitterMs / 2);
  return p;
}

/**
 * Loss probabilities actually used: { good, bad, average, badFraction }.
 * Without burst: good = bad = average = loss.
 */
export function lossModel(profile) {
  const p = profile;
  if (!p.burst) return { good: p.loss, bad: p.loss, average: p.loss, badFraction: 0 };
  const { enterBad, exitBad, lossBad } = p.burst;
  const piB = enterBad + exitBad > 0 ? enterBad / (enterBad + exitBad) : 0;
  const piG = 1 - piB;
  let good = piG > 0 ? (p.loss - piB * lossBad) / piG : 0;
  good = Math.min(1, Math.max(0, good));
  return { good, bad: lossBad, average: piG * good + piB * lossBad, badFraction: piB };
}

/** Expected long-run P2P loss rate of a profile (equals profile.loss unless clamping occurred). */
export function expectedLoss(profile) {
  return lossModel(profile).average;
}

// ---------------------------------------------------------------------------------------------
// Binary heap of events keyed by (at, seq)

function less(x, y) {
  return x.at < y.at || (x.at === y.at && x.seq < y.seq);
}

class EventHeap {
  constructor() { this.a = []; }
  get size() { return this.a.length; }
  peek() { return this.a[0]; }
  push(e) {
    const a = this.a;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop() {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0) {
      a[0] = last;
      this._down(0);
    }
    return top;
  }
  _down(i) {
    const a = this.a, n = a.length;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < n && less(a[l], a[m])) m = l;
      if (r < n && less(a[r], a[m])) m = r;
      if (m === i) return;
      [a[i], a[m]] = [a[m], a[i]];
      i = m;
    }
  }
  /** Remove every event for which pred(e) is true; returns the removed events. */
  removeWhere(pred) {
    const keep = [], removed = [];
    for (const e of this.a) (pred(e) ? removed : keep).push(e);
    if (removed.length) {
      this.a = keep;
      for (let i = (keep.length >> 1) - 1; i >= 0; i--) this._down(i);
    }
    return removed;
  }
}

// ---------------------------------------------------------------------------------------------
// Payload copying

function copyPayload(p) {
  if (p === null || p === undefined) return p;
  if (typeof p !== 'object') return p; // strings, numbers, booleans are immutable
  if (p instanceof Uint8Array) return p.slice();
  if (ArrayBuffer.isView(p)) return p.slice();
  if (p instanceof ArrayBuffer) return p.slice(0);
  if (typeof structuredClone === 'function') return structuredClone(p);
  return JSON.parse(JSON.stringify(p));
}

function payloadBytes(p) {
  if (p === null || p === undefined) return 0;
  if (typeof p === 'string') return p.length;
  if (ArrayBuffer.isView(p) || p instanceof ArrayBuffer) return p.byteLength;
  try { return JSON.stringify(p).length; } catch { return 0; }
}

function newCounters() {
  return {
    sent: 0,        // send() calls accepted (one per packet, copies not counted)
    delivered: 0,   // handler invocations (duplicate copies included)
    lost: 0,        // lost by the loss / burst model
    duplicated: 0,  // extra copies scheduled
    reordered: 0,   // packets given an extra reorder delay
    outOfOrder: 0,  // deliveries whose send sequence is below an already delivered one on the link
    dropped: 0,     // queued packets discarded by cutP2P / disconnectPeer
    refused: 0,     // send() calls refused (channel closed / peer disconnected) — return false
    bytesSent: 0,
    bytesDelivered: 0,
  };
}

const PATHS = ['p2p', 'relay'];

// ---------------------------------------------------------------------------------------------

/**
 * new NetSim({ seed = 1, numPeers = 2, profile = 'lan', overrides = {}, startMs = 0 })
 * Peers are 0 .. numPeers-1.
 */
export class NetSim {
  constructor({ seed = 1, numPeers = 2, profile = 'lan', overrides = {}, startMs = 0 } = {}) {
    if (!Number.isInteger(numPeers) || numPeers < 1) throw new RangeError('netsim: numPeers must be a positive integer');
    this.seed = seed;
    this.numPeers = numPeers;
    this.profile = resolveProfile(profile, overrides);
    this.loss = lossModel(this.profile);
    this.now = startMs;
    this._seq = 0;
    this._heap = new EventHeap();
    this._p2pOpen = new Uint8Array(numPeers * numPeers).fill(1);
    this._peerUp = new Uint8Array(numPeers).fill(1);
    /** optional callback (a, b, open, nowMs) fired for each unordered pair whose P2P state changes */
    this.onChannelChange = null;
    const base = seedToU32(seed);
    this._links = [];
    for (let a = 0; a < numPeers; a++) {
      for (let b = 0; b < numPeers; b++) {
        for (let k = 0; k < 2; k++) {
          const s = mix32(base ^ mix32(((a * 64 + b) * 2 + k + 1) * 0x9e3779b1));
          this._links.push({
            rng: createRng(s),
            bad: false,            // Gilbert–Elliott state (p2p only)
            sendSeq: 0,            // per-link send sequence
            maxDeliveredSeq: -1,   // for outOfOrder accounting
            lastDeliverAt: -Infinity, // relay ordering
            counters: newCounters(),
          });
        }
      }
    }
    this.counters = { p2p: newCounters(), relay: newCounters() };
  }

  _link(from, to, path) {
    return this._links[(from * this.numPeers + to) * 2 + (path === 'relay' ? 1 : 0)];
  }

  _checkPeer(p, what) {
    if (!Number.isInteger(p) || p < 0 || p >= this.numPeers) throw new RangeError(`netsim: bad ${what} peer ${p}`);
  }

  /** Whether the P2P channel between a and b is open (symmetric). */
  isP2POpen(a, b) {
    this._checkPeer(a, 'a'); this._checkPeer(b, 'b');
    return a !== b && this._p2pOpen[a * this.numPeers + b] === 1 && this._peerUp[a] === 1 && this._peerUp[b] === 1;
  }

  /** Whether peer p is connected (not isolated by disconnectPeer). */
  isPeerConnected(p) { this._checkPeer(p, 'p'); return this._peerUp[p] === 1; }

  /**
   * send(from, to, path, payload) → boolean (true = accepted; a P2P packet may still be lost).
   * to = -1 sends to every other peer (true if any accepted). The payload is copied at send time.
   */
  send(from, to, path, payload) {
    if (to === -1 || to === 'all') {
      let any = false;
      for (let t = 0; t < this.numPeers; t++) if (t !== from) any = this.send(from, t, path, payload) || any;
      return any;
    }
    this._checkPeer(from, 'from'); this._checkPeer(to, 'to');
    if (from === to) throw new RangeError('netsim: cannot send to self');
    if (path !== 'p2p' && path !== 'relay') throw new RangeError(`netsim: bad path '${path}'`);
    const link = this._link(from, to, path);
    const total = this.counters[path];
    if (!this._peerUp[from] || !this._peerUp[to] || (path === 'p2p' && !this._p2pOpen[from * this.numPeers + to])) {
      link.counters.refused++; total.refused++;
      return false;
    }
    const p = this.profile, rng = link.rng;
    const bytes = payloadBytes(payload);
    const seq = link.sendSeq++;
    link.counters.sent++; total.sent++;
    link.counters.bytesSent += bytes; total.bytesSent += bytes;

    if (path === 'relay') {
      const oneWay = (p.rttMs + p.relayExtraRttMs) / 2 + (p.relayJitterMs > 0 ? (rng() - 0.5) * p.relayJitterMs : 0);
      let at = this.now + Math.max(0, oneWay);
      if (at < link.lastDeliverAt) at = link.lastDeliverAt;
      link.lastDeliverAt = at;
      this._push(at, from, to, path, copyPayload(payload), seq, bytes);
      return true;
    }

    // P2P: fixed number of draws per packet keeps streams aligned regardless of outcomes.
    const rState = rng(), rLoss = rng(), rJit = rng(), rReo = rng(), rReoD = rng(), rDup = rng(), rDupD = rng();
    let lossP = this.loss.good;
    if (p.burst) {
      link.bad = link.bad ? !(rState < p.burst.exitBad) : rState < p.burst.enterBad;
      lossP = link.bad ? this.loss.bad : this.loss.good;
    }
    if (lossP > 0 && rLoss < lossP) {
      link.counters.lost++; total.lost++;
      return true;
    }
    let delay = p.rttMs / 2 + (p.jitterMs > 0 ? (rJit - 0.5) * p.jitterMs : 0);
    if (delay < 0) delay = 0;
    if (p.reorder > 0 && rReo < p.reorder) {
      delay += p.reorderDelayMs * (0.5 + rReoD);
      link.counters.reordered++; total.reordered++;
    }
    const at = this.now + delay;
    const copy = copyPayload(payload);
    this._push(at, from, to, path, copy, seq, bytes);
    if (p.duplicate > 0 && rDup < p.duplicate) {
      link.counters.duplicated++; total.duplicated++;
      this._push(at + p.duplicateDelayMs * rDupD, from, to, path, copyPayload(copy), seq, bytes);
    }
    return true;
  }

  _push(at, from, to, path, payload, linkSeq, bytes) {
    this._heap.push({ at, seq: this._seq++, from, to, path, payload, linkSeq, bytes });
  }

  /** Delivery time of the next queued event, or Infinity. */
  nextEventTime() { return this._heap.size ? this._heap.peek().at : Infinity; }

  /** Number of queued deliveries. */
  get pending() { return this._heap.size; }

  /**
   * advanceTo(t, handler) — deliver every event with deliverAt ≤ t in (deliverAt, seq) order by calling
   * handler(to, from, path, payload, deliverAtMs). While a handler runs, `now` equals that event's
   * time, so messages it sends are timestamped then (and delivered in this same call if due ≤ t).
   * Finally now = max(now, t). Returns the number of deliveries.
   */
  advanceTo(t, handler) {
    if (typeof t !== 'number' || Number.isNaN(t)) throw new TypeError('netsim: advanceTo needs a time');
    let n = 0;
    const heap = this._heap;
    while (heap.size && heap.peek().at <= t) {
      const e = heap.pop();
      if (e.at > this.now) this.now = e.at;
      const link = this._link(e.from, e.to, e.path);
      const total = this.counters[e.path];
      link.counters.delivered++; total.delivered++;
      link.counters.bytesDelivered += e.bytes; total.bytesDelivered += e.bytes;
      if (e.linkSeq < link.maxDeliveredSeq) { link.counters.outOfOrder++; total.outOfOrder++; }
      else link.maxDeliveredSeq = e.linkSeq;
      n++;
      if (handler) handler(e.to, e.from, e.path, e.payload, e.at);
    }
    if (t > this.now) this.now = t;
    return n;
  }

  /** Alias of advanceTo(now, handler). */
  deliverDue(now, handler) { return this.advanceTo(now, handler); }

  /** Advance by dt milliseconds. */
  advanceBy(dt, handler) { return this.advanceTo(this.now + dt, handler); }

  _dropWhere(pred) {
    const removed = this._heap.removeWhere(pred);
    for (const e of removed) {
      this._link(e.from, e.to, e.path).counters.dropped++;
      this.counters[e.path].dropped++;
    }
    return removed.length;
  }

  _pairs(a, b) {
    if (a === undefined && b === undefined) {
      const out = [];
      for (let i = 0; i < this.numPeers; i++) for (let j = i + 1; j < this.numPeers; j++) out.push([i, j]);
      return out;
    }
    this._checkPeer(a, 'a'); this._checkPeer(b, 'b');
    if (a === b) throw new RangeError('netsim: a pair needs two distinct peers');
    return [[Math.min(a, b), Math.max(a, b)]];
  }

  _setP2P(a, b, open) {
    const changed = [];
    const N = this.numPeers;
    for (const [i, j] of this._pairs(a, b)) {
      const was = this._p2pOpen[i * N + j] === 1;
      this._p2pOpen[i * N + j] = this._p2pOpen[j * N + i] = open ? 1 : 0;
      if (was !== open) changed.push([i, j]);
    }
    return changed;
  }

  /**
   * cutP2P() closes every P2P channel; cutP2P(a, b) only the channel a↔b. Queued P2P packets on the
   * affected pairs are dropped (counted in `dropped`). Returns the number of packets dropped.
   */
  cutP2P(a, b) {
    const changed = this._setP2P(a, b, false);
    const N = this.numPeers;
    const dropped = this._dropWhere((e) => e.path === 'p2p' && !this._p2pOpen[e.from * N + e.to]);
    if (this.onChannelChange) for (const [i, j] of changed) this.onChannelChange(i, j, false, this.now);
    return dropped;
  }

  /** restoreP2P() reopens every P2P channel; restoreP2P(a, b) only a↔b. Returns the pairs reopened. */
  restoreP2P(a, b) {
    const changed = this._setP2P(a, b, true);
    for (const [i, j] of changed) {
      // a fresh channel starts in the 'good' burst state
      this._link(i, j, 'p2p').bad = false;
      this._link(j, i, 'p2p').bad = false;
    }
    if (this.onChannelChange) for (const [i, j] of changed) this.onChannelChange(i, j, true, this.now);
    return changed;
  }

  /** Isolate peer p on both paths: queued messages to/from p are dropped, new sends refused. */
  disconnectPeer(p) {
    this._checkPeer(p, 'p');
    this._peerUp[p] = 0;
    return this._dropWhere((e) => e.from === p || e.to === p);
  }

  /** Undo disconnectPeer(p). */
  reconnectPeer(p) {
    this._checkPeer(p, 'p');
    this._peerUp[p] = 1;
  }

  /** Counters of one directed link (copy). */
  linkStats(from, to, path) {
    this._checkPeer(from, 'from'); this._checkPeer(to, 'to');
    return { ...this._link(from, to, path).counters };
  }

  /** Copy of the per-path totals, with the resolved profile: { profile, now, p2p: {...}, relay: {...} }. */
  stats() {
    return {
      profile: { ...this.profile, burst: this.profile.burst ? { ...this.profile.burst } : null },
      now: this.now,
      p2p: { ...this.counters.p2p },
      relay: { ...this.counters.relay },
    };
  }
}

export { PATHS };
export default NetSim;
