// Shared helpers of the node tests: ONE seeded RNG (createRng of web/netsim.js), ONE toy game, and
// worlds of SessionPeers over the network simulator (SimWorld of web/sim_session.js). Every node
// test that drives an engine drives it through the code a page runs: SessionPeer (web/peer.js)
// and its frame driver (web/driver.js). No test keeps its own link, peer loop or game.
import assert from 'node:assert/strict';
import { loadP2PSync } from '../../web/p2psync.js';
import { SimWorld } from '../../web/sim_session.js';
import { SessionPeer } from '../../web/peer.js';
import { createRng } from '../../web/netsim.js';

export { createRng };
export const FRAME_MS = 1000 / 30;

let libPromise = null;
/** The p2psync module (loaded once per test file). */
export function loadLib() {
  libPromise ??= loadP2PSync();
  return libPromise;
}

// ------------------------------------------------------------------------------------ the toy game

const MOVES = [0, 1, -1, 7, -7];
const decoder = new TextDecoder();

/** A toy game (createToyGame options) in the initial state of episode `episode`. */
export function toyGameAt(episode, options) {
  const g = createToyGame(options);
  for (let k = 0; k < episode; k++) g.reset();
  return g;
}

/**
 * The toy game of the node tests (a driver.js env adapter). State (JSON text):
 *   {ep, f, h, pos[], score[]}   ep = reset() count (the episode), f = episode frame, h = a rolling
 *   FNV hash of every action so far, pos = positions, score = per-actor scores.
 * A step mixes every actor's action into h; when h's low 5 bits are 0, actor (h >>> 8) % actors
 * scores 1 (its step reward). A score therefore depends on every input so far: a late input can
 * move it, and with it an end decided on the state.
 * Options:
 *   actors (2)          players + bots
 *   seed (0)            the initial state (another seed: another initial state)
 *   endOnScore (0)      terminated once a score reaches it (0: never)
 *   endAt (null)        a number F: the step of episode frame F terminates; or fn(state) -> bool,
 *                       asked after every step
 *   nondeterministic    mixes a hidden call counter into h: a replay gives another state
 *   batchReplay         adds replay(actionsList, saveFlags) -> {states, results} (stops at an end)
 * step() returns {terminated, truncated: false, rewards: number[]}. stats counts steps, replay
 * calls and loads.
 */
export function createToyGame({ actors = 2, seed = 0, endOnScore = 0, endAt = null, nondeterministic = false, batchReplay = false } = {}) {
  let s = null;
  let hidden = 0;
  const stats = { steps: 0, replayCalls: 0, replaySteps: 0, replayEnds: 0, loads: 0, resets: 0 };
  const init = (ep) => {
    s = { ep, f: 0, h: (2166136261 ^ Math.imul(seed + 1, 0x9e3779b1)) >>> 0, pos: new Array(actors).fill(0), score: new Array(actors).fill(0) };
  };
  const ended = () => (endOnScore > 0 && s.score.some((v) => v >= endOnScore)) ||
    (typeof endAt === 'number' ? s.f > endAt : typeof endAt === 'function' ? !!endAt(s) : false);
  function step(actions) {
    const rewards = new Array(actors).fill(0);
    for (let i = 0; i < actors; i++) {
      const a = (actions[i] ?? 0) & 255;
      s.h = Math.imul(s.h ^ (a + 31 * i), 16777619) >>> 0;
      s.pos[i] += MOVES[a % 5];
    }
    if (nondeterministic) s.h = (s.h + ++hidden) >>> 0;
    if ((s.h & 31) === 0) {
      const k = (s.h >>> 8) % actors;
      s.score[k]++;
      rewards[k] = 1;
    }
    s.f++;
    stats.steps++;
    return { terminated: ended(), truncated: false, rewards };
  }
  const game = {
    actors,
    stats,
    step,
    getState: () => JSON.stringify(s),
    setState(state) {
      stats.loads++;
      s = JSON.parse(typeof state === 'string' ? state : decoder.decode(state));
    },
    reset() {
      stats.resets++;
      init(s.ep + 1);
    },
    rewards: () => Object.fromEntries(s.score.map((v, i) => [i, v])),
    corrupt() { s.h = (s.h ^ 0xdeadbeef) >>> 0; },
    get state() { return s; },
    get frame() { return s.f; },
    get done() { return ended(); },
  };
  if (batchReplay) {
    game.replay = (list, flags) => {
      stats.replayCalls++;
      const states = [], results = [];
      for (let k = 0; k < list.length; k++) {
        states.push(flags && flags[k] ? game.getState() : null);
        const r = step(list[k]);
        stats.replaySteps++;
        results.push(r);
        if (r.terminated || r.truncated) {
          if (k < list.length - 1) stats.replayEnds++;  // stopped before the end of the list
          break;
        }
      }
      return { states, results };
    };
  }
  init(0);
  return game;
}

/**
 * Where an env ends an episode on the confirmed timeline of `sp` (a SessionPeer): steps `env` (a
 * fresh env in the episode's initial state) through the confirmed actions of the episode that
 * started at session frame `start`, up to `lastFrame`, asking `ended(result, env)` after every
 * step (default: the result says terminated or truncated). Returns the episode frame of the
 * first step that ends it, or -1.
 */
export function firstEndOnLog(sp, { start, lastFrame, env, ended = (r) => r.terminated || r.truncated }) {
  const g = env;
  const n = sp.numActors;
  const log = sp.actionLogBytes(start, lastFrame);
  for (let f = 0; f * n < log.length; f++) {
    const r = g.step(log.subarray(f * n, f * n + n));
    if (ended(r, g)) return f;
  }
  return -1;
}

// ------------------------------------------------------------------------------------ env wrappers

const later = (fn) => new Promise((resolve, reject) => setImmediate(() => { try { resolve(fn()); } catch (e) { reject(e); } }));

/** `env` behind Promises (an async env adapter, e.g. one in a worker): every method answers on a
 * later turn of the event loop. The actions view is copied at the call (it is only valid then). */
export function asyncEnv(env) {
  const w = {
    step(actions, info) {
      const a = Uint8Array.from(actions);
      const i = { ...info };
      return later(() => env.step(a, i));
    },
    getState: () => later(() => env.getState()),
    setState: (state) => {
      const copy = typeof state === 'string' ? state : Uint8Array.from(state);
      return later(() => env.setState(copy));
    },
    reset: (...args) => later(() => env.reset(...args)),
    rewards: () => later(() => env.rewards()),
  };
  if (typeof env.replay === 'function') {
    w.replay = (list, flags, infos) => {
      const l = list.map((a) => Array.from(a));
      const f = flags ? Array.from(flags) : flags;
      return later(() => env.replay(l, f, infos));
    };
  }
  return w;
}

/** `env` corrupted (env.corrupt()) right after every step of session frame `frame`, in normal
 * steps and in replays (no batched replay: the driver steps replays one by one). */
export function corruptAfter(env, frame) {
  return {
    step(actions, info) {
      const r = env.step(actions, info);
      if (info.frame === frame) env.corrupt();
      return r;
    },
    getState: () => env.getState(),
    setState: (s) => env.setState(s),
    reset: () => env.reset(),
    rewards: () => env.rewards(),
  };
}

// ------------------------------------------------------------------------------------ worlds

/**
 * A SimWorld (web/sim_session.js) of `players` SessionPeers, each with its own toy game.
 * Options: lib, players (2), numBots (0), game (toy game options of every peer), gameFor(i)
 * (per-peer options on top), engineConfig, and every SimWorld option (profile, overrides, seed,
 * configFor, episodes, driverFor, envFor, actionChangeProb, fps, onLog).
 * The world gets `memory0`: every engine's memoryBytes() at creation.
 */
export function toyWorld({ lib, players = 2, numBots = 0, game = {}, gameFor = () => ({}), engineConfig = {}, ...rest }) {
  const envs = Array.from({ length: players }, (_, i) => createToyGame({ actors: players + numBots, ...game, ...gameFor(i) }));
  const w = new SimWorld({ lib, envs, players, engineConfig: numBots ? { numBots, ...engineConfig } : engineConfig, ...rest });
  w.memory0 = w.peers.map((p) => p.sp.engine.memoryBytes());
  return w;
}

/**
 * Runs `frames` frame periods of `w`, checking after every tick that no peer's confirmed frame
 * went back within an episode.
 */
export function runChecked(w, frames) {
  const last = w.peers.map((p) => ({ episode: p.sp.episode, confirmed: p.sp.confirmedFrame }));
  const check = () => {
    for (const p of w.peers) {
      const l = last[p.index];
      if (p.sp.episode === l.episode) {
        assert.ok(p.sp.confirmedFrame >= l.confirmed, `peer ${p.index}: the confirmed frame went back (${l.confirmed} -> ${p.sp.confirmedFrame})`);
      }
      l.episode = p.sp.episode;
      l.confirmed = p.sp.confirmedFrame;
    }
    return false;
  };
  return w.runUntil(check, w.now + frames * w.dt);
}

/** One line describing every peer of `w` (for assertion messages). */
export function describeWorld(w) {
  return JSON.stringify(w.peers.map((p) => ({
    i: p.index, frame: p.sp.frame, status: p.sp.status, confirmed: p.sp.confirmedFrame, verified: p.sp.verifiedFrame,
    episode: p.sp.episode, ends: p.sp.episodeResults.map((e) => `${e.episode}@${e.frame}${e.truncated ? 't' : ''}`),
    framesRun: p.framesRun, rollbacks: p.sp.counters.rollbacks, stalls: p.stallTicks, desyncs: p.desyncs.length,
    errors: p.errors.map((e) => e.reason),
  })));
}

/**
 * The honest-peer checks: identical confirmed action logs over at least `minCompared` frames, no
 * desync / nondeterminism / engine error, every step reported to the engine in plan order (none
 * refused, none left unreported), memoryBytes() as at creation and, with `verifiedWithin`, hashes
 * verified up to that many frames behind the engine's frame. Returns compareLogs().
 */
export function assertInSync(w, { minCompared = 1, verifiedWithin = null } = {}) {
  const s = describeWorld(w);
  const logs = w.compareLogs();
  assert.equal(logs.gap, false, `no confirmed frame left the ring unlogged: ${s}`);
  assert.equal(logs.identical, true, `confirmed action logs identical (first mismatch ${JSON.stringify(logs.firstMismatch)}): ${s}`);
  assert.ok(logs.compared >= minCompared, `${logs.compared} >= ${minCompared} confirmed frames compared: ${s}`);
  for (const p of w.peers) {
    const i = p.index;
    assert.deepEqual(p.desyncs, [], `peer ${i}: no desync`);
    assert.deepEqual(p.nondeterminism, [], `peer ${i}: no nondeterminism`);
    assert.deepEqual(p.errors, [], `peer ${i}: no engine error`);
    const m = p.sp.engine.exportSessionMetrics();
    assert.equal(m.sync.desyncs, 0, `peer ${i}: no desync counted`);
    assert.equal(m.session.badStepReports, 0, `peer ${i}: every step was reported in plan order`);
    assert.equal(m.session.unreportedSteps, 0, `peer ${i}: no planned step went unreported`);
    assert.equal(p.sp.engine.memoryBytes(), w.memory0[i], `peer ${i}: memoryBytes unchanged`);
    if (verifiedWithin !== null) {
      assert.ok(m.session.verifiedFrame > p.sp.engine.frame - verifiedWithin,
        `peer ${i}: hashes verified near the end (${m.session.verifiedFrame} vs frame ${p.sp.engine.frame}): ${s}`);
    }
  }
  return logs;
}

/**
 * One SessionPeer alone (its messages go nowhere): for tests that feed an engine crafted packets
 * while it runs frames through the shared driver. clock.now is the virtual time.
 */
export function soloPeer(lib, config, env) {
  const clock = { now: 0 };
  // No peer ever answers its READY: the episode's start barrier opens at once (readyTimeoutMs 0)
  // unless the test sets another timeout.
  const sp = new SessionPeer({
    lib, config: { readyTimeoutMs: 0, ...config }, env, now: () => clock.now,
    transport: { sendP2P: () => true, emitRelay: () => {}, bufferedAmount: () => 0 },
  });
  return { sp, engine: sp.engine, clock };
}
