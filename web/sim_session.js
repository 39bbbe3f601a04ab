// sim_session.js — run a multi-peer p2psync session in ONE process over the NetSim (virtual time),
// every peer running the real .wasm engine (web/p2psync.js) and its own env.
//
//   import { runSession } from './web/sim_session.js';
//   const r = await runSession({ players: 2, profile: 'wifi', frames: 900, seed: 1 });
//   r.healthy, r.actionLogsIdentical, r.finalStateHashes, ...
//
// Model
//  * Virtual clock only (nothing reads a real clock or Math.random; the result is a pure function
//    of the options). Peer i ticks every 1000/fps ms starting at a seeded phase offset in
//    [0, 1000/fps), so peers are not lockstep. The tick with the earliest time runs next (ties:
//    lower index). Before a tick at time t, every network message due at or before t is delivered
//    (NetSim.advanceTo), each at its own delivery time.
//  * Each tick is stepPeer(peer): exactly what a page's step() does (see there). A tick whose plan
//    is RUN executes one local frame; STALL / WAIT ticks execute none.
//  * Delivery into the engines: P2P bytes -> engine.receive(bytes, from, 'p2p', t). Relay events
//    as the reference server relays them (it renames pyodide_player_action to
//    pyodide_other_player_action and attaches `from` = sender index):
//      pyodide_player_action -> engine.receiveRelayInput(indexOf(player_id), frame_number, action, t, from)
//      p2p_state_sync        -> engine.receiveRelayStateSync({...data, from}, from, t)
//      p2psync_packet        -> engine.receive(bytes, from, 'relay', t)
//    Messages an engine produces while receiving (PONG, INPUT_RESPONSE, END/READY answers) come
//    through engine.onOutgoing and are sent at once.
//  * Faults (triggered by local frame counts, checked before each tick):
//      cutP2PAt F       once EVERY peer has executed >= F frames: netsim.cutP2P(); every engine gets
//                       onChannelClosed(other) for every other peer (so every engine's fallback
//                       frame is >= F).
//      restoreP2PAt F   likewise: netsim.restoreP2P() + onChannelOpen.
//      stallPeer {peer, ms, atFrame}  when that peer has executed atFrame frames it does not tick
//                       for `ms` virtual ms (messages still arrive into its engine).
//      corruptAt F      on corruptPeer (default 1): env.corrupt() right after stepping frame F, in
//                       normal steps AND in replays of frame F, so that peer's timeline is
//                       consistently different from snapshot frame F+1 on. The desync is expected
//                       at the first hash frame h > F (h % hashInterval == 0; 405 for F = 400).
//  * End: the session stops once every peer has executed `frames` frames (peers that get there
//    first keep playing; time sync / the prediction limit keep them close). No drain phase.
//
// Checks
//  * Action logs: after every tick the runner appends the peer's newly confirmed frames
//    (engine.actionLog(from, confirmedFrame), confirmed frames only) to a per-peer log, so logs
//    longer than the engine's input ring can be compared. At the end the logs are compared over
//    frames 0 .. min(confirmedFrame over peers).
//  * Final state hashes: the common frame is the newest frame H <= min(confirmedFrame) + 1 for which
//    EVERY peer's engine still holds a snapshot (engine.snapshotText(H)); finalStateHashes[i] =
//    lib.hash(that text) — the hash of peer i's env state before stepping frame H (all inputs of
//    frames < H are confirmed on every peer, so those snapshots are final).
//  * healthy = no timeout && logs identical && (normal run: no desync and equal final hashes;
//    corruptAt: every peer reported the desync at the expected frame; syncTest + nondeterministic:
//    nondeterminism was flagged). See `verdict.reasons` for what failed.
//
// Result (JSON-serialisable; `scripts/demo --json` prints it):
//   players, frames, fps, profile, seed, env, healthy, verdict {healthy, mode, reasons[],
//   expectedDesyncFrame, desyncDetectedByPeer, finalHashesEqual, timedOut}, actionLogsIdentical,
//   comparedFrames, firstLogMismatch, actionLogHashes[], finalStateFrame, finalStateHashes[],
//   desyncs, desyncEvents[] ({...engine event, peer: reporting peer, remotePeer}),
//   rollbacks {count, maxFrames, p99Frames, framesReplayed, perPeer[]} (from the engines'
//   'rollback' events, i.e. misprediction rollbacks; forced sync-test rollbacks are not counted),
//   stalls / waits (STALL / WAIT ticks summed over peers), p2pRatio (inputs first received by P2P
//   / all first receptions), p2p[] (engine.p2pMetrics per peer), fallback[] {peer, remotePeer,
//   frame, reason}, nondeterminism[], faults[] (each with every peer's framesRun and p2pMetrics at
//   that moment), errors[], episodeSummaries[], rewards[], framesRun[], finalFrames[],
//   confirmedFrames[], verifiedFrames[], ticks[], hashBroadcasts[], received[] (receive results
//   by path/event), network (netsim.stats()), virtualMs, wallMs, trafficDump, perPeer[]
//   (engine.exportSessionMetrics()).

import { NetSim, resolveProfile, createRng } from './netsim.js';
import { createGridGame } from './envs/grid_game.js';

const NOOP = () => {};

function u32(x) { return x >>> 0; }
function mixSeed(seed, k) {
  // Derive an independent uint32 stream seed from (seed, k).
  const r = createRng(`${typeof seed === 'string' ? seed : String(seed)}#${k}`);
  return r.u32();
}

/** Percentile (nearest-rank) of an unsorted numeric array; null when empty. */
function percentile(values, p) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1];
}

function bytesEqual(a, b, n) {
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Growable byte log of confirmed actions. */
class ByteLog {
  constructor() { this.buf = new Uint8Array(4096); this.length = 0; }
  append(bytes) {
    if (this.length + bytes.length > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.length + bytes.length) cap *= 2;
      const nb = new Uint8Array(cap);
      nb.set(this.buf.subarray(0, this.length));
      this.buf = nb;
    }
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }
  view(n = this.length) { return this.buf.subarray(0, Math.min(n, this.length)); }
}

async function loadLib(opts) {
  if (opts.lib) return opts.lib;
  const { loadP2PSync } = await import('./p2psync.js');
  return loadP2PSync(opts.loadOptions || {});
}

async function loadPyodideInstance(opts) {
  if (opts.pyodide) return opts.pyodide;
  const { loadPyodide } = await import('pyodide');
  return loadPyodide();
}

function normalizeOptions(o) {
  const players = o.players ?? 2;
  if (!Number.isInteger(players) || players < 2 || players > 4) throw new RangeError('runSession: players must be 2..4');
  const frames = o.frames ?? 900;
  if (!Number.isInteger(frames) || frames < 1) throw new RangeError('runSession: frames must be a positive integer');
  const fps = o.fps ?? 30;
  if (!(fps > 0 && fps <= 1000)) throw new RangeError('runSession: fps must be in (0, 1000]');
  const env = o.env ?? 'js';
  if (env !== 'js' && env !== 'pyodide') throw new RangeError("runSession: env must be 'js' or 'pyodide'");
  if (o.nondeterministic && env !== 'pyodide') throw new RangeError('runSession: nondeterministic needs env pyodide');
  const corruptPeer = o.corruptPeer ?? 1;
  if (o.corruptAt != null && (!Number.isInteger(corruptPeer) || corruptPeer < 0 || corruptPeer >= players)) {
    throw new RangeError('runSession: corruptPeer out of range');
  }
  if (o.stallPeer) {
    const { peer, ms, atFrame } = o.stallPeer;
    if (!Number.isInteger(peer) || peer < 0 || peer >= players) throw new RangeError('runSession: stallPeer.peer out of range');
    if (!(ms >= 0 && ms <= 600000) || !Number.isInteger(atFrame) || atFrame < 0) throw new RangeError('runSession: bad stallPeer (ms must be 0..600000)');
  }
  const syncTest = o.syncTest == null || o.syncTest === 0 || o.syncTest === false ? 0 : Number(o.syncTest);
  if (!Number.isInteger(syncTest) || syncTest < 0) throw new RangeError('runSession: syncTest must be a non-negative integer');
  return {
    players, frames, fps, env, corruptPeer, syncTest,
    profile: o.profile ?? 'wifi',
    overrides: o.overrides ?? {},
    seed: o.seed ?? 1,
    inputDelay: o.inputDelay,
    cutP2PAt: o.cutP2PAt ?? null,
    restoreP2PAt: o.restoreP2PAt ?? null,
    stallPeer: o.stallPeer ?? null,
    corruptAt: o.corruptAt ?? null,
    nondeterministic: !!o.nondeterministic,
    onLog: o.onLog || NOOP,
    onProgress: o.onProgress || NOOP,
    engineConfig: o.engineConfig || {},
    actionChangeProb: o.actionChangeProb ?? 0.2,
    dumpTraffic: o.dumpTraffic || null,
    dumpLimit: o.dumpLimit ?? 48,
    maxVirtualMs: o.maxVirtualMs,
  };
}

/**
 * Runs one session. Options (all optional): players (2..4, 2), profile ('wifi' | object),
 * overrides (netsim profile overrides), frames (900), fps (30), seed (1), env ('js'|'pyodide'),
 * inputDelay, cutP2PAt, restoreP2PAt, stallPeer {peer, ms, atFrame}, corruptAt, corruptPeer (1),
 * syncTest (checkDistance K), nondeterministic (pyodide only), onLog(line), onProgress(info),
 * lib (loaded p2psync lib), pyodide (a loaded Pyodide instance to share), engineConfig (extra
 * SyncConfig keys), actionChangeProb (0.2), dumpTraffic (directory), dumpLimit (48 files),
 * maxVirtualMs (abort bound; default generous).
 * Returns the result object described in the header (also printed by `scripts/demo --json`).
 */
export async function runSession(options = {}) {
  const o = normalizeOptions(options);
  const wallStart = performance.now();
  const lib = await loadLib(options);
  const profile = resolveProfile(o.profile, o.overrides);
  const dt = 1000 / o.fps;
  const netsim = new NetSim({ seed: o.seed, numPeers: o.players, profile: o.profile, overrides: o.overrides });
  const phaseRng = createRng(mixSeed(o.seed, 'phase'));

  // ---- envs
  let pyodide = null;
  const envs = [];
  if (o.env === 'pyodide') {
    pyodide = await loadPyodideInstance(options);
    const { createPyodideEnv } = await import('./envs/pyodide_env.js');
    for (let i = 0; i < o.players; i++) {
      envs.push(await createPyodideEnv({ numPlayers: o.players, seed: u32(mixSeed(o.seed, 'env')) % 1000000, pyodide, nondeterministic: o.nondeterministic }));
    }
    if (o.nondeterministic) {
      // the hidden RNG is module-level (shared by these envs): seed it, then redo the initial
      // coin placement (it drew from the hidden RNG) so the session is reproducible
      envs[0].seedHiddenRandom(u32(mixSeed(o.seed, 'hidden')));
      for (const e of envs) e.reset();
    }
  } else {
    const envSeed = u32(mixSeed(o.seed, 'env')) % 1000000;
    for (let i = 0; i < o.players; i++) envs.push(createGridGame({ numPlayers: o.players, seed: envSeed }));
  }

  const hashInterval = o.engineConfig.hashInterval ?? o.engineConfig.snapshotInterval ?? 5;
  const expectedDesyncFrame = o.corruptAt == null ? null : (Math.floor(o.corruptAt / hashInterval) + 1) * hashInterval;

  const ctx = {
    o, lib, netsim, dt, now: 0, peers: [], hashInterval,
    dump: o.dumpTraffic ? await createTrafficDump(o.dumpTraffic, o.dumpLimit, lib) : null,
    p2pCut: false,
    faults: [],
  };

  // ---- peers
  try {
    for (let i = 0; i < o.players; i++) {
      const cfg = { numPlayers: o.players, localPlayerIndex: i, ...o.engineConfig };
      if (o.inputDelay != null) cfg.inputDelay = o.inputDelay;
      if (o.syncTest > 0) cfg.syncTest = { checkDistance: o.syncTest };
      const engine = new lib.SyncEngine(cfg);
      const peer = {
        index: i, ctx, engine, env: envs[i],
        rng: createRng(mixSeed(o.seed, `policy${i}`)),
        action: 0,
        nextAt: phaseRng() * dt,
        framesRun: 0, ticks: 0, stallTicks: 0, waitTicks: 0,
        stallDone: false,
        confirmedFrame: -1, verifiedFrame: -1, lastFrame: 0,
        log: new ByteLog(), loggedUpTo: -1, logGap: null,
        rollbackDepths: [], replayedFrames: 0,
        desyncs: [], fallbacks: [], nondeterminism: [], otherEvents: {}, errors: [],
        rx: {}, hashBroadcasts: 0, desyncLogged: new Set(),
      };
      engine.onOutgoing = (m) => sendOut(peer, m, netsim.now);
      ctx.peers.push(peer);
    }
    netsim.onChannelChange = (a, b, open, now) => {
      const A = ctx.peers[a].engine, B = ctx.peers[b].engine;
      if (open) { A.onChannelOpen(b, now); B.onChannelOpen(a, now); }
      else { A.onChannelClosed(b, now); B.onChannelClosed(a, now); }
    };

    const deliver = (to, from, path, payload, at) => deliverMessage(ctx, to, from, path, payload, at);
    const stallMs = o.stallPeer ? o.stallPeer.ms : 0;
    const maxVirtualMs = o.maxVirtualMs ?? (o.frames * dt * 4 + stallMs + 60000);
    let cutDone = false, restoreDone = false, timedOut = false;
    let lastProgress = -1;
    const peers = ctx.peers;

    for (;;) {
      let minRun = Infinity;
      for (const p of peers) if (p.framesRun < minRun) minRun = p.framesRun;
      if (minRun >= o.frames) break;
      // faults keyed on frame counts of every peer
      if (!cutDone && o.cutP2PAt != null && minRun >= o.cutP2PAt) {
        cutDone = true;
        ctx.p2pCut = true;
        recordFault(ctx, 'cut-p2p', o.cutP2PAt);
        netsim.cutP2P(); // onChannelChange -> onChannelClosed on both sides of every pair
        o.onLog(`[Sim] P2P cut at t=${netsim.now.toFixed(0)}ms (every peer has executed >= ${o.cutP2PAt} frames)`);
      }
      if (!restoreDone && o.restoreP2PAt != null && cutDone && minRun >= o.restoreP2PAt) {
        restoreDone = true;
        ctx.p2pCut = false;
        recordFault(ctx, 'restore-p2p', o.restoreP2PAt);
        netsim.restoreP2P();
        o.onLog(`[Sim] P2P restored at t=${netsim.now.toFixed(0)}ms`);
      }
      // next tick
      let peer = peers[0];
      for (const p of peers) if (p.nextAt < peer.nextAt) peer = p;
      const t = peer.nextAt;
      if (t > maxVirtualMs) { timedOut = true; break; }
      netsim.advanceTo(t, deliver);
      ctx.now = t;
      if (o.stallPeer && !peer.stallDone && peer.index === o.stallPeer.peer && peer.framesRun >= o.stallPeer.atFrame) {
        peer.stallDone = true;
        peer.nextAt = t + o.stallPeer.ms;
        recordFault(ctx, 'stall-peer', o.stallPeer.atFrame, { peer: peer.index, ms: o.stallPeer.ms, virtualMs: t });
        o.onLog(`[Sim] Player ${peer.index} stalls for ${o.stallPeer.ms}ms at frame ${peer.framesRun} (t=${t.toFixed(0)}ms)`);
        continue;
      }
      stepPeer(peer);
      peer.nextAt = t + dt;
      if (minRun !== lastProgress && (minRun % 30 === 0)) {
        lastProgress = minRun;
        o.onProgress({ frame: minRun, frames: o.frames, virtualMs: t, wallMs: performance.now() - wallStart });
      }
    }
    o.onProgress({ frame: Math.min(...peers.map((p) => p.framesRun)), frames: o.frames, virtualMs: ctx.now, wallMs: performance.now() - wallStart, done: true });

    return buildResult(ctx, { timedOut, wallStart, expectedDesyncFrame, profile, pyodideUsed: !!pyodide });
  } finally {
    for (const p of ctx.peers) {
      try { p.engine.delete(); } catch { /* ignore */ }
    }
    for (const e of envs) {
      try { e.destroy && e.destroy(); } catch { /* ignore */ }
    }
  }
}

/** Remembers a fault with every peer's frame counters and p2pMetrics at that moment. */
function recordFault(ctx, type, atFrame, extra = {}) {
  ctx.faults.push({
    type, atFrame, virtualMs: ctx.netsim.now, ...extra,
    framesRun: ctx.peers.map((p) => p.framesRun),
    p2p: ctx.peers.map((p) => p.engine.p2pMetrics),
  });
}

// ------------------------------------------------------------------------------------------------
// Network glue

function sendOut(peer, m, now) {
  const { netsim } = peer.ctx;
  if (m.path === 'p2p') {
    if (peer.ctx.p2pCut) return; // the page would not send on a closed channel
    netsim.send(peer.index, m.to, 'p2p', m.bytes);
  } else {
    // the relay carries {event, data}; binary relay packets travel as data.bytes
    const data = m.event === 'p2psync_packet' ? { to: m.to, bytes: m.bytes ?? (m.data && m.data.bytes) } : m.data;
    netsim.send(peer.index, m.to, 'relay', { event: m.event, data });
  }
  void now;
}

function countRx(peer, key, r) {
  const k = `${key}:${r}`;
  peer.rx[k] = (peer.rx[k] || 0) + 1;
}

function deliverMessage(ctx, to, from, path, payload, at) {
  const peer = ctx.peers[to];
  const eng = peer.engine;
  if (path === 'p2p') {
    const r = eng.receive(payload, from, 'p2p', at);
    countRx(peer, 'p2p', r);
    if (ctx.dump) ctx.dump.add(payload);
    return;
  }
  const { event, data } = payload;
  let r;
  switch (event) {
    case 'pyodide_player_action': {
      // the server relays it as 'pyodide_other_player_action' with `from` attached
      const idx = playerIndexOf(ctx, data.player_id);
      r = eng.receiveRelayInput(idx, data.frame_number, data.action, at, from);
      break;
    }
    case 'p2p_state_sync':
      r = eng.receiveRelayStateSync({ ...data, from }, from, at);
      break;
    case 'p2psync_packet':
      r = eng.receive(data.bytes, from, 'relay', at);
      if (ctx.dump) ctx.dump.add(data.bytes);
      break;
    default:
      r = 'UNKNOWN_EVENT';
  }
  countRx(peer, event, r);
}

function playerIndexOf(ctx, playerId) {
  const ids = ctx.o.engineConfig.playerIds;
  if (Array.isArray(ids)) {
    const i = ids.findIndex((x) => x === playerId || String(x) === String(playerId));
    return i;
  }
  const n = Number(playerId);
  return Number.isInteger(n) ? n : -1;
}

// ------------------------------------------------------------------------------------------------
// One frame of one peer: the same logic as a page's step().

/**
 * stepPeer(peer): one tick of peer `peer` at virtual time peer.ctx.now.
 *  1. plan = engine.advance(now, localAction, null, 0) (local action: seeded random policy that
 *     changes with probability actionChangeProb per tick, so remote predictions miss)
 *  2. send plan.outgoing (p2p -> netsim 'p2p' unless cut; relay -> netsim 'relay' {event, data})
 *  3. rollback: env.setState(snapshotText(loadFrame)), replay `count` frames (batched env.replay
 *     when available), saving the snapshots flagged by resnapshot(k) before stepping those frames
 *  4. RUN: save the pre-step snapshot when plan.saveSnapshot, then env.step(plan.actions)
 *  5. events -> console patterns / records; then append newly confirmed frames to the action log
 */
export function stepPeer(peer) {
  const ctx = peer.ctx;
  const { o } = ctx;
  const now = ctx.now;
  const eng = peer.engine;
  const env = peer.env;
  peer.ticks++;
  if (peer.rng() < o.actionChangeProb) peer.action = peer.rng.int(5);

  // 1. plan (views into WASM memory: copy what is used after other engine calls)
  const plan = eng.advance(now, peer.action, null, 0);
  const status = plan.status;
  const frame = plan.frame;
  const saveSnap = plan.saveSnapshot;
  const actions = status === 'RUN' ? plan.actions.slice() : null;
  const confirmedFrame = plan.confirmedFrame;
  peer.verifiedFrame = plan.verifiedFrame;
  const events = plan.events;
  let rb = null;
  if (plan.rollback) {
    const r = plan.rollback;
    rb = { targetFrame: r.targetFrame, loadFrame: r.loadFrame, count: r.count, acts: new Array(r.count), flags: new Array(r.count) };
    for (let k = 0; k < r.count; k++) { rb.acts[k] = r.actions(k).slice(); rb.flags[k] = r.resnapshot(k); }
  }

  // 2. outgoing (p2p byte views are copied by netsim.send before any other engine call)
  for (const m of plan.outgoing) sendOut(peer, m, now);

  // 3. rollback + replay
  if (rb) replayFrames(peer, rb);

  // 4. this frame
  if (status === 'RUN') {
    if (saveSnap) eng.saveSnapshot(frame, env.getState());
    env.step(actions);
    if (o.corruptAt === frame && peer.index === o.corruptPeer) {
      env.corrupt();
      if (!peer.corrupted) o.onLog(`[Sim] Player ${peer.index}: env corrupted after stepping frame ${frame}`);
      peer.corrupted = true;
    }
    peer.framesRun++;
    peer.lastFrame = frame;
  } else if (status === 'STALL') {
    peer.stallTicks++;
  } else if (status === 'WAIT') {
    peer.waitTicks++;
  }

  // 5. events
  for (const ev of events) handleEvent(peer, ev, now);
  peer.confirmedFrame = confirmedFrame;
  collectLog(peer, confirmedFrame);
  return status;
}

function replayFrames(peer, rb) {
  const { o } = peer.ctx;
  const eng = peer.engine;
  const env = peer.env;
  const text = eng.snapshotText(rb.loadFrame);
  if (text === null) {
    peer.errors.push({ type: 'snapshot-missing-js', frame: rb.loadFrame, targetFrame: rb.targetFrame });
    return;
  }
  env.setState(text);
  peer.replayedFrames += rb.count;
  const S = rb.loadFrame;
  // Split at the corrupted frame so its corruption is re-applied in the replay.
  const cut = o.corruptAt != null && peer.index === o.corruptPeer && o.corruptAt >= S && o.corruptAt < S + rb.count
    ? o.corruptAt - S + 1 : -1;
  const segments = cut > 0 ? [[0, cut], [cut, rb.count]] : [[0, rb.count]];
  for (const [a, b] of segments) {
    if (b > a) {
      if (typeof env.replay === 'function') {
        const states = env.replay(rb.acts.slice(a, b), rb.flags.slice(a, b));
        for (let k = 0; k < states.length; k++) if (states[k] != null) eng.saveSnapshot(S + a + k, states[k]);
      } else {
        for (let k = a; k < b; k++) {
          if (rb.flags[k]) eng.saveSnapshot(S + k, env.getState());
          env.step(rb.acts[k]);
        }
      }
    }
    if (cut > 0 && b === cut) env.corrupt();
  }
}

function handleEvent(peer, ev, now) {
  const { o } = peer.ctx;
  const i = peer.index;
  switch (ev.type) {
    case 'hashBroadcast':
      peer.hashBroadcasts++;
      o.onLog(`[P2P Sync] Player ${i} broadcast at frame ${ev.frame}`, ev);
      break;
    case 'fallback':
      peer.fallbacks.push({ peer: i, remotePeer: ev.peer, frame: ev.frame, reason: ev.reason, timeMs: ev.timeMs ?? now });
      o.onLog(`[P2P Fallback] Player ${i}: P2P to player ${ev.peer} unusable (${ev.reason}) at frame ${ev.frame}, inputs go through the Socket.IO relay`, ev);
      break;
    case 'desync': {
      // the event's `peer` is the remote peer: keep it as remotePeer, `peer` = the reporting peer
      peer.desyncs.push({ ...ev, peer: i, remotePeer: ev.peer });
      // log the first desync per remote peer; later ones are only counted (see result.desyncEvents)
      if (!peer.desyncLogged.has(ev.peer)) {
        peer.desyncLogged.add(ev.peer);
        o.onLog(`[P2P Desync] Player ${i}: state hash mismatch with player ${ev.peer} at frame ${ev.frame} (further desyncs with player ${ev.peer} are counted, not logged)`, ev);
      }
      break;
    }
    case 'nondeterminism':
      peer.nondeterminism.push({ ...ev, peer: i });
      o.onLog(`[SyncTest] Player ${i}: nondeterminism detected at frame ${ev.frame} (detected at frame ${ev.detectedAtFrame}, checkDistance ${ev.checkDistance})`, ev);
      break;
    case 'rollback':
      peer.rollbackDepths.push(ev.rollbackFrames);
      break;
    case 'error':
      peer.errors.push(ev);
      o.onLog(`[P2P Error] Player ${i}: ${ev.reason} (frame ${ev.frame})`, ev);
      break;
    default:
      peer.otherEvents[ev.type] = (peer.otherEvents[ev.type] || 0) + 1;
      if (ev.type === 'interrupted' || ev.type === 'disconnected' || ev.type === 'reconnected' || ev.type === 'recovery') {
        o.onLog(`[P2P Health] Player ${i}: ${ev.type} (player ${ev.peer})${ev.frame != null ? ` at frame ${ev.frame}` : ''}`, ev);
      }
  }
}

function collectLog(peer, confirmedFrame) {
  if (peer.logGap || confirmedFrame <= peer.loggedUpTo) return;
  const from = peer.loggedUpTo + 1;
  const n = peer.engine.numActors;
  const bytes = peer.engine.actionLog(from, confirmedFrame);
  const got = bytes.length / n;
  if (got > 0) { peer.log.append(bytes); peer.loggedUpTo = from + got - 1; }
  if (got < confirmedFrame - from + 1) peer.logGap = { from: from + got, confirmedFrame };
}

// ------------------------------------------------------------------------------------------------
// Result

function buildResult(ctx, { timedOut, wallStart, expectedDesyncFrame, profile, pyodideUsed }) {
  const { o, lib, peers, netsim } = ctx;
  const n = peers[0].engine.numActors;

  // action logs over frames 0 .. min confirmed
  const commonConfirmed = Math.min(...peers.map((p) => p.loggedUpTo));
  const compareFrames = commonConfirmed + 1;
  let actionLogsIdentical = compareFrames > 0 && peers.every((p) => !p.logGap);
  let firstLogMismatch = null;
  const ref = peers[0].log.view(compareFrames * n);
  for (const p of peers.slice(1)) {
    const v = p.log.view(compareFrames * n);
    if (v.length !== ref.length || !bytesEqual(v, ref, ref.length)) {
      actionLogsIdentical = false;
      for (let f = 0; f < compareFrames && firstLogMismatch === null; f++) {
        if (!bytesEqual(v.subarray(f * n, f * n + n), ref.subarray(f * n, f * n + n), n)) firstLogMismatch = { peer: p.index, frame: f };
      }
    }
  }
  const actionLogHashes = peers.map((p) => (compareFrames > 0 ? lib.hash(p.log.view(compareFrames * n)) : null));

  // final state hashes at the newest common snapshot frame <= min(confirmed) + 1
  const minConfirmed = Math.min(...peers.map((p) => p.confirmedFrame));
  let finalStateFrame = null;
  let finalStateHashes = peers.map(() => null);
  for (let f = minConfirmed + 1; f >= Math.max(0, minConfirmed - 400); f--) {
    const texts = peers.map((p) => p.engine.snapshotText(f));
    if (texts.every((t) => t !== null)) {
      finalStateFrame = f;
      finalStateHashes = texts.map((t) => lib.hash(t));
      break;
    }
  }
  const finalHashesEqual = finalStateFrame !== null && finalStateHashes.every((h) => h === finalStateHashes[0]);

  // rollbacks (from the engines' rollback events: misprediction rollbacks, not sync-test ones)
  const depths = peers.flatMap((p) => p.rollbackDepths);
  const rollbacks = {
    count: depths.length,
    maxFrames: depths.length ? Math.max(...depths) : 0,
    p99Frames: percentile(depths, 99) ?? 0,
    framesReplayed: peers.reduce((s, p) => s + p.replayedFrames, 0),
    perPeer: peers.map((p) => p.rollbackDepths.length),
  };

  const desyncEvents = peers.flatMap((p) => p.desyncs);
  const fallback = peers.flatMap((p) => p.fallbacks);
  const nondeterminism = peers.flatMap((p) => p.nondeterminism);
  const p2p = peers.map((p) => p.engine.p2pMetrics);
  const perPeer = peers.map((p) => p.engine.exportSessionMetrics());
  const rewards = peers.map((p) => p.env.rewards());
  const episodeSummaries = peers.map((p, i) => p.engine.episodeSummary(rewards[i]));
  const recv = p2p.reduce((a, m) => ({ p2p: a.p2p + m.inputsReceivedViaP2P, relay: a.relay + m.inputsReceivedViaSocketIO }), { p2p: 0, relay: 0 });
  const p2pRatio = recv.p2p + recv.relay > 0 ? recv.p2p / (recv.p2p + recv.relay) : null;

  // verdict
  const reasons = [];
  if (timedOut) reasons.push(`timed out: not every peer reached ${o.frames} frames within the virtual-time bound (frames run: ${peers.map((p) => p.framesRun).join('/')})`);
  if (!actionLogsIdentical) {
    reasons.push(peers.some((p) => p.logGap) ? 'action log incomplete (confirmed frames left the engine ring before they were read)'
      : compareFrames <= 0 ? 'no confirmed frames to compare' : `action logs differ (first at frame ${firstLogMismatch?.frame}, peer ${firstLogMismatch?.peer})`);
  }
  const errors = peers.flatMap((p) => p.errors.map((e) => ({ peer: p.index, ...e })));
  if (errors.length) reasons.push(`${errors.length} engine/runner error(s): ${errors.slice(0, 3).map((e) => e.reason || e.type).join(', ')}`);
  const mode = o.corruptAt != null ? 'corrupt' : (o.syncTest > 0 && o.nondeterministic) ? 'nondeterminism' : 'normal';
  let desyncDetected = null;
  if (mode === 'corrupt') {
    desyncDetected = peers.map((p) => p.desyncs.some((d) => d.frame === expectedDesyncFrame));
    const firstFrames = peers.map((p) => (p.desyncs.length ? Math.min(...p.desyncs.map((d) => d.frame)) : null));
    if (!desyncDetected.every(Boolean) || !firstFrames.every((f) => f === expectedDesyncFrame)) {
      reasons.push(`corruption after frame ${o.corruptAt}: expected every peer to detect the desync first at hash frame ${expectedDesyncFrame}; first desync frames per peer: ${JSON.stringify(firstFrames)}`);
    }
  } else if (mode === 'nondeterminism') {
    if (!nondeterminism.length) reasons.push('sync-test over the nondeterministic env: nondeterminism was NOT flagged');
  } else {
    if (desyncEvents.length) reasons.push(`${desyncEvents.length} unexpected desync event(s) (first at frame ${Math.min(...desyncEvents.map((d) => d.frame))})`);
    if (nondeterminism.length) reasons.push(`nondeterminism flagged at frame ${nondeterminism[0].frame}`);
    if (finalStateFrame === null) reasons.push('no common snapshot frame to compare final states');
    else if (!finalHashesEqual) reasons.push(`final state hashes differ at frame ${finalStateFrame}`);
  }
  const healthy = reasons.length === 0;
  const stalls = peers.reduce((s, p) => s + p.stallTicks, 0);
  const waits = peers.reduce((s, p) => s + p.waitTicks, 0);

  return {
    players: o.players,
    frames: o.frames,
    fps: o.fps,
    profile: profile.name,
    seed: o.seed,
    env: o.env + (o.nondeterministic ? ' (nondeterministic)' : ''),
    healthy,
    verdict: {
      healthy,
      mode,
      reasons,
      expectedDesyncFrame,
      desyncDetectedByPeer: desyncDetected,
      finalHashesEqual,
      timedOut,
    },
    actionLogsIdentical,
    comparedFrames: Math.max(0, compareFrames),
    firstLogMismatch,
    actionLogHashes,
    finalStateFrame,
    finalStateHashes,
    desyncs: desyncEvents.length,
    desyncEvents,
    rollbacks,
    stalls,
    waits,
    p2pRatio,
    p2p,
    fallback: fallback.map(({ peer, remotePeer, frame, reason }) => ({ peer, remotePeer, frame, reason })),
    nondeterminism,
    faults: ctx.faults,
    errors,
    episodeSummaries,
    rewards,
    framesRun: peers.map((p) => p.framesRun),
    finalFrames: peers.map((p) => p.engine.frame),
    confirmedFrames: peers.map((p) => p.confirmedFrame),
    verifiedFrames: peers.map((p) => p.verifiedFrame),
    ticks: peers.map((p) => ({ ticks: p.ticks, stalls: p.stallTicks, waits: p.waitTicks })),
    hashBroadcasts: peers.map((p) => p.hashBroadcasts),
    received: peers.map((p) => p.rx),
    network: netsim.stats(),
    virtualMs: Math.round(ctx.now),
    wallMs: Math.round(performance.now() - wallStart),
    trafficDump: ctx.dump ? ctx.dump.summary() : undefined,
    pyodide: pyodideUsed || undefined,
    perPeer,
  };
}

// ------------------------------------------------------------------------------------------------
// Traffic dump (fuzz corpus seeds, e.g. for tests/fuzz/corpus/engine/): one received wire packet
// per file (the raw bytes given to engine.receive, P2P or relay-carried), deduplicated by content,
// named <type>_<hash8>.bin. Bounded: at most `limit` files, at most 8 per message type, and of a
// type only the 1st, 2nd, 4th, 8th, ... packet received (so the samples spread over the session).

async function createTrafficDump(dir, limit, lib) {
  const fs = await import('node:fs');
  fs.mkdirSync(dir, { recursive: true });
  const seen = new Set();
  const perType = {};
  const received = {};
  let written = 0;
  return {
    add(bytes) {
      if (written >= limit) return;
      const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
      if (b.length === 0 || b.length > 4096) return;
      const msg = lib.decode(b);
      const type = msg.error ? `invalid_${msg.error}` : msg.type;
      const k = (received[type] = (received[type] || 0) + 1);
      if ((k & (k - 1)) !== 0 || (perType[type] || 0) >= 8) return; // k not a power of two, or enough
      const h = lib.hash(b);
      if (seen.has(h)) return;
      seen.add(h);
      perType[type] = (perType[type] || 0) + 1;
      fs.writeFileSync(`${dir}/${type.toLowerCase()}_${h.slice(0, 8)}.bin`, b);
      written++;
    },
    summary() { return { dir, files: written, perType: { ...perType } }; },
  };
}

export default runSession;
