// sim_session.js — run a multi-peer p2psync session in ONE process over the NetSim (virtual time).
// Every peer is a SessionPeer (web/peer.js) — the same per-frame code a page runs through
// P2PSyncSession — with the real .wasm engine and its own env; only the transport differs (the
// network simulator instead of an RTCDataChannel and a Socket.IO socket).
//
//   import { runSession } from './web/sim_session.js';
//   const r = await runSession({ players: 2, profile: 'wifi', frames: 900, seed: 1 });
//   r.healthy, r.actionLogsIdentical, r.episodes, ...
//
// Model
//  * Virtual clock only (nothing reads a real clock or Math.random; the result is a pure function
//    of the options). Peer i ticks every 1000/fps ms starting at a seeded phase offset in
//    [0, 1000/fps), so peers are not lockstep. The tick with the earliest time runs next (ties:
//    lower index). Before a tick at time t, every network message due at or before t is delivered
//    (NetSim.advanceTo), each at its own delivery time.
//  * A session is `episodes` episodes. An episode ends when the env says so — with endOnScore K,
//    when a player's score reaches K (a condition on the simulated state, so a late input can move
//    it) — or is truncated by the engine after `frames` frames (config maxEpisodeFrames). After a
//    synced end each peer starts the next episode by itself (SessionPeer). A peer that has played
//    every episode keeps ticking (its engine answers END/READY) until all have.
//  * Delivery: P2P bytes -> peer.receiveP2P(from, bytes). Relay messages go as the p2psync server
//    relays them (web/server.mjs: pyodide_player_action becomes pyodide_other_player_action, and
//    `from` = the sender's index is attached) -> peer.receiveRelay(event, data, from).
//  * Faults (triggered by new-frame counts, checked before each tick):
//      cutP2PAt F       once EVERY peer has executed >= F frames: netsim.cutP2P(); every engine gets
//                       onChannelClosed(other) for every other peer.
//      restoreP2PAt F   likewise: netsim.restoreP2P() + onChannelOpen.
//      stallPeer {peer, ms, atFrame}  when that peer has executed atFrame frames it does not tick
//                       for `ms` virtual ms (messages still arrive into its engine).
//      corruptAt F      on corruptPeer (default 1): env.corrupt() right after stepping session frame
//                       F, in normal steps AND in replays of frame F. The desync is expected at the
//                       first hash frame h > F (h % hashInterval == 0; 405 for F = 400).
//
// Checks (verdict.reasons lists what failed)
//  * Every peer ended every episode, within a virtual-time bound (no deadlock).
//  * Every episode ended on the same frame on every peer; in a normal run the final state hashes
//    (the env state after the episode's last frame) are equal, and there is no desync.
//  * Action logs (confirmed frames, collected as they confirm) are identical across peers.
//  * corruptAt: every peer reports the desync first at the expected hash frame. syncTest +
//    nondeterministic: nondeterminism is flagged.
//
// Result (JSON-serialisable; `scripts/demo --json` prints it): players, frames, episodesPlanned,
// fps, profile, seed, env, healthy, verdict {healthy, mode, reasons[], expectedDesyncFrame,
// desyncDetectedByPeer, finalHashesEqual, timedOut}, episodes[{index, endFramesByPeer,
// episodeEndFramesByPeer, frames, truncated, finalStateHashes, rewards}], actionLogsIdentical,
// comparedFrames, firstLogMismatch, actionLogHashes[], finalStateFrame, finalStateHashes[], desyncs,
// desyncEvents[], rollbacks {count, maxFrames, p99Frames, framesReplayed, perPeer[]}, stalls, waits,
// p2pRatio, p2p[], fallback[], nondeterminism[], faults[], errors[], episodeSummaries[], rewards[],
// framesRun[], finalFrames[], confirmedFrames[], verifiedFrames[], ticks[], hashBroadcasts[],
// received[], network, virtualMs, wallMs, trafficDump, perPeer[] (engine.exportSessionMetrics()).

import { NetSim, resolveProfile, createRng } from './netsim.js';
import { createGridGame } from './envs/grid_game.js';
import { SessionPeer } from './peer.js';

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
  const episodes = o.episodes ?? 1;
  if (!Number.isInteger(episodes) || episodes < 1 || episodes > 1000) throw new RangeError('runSession: episodes must be 1..1000');
  const endOnScore = o.endOnScore ?? 0;
  if (!Number.isInteger(endOnScore) || endOnScore < 0) throw new RangeError('runSession: endOnScore must be a non-negative integer');
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
  if (o.rejoinPeer) {
    const { peer, atFrame, downMs = 3000 } = o.rejoinPeer;
    if (!Number.isInteger(peer) || peer < 0 || peer >= players) throw new RangeError('runSession: rejoinPeer.peer out of range');
    if (!Number.isInteger(atFrame) || atFrame < 1 || !(downMs >= 0 && downMs <= 600000)) throw new RangeError('runSession: bad rejoinPeer (atFrame >= 1, downMs 0..600000)');
    if (env !== 'js') throw new RangeError('runSession: rejoinPeer needs env js');
  }
  if (o.desyncPolicy != null && o.desyncPolicy !== 'report' && o.desyncPolicy !== 'resync') throw new RangeError("runSession: desyncPolicy must be 'report' or 'resync'");
  const syncTest = o.syncTest == null || o.syncTest === 0 || o.syncTest === false ? 0 : Number(o.syncTest);
  if (!Number.isInteger(syncTest) || syncTest < 0) throw new RangeError('runSession: syncTest must be a non-negative integer');
  return {
    players, frames, episodes, endOnScore, fps, env, corruptPeer, syncTest,
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
    dataOut: o.dataOut || null,
    maxVirtualMs: o.maxVirtualMs,
    rejoinPeer: o.rejoinPeer ?? null,
    desyncPolicy: o.desyncPolicy ?? null,
  };
}

/** The env of one peer: the JS grid game or the Python gridworld (endOnScore ends an episode). */
/** A fresh JS env as runSession's (a reloaded page's). */
function makeEnv(o) {
  return createGridGame({ numPlayers: o.players, seed: u32(mixSeed(o.seed, 'env')) % 1000000, endOnScore: o.endOnScore });
}

async function createEnvs(o, options) {
  const envSeed = u32(mixSeed(o.seed, 'env')) % 1000000;
  const envs = [];
  if (o.env === 'pyodide') {
    const pyodide = await loadPyodideInstance(options);
    const { createPyodideEnv } = await import('./envs/pyodide_env.js');
    for (let i = 0; i < o.players; i++) {
      envs.push(await createPyodideEnv({ numPlayers: o.players, seed: envSeed, pyodide, nondeterministic: o.nondeterministic, endOnScore: o.endOnScore }));
    }
    if (o.nondeterministic) {
      // the hidden RNG is module-level (shared by these envs): seed it, then redo the initial
      // coin placement (it drew from the hidden RNG) so the session is reproducible
      envs[0].seedHiddenRandom(u32(mixSeed(o.seed, 'hidden')));
      for (const e of envs) e.reset();
    }
  } else {
    for (let i = 0; i < o.players; i++) envs.push(createGridGame({ numPlayers: o.players, seed: envSeed, endOnScore: o.endOnScore }));
  }
  return envs;
}

/**
 * N SessionPeers over one NetSim, in virtual time: the stepping machinery of runSession, also used
 * directly by the node tests (scripted attacks, faults, checks between ticks).
 *
 *   const w = new SimWorld({ lib, players: 2, profile: 'wifi', seed: 1, envs });
 *   w.runUntil(() => w.minFramesRun() >= 300, 60000);
 *   w.inject(0, 1, 'p2p', bytes);   // peer 0 receives bytes as if from peer 1, now
 *
 * Options: lib, envs (one env per player), players, profile, overrides, seed, fps (30),
 * engineConfig (SyncConfig keys for every peer), configFor(i) (per-peer keys), episodes
 * (Infinity), actionChangeProb (0.2), onLog(line, ev), driverFor(i) (runPlan options),
 * envFor(i, env) (the env the peer runs, e.g. a corrupting wrapper), dump (traffic dump).
 * An env may be async (its methods return Promises): tick(), runUntil() and runFrames() then
 * return Promises, and each tick completes before the next message is delivered.
 */
export class SimWorld {
  constructor({
    lib, envs, players = envs.length, profile = 'wifi', overrides = {}, seed = 1, fps = 30, engineConfig = {},
    configFor = () => ({}), episodes = Infinity, actionChangeProb = 0.2, onLog = NOOP, driverFor = () => ({}),
    envFor = (i, env) => env, dump = null, keepData = 'episode', stopWhenFinished = true,
  }) {
    this.keepData = keepData;
    this.stopWhenFinished = stopWhenFinished;
    this.lib = lib;
    this.players = players;
    this.seed = seed;
    this.dt = 1000 / fps;
    this.now = 0;
    this.onLog = onLog;
    this.actionChangeProb = actionChangeProb;
    this.netsim = new NetSim({ seed, numPeers: players, profile, overrides });
    this.p2pCut = false;
    this.dump = dump;
    const phaseRng = createRng(mixSeed(seed, 'phase'));
    this.peers = [];
    for (let i = 0; i < players; i++) {
      const config = { numPlayers: players, localPlayerIndex: i, ...engineConfig, ...configFor(i) };
      this.peers.push(this._createPeer(i, envs[i], envFor(i, envs[i]), config, phaseRng() * this.dt, episodes, driverFor(i)));
    }
    this.netsim.onChannelChange = (a, b, open, now) => {
      const A = this.peers[a].sp.engine, B = this.peers[b].sp.engine;
      if (open) { A.onChannelOpen(b, now); B.onChannelOpen(a, now); }
      else { A.onChannelClosed(b, now); B.onChannelClosed(a, now); }
      this.peers[a].sp.poll();
      this.peers[b].sp.poll();
    };
    // a message is received at its own delivery time (the clock the peers read moves with it)
    this._deliver = (to, from, path, payload, at) => {
      if (at > this.now) this.now = at;
      return this._deliverMessage(to, from, path, payload);
    };
  }

  _createPeer(i, env, peerEnv, config, nextAt, episodes, driver, rejoin = false) {
    const world = this;
    const peer = {
      index: i, env, config, episodesPlanned: episodes, driver, down: false,
      rng: createRng(mixSeed(this.seed, `policy${i}`)),
      action: 0,
      nextAt,
      paused: false,
      framesRun: 0, ticks: 0, stallTicks: 0, waitTicks: 0,
      desyncs: [], fallbacks: [], nondeterminism: [], otherEvents: {}, errors: [], episodeEnds: [], events: [],
      hashBroadcasts: 0, desyncLogged: new Set(), corrupted: false,
    };
    const transport = {
      sendP2P(to, bytes) {
        if (world.p2pCut || peer.down) return false; // the page does not send on a closed channel
        return world.netsim.send(i, to, 'p2p', bytes);
      },
      emitRelay(event, data, to) {
        if (peer.down) return;
        // the relay carries {event, data}; binary relay packets travel as data.bytes
        const d = event === 'p2psync_packet' ? { to, bytes: data.bytes } : data;
        world.netsim.send(i, event === 'p2psync_packet' ? to : -1, 'relay', { event, data: d });
      },
      bufferedAmount: () => 0,
    };
    peer.sp = new SessionPeer({
      lib: this.lib, config, env: peerEnv, transport,
      now: () => world.now,
      episodes,
      onEvent: (ev) => world._onEvent(peer, ev),
      log: (line) => world.onLog(line),
      syncLogEveryFrames: 0,
      driver,
      keepData: this.keepData,
      rejoin,
    });
    return peer;
  }

  /** Peer i's page goes away (a reload, a crash): it stops ticking, its DataChannels close, it
   * receives and sends nothing; the others keep predicting its inputs, then stall. */
  dropPeer(i) {
    const p = this.peers[i];
    p.down = true;
    p.paused = true;
    for (const q of this.peers) {
      if (q.index === i) continue;
      q.sp.engine.onChannelClosed(i, this.now);
      q.sp.poll();
    }
  }

  /** Peer i's page is back (reloaded): a fresh SessionPeer with `rejoin` and a fresh env. It asks a
   * live peer for the state and goes on in the same episode. The simulator's own bookkeeping of the
   * participant (episode results, counters) carries over; the page's memory does not. */
  rejoinPeer(i, env) {
    const old = this.peers[i];
    const np = this._createPeer(i, env, env, old.config, this.now, old.episodesPlanned, old.driver, true);
    for (const k of ['rng', 'action', 'framesRun', 'ticks', 'stallTicks', 'waitTicks', 'desyncs', 'fallbacks', 'nondeterminism',
      'otherEvents', 'errors', 'episodeEnds', 'events', 'hashBroadcasts', 'desyncLogged']) np[k] = old[k];
    np.sp.episodeResults = old.sp.episodeResults.slice();
    np.sp.episodesCompleted = old.sp.episodesCompleted;
    np.sp.rollbackDepths = old.sp.rollbackDepths.slice();
    np.previous = old;
    this.peers[i] = np;
    for (const q of this.peers) {
      if (q.index === i) continue;
      q.sp.engine.onChannelOpen(i, this.now);
      np.sp.engine.onChannelOpen(q.index, this.now);
    }
    return np;
  }

  /** The fewest new frames any peer has run. */
  minFramesRun() { return Math.min(...this.peers.map((p) => p.framesRun)); }
  /** Whether every peer has ended every configured episode. */
  allFinished() { return this.peers.every((p) => p.sp.finished); }

  /** Delivers every message due at or before time t. */
  deliverUntil(t) {
    this.netsim.advanceTo(t, this._deliver);
    this.now = Math.max(this.now, t);
  }

  /** One tick of the earliest peer (messages due before it are delivered first). */
  tick() {
    let peer = this.peers[0];
    for (const p of this.peers) if (p.nextAt < peer.nextAt) peer = p;
    const t = peer.nextAt;
    this.deliverUntil(t);
    this.now = t;
    peer.nextAt = t + this.dt;
    // A page that played every episode stops stepping (its engine still answers on receive).
    if (peer.paused || (this.stopWhenFinished && peer.sp.finished)) return null;
    const r = this.stepPeer(peer);
    // the page's frame loop honours the engine's pacing (time sync): the next tick comes a little
    // earlier or later
    const pace = (res) => { peer.nextAt += res && res.pacingMs ? res.pacingMs : 0; return res; };
    return r && typeof r.then === 'function' ? r.then(pace) : pace(r);
  }

  /**
   * Ticks until pred() holds or the next tick would pass maxMs of virtual time. Returns whether
   * pred() held; a Promise of it once a tick returned one (an async env): each tick then completes
   * before anything else happens, so the session is the same as with the synchronous env.
   */
  runUntil(pred, maxMs) {
    while (!pred()) {
      const next = Math.min(...this.peers.map((p) => p.nextAt));
      if (next > maxMs) return false;
      const r = this.tick();
      if (r && typeof r.then === 'function') return r.then(() => this._runUntilAsync(pred, maxMs));
    }
    return true;
  }

  async _runUntilAsync(pred, maxMs) {
    while (!pred()) {
      const next = Math.min(...this.peers.map((p) => p.nextAt));
      if (next > maxMs) return false;
      await this.tick();
    }
    return true;
  }

  /** Runs `frames` frame periods (every peer ticks about that many times); a Promise with an async env. */
  runFrames(frames) {
    const end = this.now + frames * this.dt;
    const r = this.runUntil(() => false, end);
    return r && typeof r.then === 'function' ? r.then(() => undefined) : undefined;
  }

  /** One tick of `peer`: exactly what a page's step() does (SessionPeer.step). Returns its result,
   * or a Promise of it when the env is async. */
  stepPeer(peer, action) {
    peer.ticks++;
    if (action !== undefined) peer.action = action;
    else if (peer.rng() < this.actionChangeProb) peer.action = peer.rng.int(5);
    const r = peer.sp.step(peer.action);
    if (r && typeof r.then === 'function') return r.then((x) => this._stepped(peer, x));
    return this._stepped(peer, r);
  }

  _stepped(peer, r) {
    peer.framesRun += r.frames.length;
    if (r.status === 'STALL') peer.stallTicks++;
    else if (r.status === 'WAIT') peer.waitTicks++;
    return r;
  }

  cutP2P() { this.p2pCut = true; this.netsim.cutP2P(); }
  restoreP2P() { this.p2pCut = false; this.netsim.restoreP2P(); }

  /** Peer `to` receives `payload` from peer `from` now: bytes on 'p2p', or {event, data} on 'relay'. */
  inject(to, from, path, payload) {
    return this._deliverMessage(to, from, path, payload);
  }

  // The simulated server relays like web/server.mjs: pyodide_player_action becomes
  // pyodide_other_player_action, and every relayed payload gets `from` = the sender's index.
  _deliverMessage(to, from, path, payload) {
    if (this.peers[to].down) return 'DROPPED';  // its page is gone
    const sp = this.peers[to].sp;
    if (path === 'p2p') {
      if (this.dump) this.dump.add(payload);
      return sp.receiveP2P(from, payload);
    }
    const { event, data } = payload;
    if (event === 'p2psync_packet' && this.dump) this.dump.add(data.bytes);
    const ev = event === 'pyodide_player_action' ? 'pyodide_other_player_action' : event;
    return sp.receiveRelay(ev, { ...data, from }, from);
  }

  _onEvent(peer, ev) {
    const i = peer.index;
    const log = this.onLog;
    if (peer.events.length < 5000) peer.events.push(ev);
    switch (ev.type) {
      case 'hashBroadcast':
        peer.hashBroadcasts++;
        log(`[P2P Sync] Player ${i} broadcast at frame ${ev.frame}`, ev);
        break;
      case 'fallback':
        peer.fallbacks.push({ peer: i, remotePeer: ev.peer, frame: ev.frame, reason: ev.reason, timeMs: ev.timeMs });
        log(`[P2P Fallback] Player ${i}: P2P to player ${ev.peer} unusable (${ev.reason}) at frame ${ev.frame}, inputs go through the Socket.IO relay`, ev);
        break;
      case 'desync':
        // the event's `peer` is the remote peer: keep it as remotePeer, `peer` = the reporting peer
        peer.desyncs.push({ ...ev, peer: i, remotePeer: ev.peer });
        // log the first desync per remote peer; later ones are only counted (see result.desyncEvents)
        if (!peer.desyncLogged.has(ev.peer)) {
          peer.desyncLogged.add(ev.peer);
          log(`[P2P Desync] Player ${i}: state hash mismatch with player ${ev.peer} at frame ${ev.frame} (further desyncs with player ${ev.peer} are counted, not logged)`, ev);
        }
        break;
      case 'nondeterminism':
        peer.nondeterminism.push({ ...ev, peer: i });
        log(`[SyncTest] Player ${i}: nondeterminism detected at frame ${ev.frame} (detected at frame ${ev.detectedAtFrame}, checkDistance ${ev.checkDistance})`, ev);
        break;
      case 'episodeEnd':
        peer.episodeEnds.push(ev);
        log(`[Episode] Player ${i}: episode ${ev.episode} ended at episode frame ${ev.episodeFrame}${ev.truncated ? ' (truncated)' : ''}`, ev);
        break;
      case 'rollback':
        break;
      case 'error':
        peer.errors.push(ev);
        log(`[P2P Error] Player ${i}: ${ev.reason} (frame ${ev.frame})`, ev);
        break;
      default:
        peer.otherEvents[ev.type] = (peer.otherEvents[ev.type] || 0) + 1;
        if (ev.type === 'interrupted' || ev.type === 'disconnected' || ev.type === 'reconnected' || ev.type === 'recovery') {
          log(`[P2P Health] Player ${i}: ${ev.type} (player ${ev.peer})${ev.frame != null ? ` at frame ${ev.frame}` : ''}`, ev);
        }
    }
  }

  /** Confirmed action logs compared over the frames every peer has logged. */
  compareLogs() {
    const peers = this.peers;
    const n = peers[0].sp.numActors;
    const compared = Math.min(...peers.map((p) => p.sp.loggedUpTo)) + 1;
    // a page that rejoined confirmed frames from its rejoin on: the logs are compared from there
    const from = Math.max(...peers.map((p) => p.sp.logFrom));
    let identical = compared > from && peers.every((p) => !p.sp.logGap);
    let firstMismatch = null;
    const view = (p) => p.sp.log2.view(compared * n).subarray(from * n);
    const ref = view(peers[0]);
    for (const p of peers.slice(1)) {
      const v = view(p);
      if (v.length !== ref.length || !bytesEqual(v, ref, ref.length)) {
        identical = false;
        for (let f = 0; f < compared - from && firstMismatch === null; f++) {
          if (!bytesEqual(v.subarray(f * n, f * n + n), ref.subarray(f * n, f * n + n), n)) firstMismatch = { peer: p.index, frame: from + f };
        }
      }
    }
    const hashes = peers.map((p) => (compared > from ? this.lib.hash(view(p)) : null));
    return { identical, compared: Math.max(0, compared - from), from, firstMismatch, hashes, gap: peers.some((p) => p.sp.logGap) };
  }

  destroy() {
    for (const p of this.peers) {
      try { p.sp.destroy(); } catch { /* ignore */ }
    }
  }
}

/**
 * Runs one session. Options (all optional): players (2..4, 2), profile ('wifi' | object),
 * overrides (netsim profile overrides), frames (900: the most frames of one episode), episodes (1),
 * endOnScore (0: episodes end only by truncation), fps (30), seed (1), env ('js'|'pyodide'),
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
  const envs = await createEnvs(o, options);
  const hashInterval = o.engineConfig.hashInterval ?? o.engineConfig.snapshotInterval ?? 5;
  const expectedDesyncFrame = o.corruptAt == null ? null : (Math.floor(o.corruptAt / hashInterval) + 1) * hashInterval;
  const engineConfig = { maxEpisodeFrames: o.frames, ...o.engineConfig };
  if (o.inputDelay != null) engineConfig.inputDelay = o.inputDelay;
  if (o.syncTest > 0) engineConfig.syncTest = { checkDistance: o.syncTest };
  if (o.desyncPolicy) engineConfig.desyncPolicy = o.desyncPolicy;
  const corrupting = (i) => o.corruptAt != null && i === o.corruptPeer;
  let world = null;
  const faults = [];
  try {
    world = new SimWorld({
      lib, envs, players: o.players, profile: o.profile, overrides: o.overrides, seed: o.seed, fps: o.fps, engineConfig,
      episodes: o.episodes, actionChangeProb: o.actionChangeProb, onLog: o.onLog, keepData: 'session',
      dump: o.dumpTraffic ? await createTrafficDump(o.dumpTraffic, o.dumpLimit, lib) : null,
      // the corrupting peer steps replays one by one, so the corruption is re-applied in them
      driverFor: (i) => ({ batchReplay: !corrupting(i) }),
      envFor: (i, env) => (corrupting(i) ? corruptingEnv(env, o, () => world.peers[i]) : env),
    });
    const w = world;
    const recordFault = (type, atFrame, extra = {}) => faults.push({
      type, atFrame, virtualMs: w.now, ...extra,
      framesRun: w.peers.map((p) => p.framesRun),
      p2p: w.peers.map((p) => p.sp.engine.p2pMetrics),
    });
    const stallMs = o.stallPeer ? o.stallPeer.ms : 0;
    const maxVirtualMs = o.maxVirtualMs ?? (o.episodes * (o.frames * w.dt * 4 + 10000) + stallMs + 60000);
    const totalFrames = o.episodes * o.frames;
    let cutDone = false, restoreDone = false, stallDone = false, stallUntil = -1;
    let dropDone = false, rejoinDone = false, rejoinAt = -1;
    let lastProgress = -1;
    const finished = await w.runUntil(() => {
      const minRun = w.minFramesRun();
      // faults keyed on frame counts of every peer
      if (!cutDone && o.cutP2PAt != null && minRun >= o.cutP2PAt) {
        cutDone = true;
        recordFault('cut-p2p', o.cutP2PAt);
        w.cutP2P(); // onChannelChange -> onChannelClosed on both sides of every pair
        o.onLog(`[Sim] P2P cut at t=${w.now.toFixed(0)}ms (every peer has executed >= ${o.cutP2PAt} frames)`);
      }
      if (!restoreDone && o.restoreP2PAt != null && cutDone && minRun >= o.restoreP2PAt) {
        restoreDone = true;
        recordFault('restore-p2p', o.restoreP2PAt);
        w.restoreP2P();
        o.onLog(`[Sim] P2P restored at t=${w.now.toFixed(0)}ms`);
      }
      if (o.stallPeer) {
        const sp = w.peers[o.stallPeer.peer];
        if (!stallDone && sp.framesRun >= o.stallPeer.atFrame) {
          stallDone = true;
          sp.paused = true;
          stallUntil = w.now + o.stallPeer.ms;
          recordFault('stall-peer', o.stallPeer.atFrame, { peer: sp.index, ms: o.stallPeer.ms, virtualMs: w.now });
          o.onLog(`[Sim] Player ${sp.index} stalls for ${o.stallPeer.ms}ms at frame ${sp.framesRun} (t=${w.now.toFixed(0)}ms)`);
        }
        if (sp.paused && w.now >= stallUntil) sp.paused = false;
      }
      if (o.rejoinPeer) {
        const rp = o.rejoinPeer;
        const p = w.peers[rp.peer];
        if (!dropDone && p.framesRun >= rp.atFrame) {
          dropDone = true;
          rejoinAt = w.now + (rp.downMs ?? 3000);
          recordFault('drop-peer', rp.atFrame, { peer: rp.peer, virtualMs: w.now, frame: p.sp.frame });
          w.dropPeer(rp.peer);
          o.onLog(`[Sim] Player ${rp.peer}'s page is gone at frame ${p.sp.frame} (t=${w.now.toFixed(0)}ms); it reloads in ${rp.downMs ?? 3000} ms`);
        } else if (dropDone && !rejoinDone && w.now >= rejoinAt) {
          rejoinDone = true;
          recordFault('rejoin-peer', rp.atFrame, { peer: rp.peer, virtualMs: w.now });
          w.rejoinPeer(rp.peer, makeEnv(o));
          o.onLog(`[Sim] Player ${rp.peer}'s page reloaded (t=${w.now.toFixed(0)}ms): it rejoins`);
        }
      }
      if (minRun !== lastProgress && minRun % 30 === 0) {
        lastProgress = minRun;
        o.onProgress({ frame: minRun, frames: totalFrames, virtualMs: w.now, wallMs: performance.now() - wallStart });
      }
      return w.allFinished();
    }, maxVirtualMs);
    o.onProgress({ frame: w.minFramesRun(), frames: totalFrames, virtualMs: w.now, wallMs: performance.now() - wallStart, done: true });
    const result = buildResult(w, o, { timedOut: !finished, wallStart, expectedDesyncFrame, profile, faults, pyodideUsed: o.env === 'pyodide' });
    if (o.dataOut) result.dataFiles = await writeDataOut(o.dataOut, result, w);
    return result;
  } finally {
    if (world) world.destroy();
    for (const e of envs) {
      try { e.destroy && e.destroy(); } catch { /* ignore */ }
    }
  }
}

/** The env of the corrupting peer: its state is altered right after it steps frame corruptAt. */
function corruptingEnv(env, o, peer) {
  return {
    getState: () => env.getState(),
    setState: (s) => env.setState(s),
    reset: (...a) => env.reset(...a),
    rewards: () => env.rewards(),
    step(actions, info) {
      const r = env.step(actions, info);
      if (info.frame === o.corruptAt) {
        env.corrupt();
        if (!peer().corrupted) o.onLog(`[Sim] Player ${peer().index}: env corrupted after stepping frame ${info.frame}`);
        peer().corrupted = true;
      }
      return r;
    },
  };
}

// ------------------------------------------------------------------------------------------------
// Result

function buildResult(world, o, { timedOut, wallStart, expectedDesyncFrame, profile, faults, pyodideUsed }) {
  const { peers, netsim } = world;
  const logs = world.compareLogs();
  const actionLogsIdentical = logs.identical;
  const compareFrames = logs.compared;
  const firstLogMismatch = logs.firstMismatch;
  const actionLogHashes = logs.hashes;

  // episodes: end frames and final state hashes per peer
  const maxEpisodes = Math.max(...peers.map((p) => p.sp.episodeResults.length));
  const episodes = [];
  const shared = peers[0].sp.data.sharedColumns;
  const dataProblems = [];
  for (let e = 0; e < maxEpisodes; e++) {
    const res = peers.map((p) => p.sp.episodeResults[e] ?? null);
    // the research data of episode e: shared columns equal on every peer, one row per frame,
    // per-player reward columns summing to the env's own episode rewards
    const csvs = peers.map((p) => (res[p.index] ? p.sp.data.exportEpisode(res[p.index].episode, { columns: shared }) : null));
    const rowsByPeer = peers.map((p) => (res[p.index] ? p.sp.data.rowsOf(res[p.index].episode).length : null));
    peers.forEach((p, i) => {
      const r = res[i];
      if (!r) return;
      const rows = p.sp.data.rowsOf(r.episode);
      if (rows.length !== r.episodeFrame + 1) dataProblems.push(`peer ${i} episode ${e}: ${rows.length} rows for ${r.episodeFrame + 1} frames`);
      for (let q = 0; q < o.players; q++) {
        const id = p.sp.data.ids[q];
        const sum = rows.reduce((a, row) => a + row[`reward.${id}`], 0);
        const env = r.rewards ? Number(r.rewards[q] ?? r.rewards[String(q)]) : NaN;
        if (Number.isFinite(env) && sum !== env) dataProblems.push(`peer ${i} episode ${e}: reward.${id} sums to ${sum}, the env says ${env}`);
      }
    });
    episodes.push({
      dataDigestByPeer: csvs.map((c) => (c === null ? null : world.lib.hash(c))),
      rowsByPeer,
      index: e,
      endFramesByPeer: res.map((r) => (r ? r.frame : null)),
      episodeEndFramesByPeer: res.map((r) => (r ? r.episodeFrame : null)),
      frames: res[0] ? res[0].episodeFrame + 1 : null,
      truncated: res.map((r) => (r ? !!r.truncated : null)),
      finalStateHashes: res.map((r) => (r ? r.finalStateHash : null)),
      rewards: res.map((r) => (r ? r.rewards : null)),
    });
  }
  const last = episodes.length ? episodes[episodes.length - 1] : null;
  const finalStateFrame = last ? last.endFramesByPeer[0] : null;
  const finalStateHashes = last ? last.finalStateHashes : peers.map(() => null);
  const allEnded = peers.every((p) => p.sp.episodesCompleted >= o.episodes);
  const endsAgree = episodes.every((ep) => ep.endFramesByPeer.every((f) => f !== null && f === ep.endFramesByPeer[0]));
  const hashesAgree = episodes.every((ep) => ep.finalStateHashes.every((h) => h !== null && h === ep.finalStateHashes[0]));

  // rollbacks (from the engines' rollback events: misprediction rollbacks, not sync-test ones)
  const depths = peers.flatMap((p) => p.sp.rollbackDepths);
  const rollbacks = {
    count: depths.length,
    maxFrames: depths.length ? Math.max(...depths) : 0,
    p99Frames: percentile(depths, 99) ?? 0,
    framesReplayed: peers.reduce((s, p) => s + p.sp.counters.framesReplayed, 0),
    perPeer: peers.map((p) => p.sp.rollbackDepths.length),
  };

  const desyncEvents = peers.flatMap((p) => p.desyncs);
  const fallback = peers.flatMap((p) => p.fallbacks);
  const nondeterminism = peers.flatMap((p) => p.nondeterminism);
  const p2p = peers.map((p) => p.sp.engine.p2pMetrics);
  const perPeer = peers.map((p) => p.sp.engine.exportSessionMetrics());
  const rewards = peers.map((p) => p.env.rewards());
  const episodeSummaries = peers.map((p) => p.sp.episodeSummaryLine ?? p.sp.engine.episodeSummary(p.env.rewards()));
  const recv = p2p.reduce((a, m) => ({ p2p: a.p2p + m.inputsReceivedViaP2P, relay: a.relay + m.inputsReceivedViaSocketIO }), { p2p: 0, relay: 0 });
  // time sync and the input delay (issue 17): each peer's lead over every other peer, the rollback
  // shares, and the input delay each episode ran with (every peer must have used the same)
  const frameAdvantage = perPeer.map((m, i) => m.quality.frameAdvantage.map((a) => ({ peer: i, remotePeer: a.peer, samples: a.samples, mean: round3(a.mean), p95: a.p95, shareBeyondOne: round3(a.shareBeyondOne) })));
  const inputDelayByEpisode = perPeer.map((m) => m.quality.inputDelayByEpisode);
  const inputDelayAgreed = inputDelayByEpisode.every((d) => JSON.stringify(d.slice(0, episodes.length)) === JSON.stringify(inputDelayByEpisode[0].slice(0, episodes.length)));
  const rbTotal = rollbacks.perPeer.reduce((a, b) => a + b, 0);
  rollbacks.sharePerPeer = rollbacks.perPeer.map((n) => (rbTotal > 0 ? round3(n / rbTotal) : null));
  const p2pRatio = recv.p2p + recv.relay > 0 ? recv.p2p / (recv.p2p + recv.relay) : null;

  // verdict
  const reasons = [];
  if (timedOut) reasons.push(`timed out: not every peer ended ${o.episodes} episode(s) within the virtual-time bound (episodes ended: ${peers.map((p) => p.sp.episodesCompleted).join('/')}, frames run: ${peers.map((p) => p.framesRun).join('/')})`);
  else if (!allEnded) reasons.push(`not every peer ended ${o.episodes} episode(s): ${peers.map((p) => p.sp.episodesCompleted).join('/')}`);
  if (!inputDelayAgreed) reasons.push(`the peers ran episodes with different input delays: ${JSON.stringify(inputDelayByEpisode)}`);
  if (!endsAgree) reasons.push(`episodes ended on different frames: ${JSON.stringify(episodes.map((e) => e.endFramesByPeer))}`);
  if (mode0(o) === 'normal') {
    const digestsDiffer = episodes.filter((e) => !e.dataDigestByPeer.every((d) => d !== null && d === e.dataDigestByPeer[0]));
    if (digestsDiffer.length) reasons.push(`research data differs between peers in episode(s) ${digestsDiffer.map((e) => e.index).join(', ')}`);
    if (dataProblems.length) reasons.push(`research data: ${dataProblems.slice(0, 3).join('; ')}`);
  }
  if (!actionLogsIdentical) {
    reasons.push(logs.gap ? 'action log incomplete (confirmed frames left the engine ring before they were read)'
      : compareFrames <= 0 ? 'no confirmed frames to compare' : `action logs differ (first at frame ${firstLogMismatch?.frame}, peer ${firstLogMismatch?.peer})`);
  }
  // (a corrupted peer's end may disagree with the others': its end-mismatch is expected)
  const errors = peers.flatMap((p) => p.errors.filter((e) => o.corruptAt == null || e.reason !== 'end-mismatch').map((e) => ({ peer: p.index, ...e })));
  if (errors.length) reasons.push(`${errors.length} engine/runner error(s): ${errors.slice(0, 3).map((e) => e.reason || e.type).join(', ')}`);
  const mode = mode0(o);
  let desyncDetected = null;
  if (mode === 'corrupt' && o.desyncPolicy === 'resync') {
    // desyncPolicy resync: the desync is detected (by the peers whose comparison saw it first),
    // every peer records the resync, and the states are equal again
    desyncDetected = peers.map((p) => p.desyncs.some((d) => d.frame === expectedDesyncFrame));
    if (!desyncDetected.some(Boolean)) reasons.push(`corruption after frame ${o.corruptAt}: no peer detected the desync at hash frame ${expectedDesyncFrame}`);
    const resynced = peers.map((p) => [...p.sp.data.episodes.values()].some((e) => e.resyncs.some((r) => r.frame === expectedDesyncFrame)));
    if (!resynced.every(Boolean)) reasons.push(`the resync at hash frame ${expectedDesyncFrame} is not in every peer's data: ${JSON.stringify(resynced)}`);
    // hashes of frames after the desync may still be compared while the diverged state is being
    // replaced; once every loaded state is in (and the hashes in flight have arrived), none may differ
    const loadedAt = Math.max(-Infinity, ...peers.flatMap((p) => p.events.filter((e) => e.type === 'stateLoaded').map((e) => e.timeMs)));
    const late = peers.flatMap((p) => p.desyncs.filter((d) => d.timeMs > loadedAt + 1000));
    if (!Number.isFinite(loadedAt)) reasons.push('no peer loaded another peer\'s state');
    if (late.length) reasons.push(`${late.length} desync(s) after the resync (first at frame ${late[0].frame})`);
    if (!episodes.length) reasons.push('no episode ended: no final states to compare');
    else if (!hashesAgree) reasons.push(`final state hashes differ after the resync: ${JSON.stringify(episodes.map((e) => e.finalStateHashes))}`);
  } else if (mode === 'corrupt') {
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
    if (!episodes.length) reasons.push('no episode ended: no final states to compare');
    else if (!hashesAgree) reasons.push(`final state hashes differ: ${JSON.stringify(episodes.map((e) => e.finalStateHashes))}`);
  }
  // a page that reloaded and rejoined: every peer's data records the gap; the rejoiner got the rows
  // it lost from a peer
  let rejoin;
  if (o.rejoinPeer) {
    const who = o.rejoinPeer.peer;
    const gapsByPeer = peers.map((p) => [...p.sp.data.episodes.values()].flatMap((e) => e.gaps.map((g) => ({ episode: e.episode, ...g }))));
    const recovered = [...peers[who].sp.data.episodes.values()].map((e) => e.recovered).filter(Boolean);
    rejoin = { peer: who, gapsByPeer, recovered, logsComparedFrom: logs.from };
    if (!peers[who].previous) reasons.push(`player ${who} never rejoined`);
    else if (!gapsByPeer.every((g) => g.some((x) => x.peer === who))) reasons.push(`the rejoin of player ${who} is not in every peer's data`);
    if (peers[who].previous && !recovered.some((r) => r.rows > 0)) reasons.push(`player ${who} recovered no research rows from the peers (${JSON.stringify(recovered)})`);
  }
  // desync recovery: what every peer recorded (the agreed source and rule) and who loaded a state
  let resync;
  if (o.desyncPolicy === 'resync') {
    const byPeer = peers.map((p) => [...p.sp.data.episodes.values()].flatMap((e) => e.resyncs.map((r) => ({ episode: e.episode, ...r }))));
    const loadedBy = peers.filter((p) => p.events.some((e) => e.type === 'stateLoaded')).map((p) => p.index);
    resync = { byPeer, loadedBy };
  }
  const healthy = reasons.length === 0;
  const stalls = peers.reduce((s, p) => s + p.stallTicks, 0);
  const waits = peers.reduce((s, p) => s + p.waitTicks, 0);

  return {
    players: o.players,
    frames: o.frames,
    episodesPlanned: o.episodes,
    endOnScore: o.endOnScore,
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
      finalHashesEqual: episodes.length > 0 && hashesAgree,
      timedOut,
    },
    episodes,
    actionLogsIdentical,
    comparedFrames: Math.max(0, compareFrames),
    firstLogMismatch,
    actionLogHashes,
    finalStateFrame,
    finalStateHashes,
    desyncs: desyncEvents.length,
    desyncEvents,
    rollbacks,
    frameAdvantage,
    rejoin,
    resync,
    inputDelayByEpisode: inputDelayByEpisode[0],
    inputDelayByEpisodeByPeer: inputDelayByEpisode,
    stalls,
    waits,
    p2pRatio,
    p2p,
    fallback: fallback.map(({ peer, remotePeer, frame, reason }) => ({ peer, remotePeer, frame, reason })),
    nondeterminism,
    faults,
    errors,
    episodeSummaries,
    rewards,
    framesRun: peers.map((p) => p.framesRun),
    finalFrames: peers.map((p) => p.sp.engine.frame),
    confirmedFrames: peers.map((p) => p.sp.confirmedFrame),
    verifiedFrames: peers.map((p) => p.sp.verifiedFrame),
    ticks: peers.map((p) => ({ ticks: p.ticks, stalls: p.stallTicks, waits: p.waitTicks })),
    hashBroadcasts: peers.map((p) => p.hashBroadcasts),
    received: peers.map((p) => p.sp.rx),
    network: netsim.stats(),
    virtualMs: Math.round(world.now),
    wallMs: Math.round(performance.now() - wallStart),
    trafficDump: world.dump ? world.dump.summary() : undefined,
    pyodide: pyodideUsed || undefined,
    perPeer,
  };
}

function round3(x) { return Math.round(x * 1000) / 1000; }

function mode0(o) {
  return o.corruptAt != null ? 'corrupt' : (o.syncTest > 0 && o.nondeterministic) ? 'nondeterminism' : 'normal';
}

/** scripts/demo --data-out DIR: each peer's research data: the shared columns, and its local ones. */
export async function writeDataOut(dir, result, world) {
  const fs = await import('node:fs');
  const path = await import('node:path');
  fs.mkdirSync(dir, { recursive: true });
  const files = [];
  for (const p of world.peers) {
    const d = p.sp.data;
    const shared = path.join(dir, `peer${p.index}.csv`);
    fs.writeFileSync(shared, d.exportSession({ columns: d.sharedColumns }));
    const local = path.join(dir, `peer${p.index}.local.csv`);
    fs.writeFileSync(local, d.exportSession({ columns: ['episode', 'episodeFrame', 'frame', ...d.localColumns] }));
    files.push(shared, local);
  }
  return files;
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
