// grid_game.js — a small, fast, deterministic multi-agent grid game (the JS "env adapter").
//
// Rules (everything is integer arithmetic; the RNG state is part of the game state):
//  * A width×height grid (default 16×12). Actors = players (2..4) then bots (0..8).
//  * Actions: 0 noop, 1 up (y-1), 2 down (y+1), 3 left (x-1), 4 right (x+1); any other value = noop.
//  * Movement is resolved sequentially in actor order (players, then bots): an actor moves to its
//    target cell unless it is outside the grid or occupied by another actor (as already moved) —
//    a bump, and it stays.
//  * Then, in actor order, an actor standing on a coin collects it (+1 score; for players this is
//    also the step reward) and the coin respawns at a free cell drawn from the state's xorshift32 RNG.
//  * The episode ends (terminated) when endOnScore > 0 and a player's score reaches endOnScore —
//    a condition on the simulated state, so a late input can move it — and is cut (truncated)
//    when maxFrames > 0 and frame ≥ maxFrames.
//
// getState() is canonical JSON text: keys sorted, no spaces — byte-identical to Python's
// json.dumps(state, sort_keys=True, separators=(',', ':')) for the same (integer-only) data.

/**
 * canonicalJSON(value) → string. Objects with sorted keys, no whitespace, strings escaped like
 * Python's json.dumps default (ensure_ascii: anything outside ' '..'~' as lowercase \uXXXX). Numbers must be
 * finite; integers print identically in Python and JS (non-integers print in JS form — keep state
 * integer-only). undefined-valued object keys are skipped (as JSON.stringify does).
 */
export function canonicalJSON(value) {
  const out = [];
  write(value, out);
  return out.join('');
}

const ESC = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function quote(s) {
  // fast path: printable ASCII without quote/backslash
  if (/^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/.test(s)) return '"' + s + '"';
  let r = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s[i], code = s.charCodeAt(i);
    if (ESC[c]) r += ESC[c];
    else if (code < 0x20 || code > 0x7e) r += '\\u' + code.toString(16).padStart(4, '0');
    else r += c;
  }
  return r + '"';
}

function write(v, out) {
  switch (typeof v) {
    case 'number':
      if (!Number.isFinite(v)) throw new RangeError('canonicalJSON: non-finite number');
      out.push(Object.is(v, -0) ? '0' : String(v));
      return;
    case 'string': out.push(quote(v)); return;
    case 'boolean': out.push(v ? 'true' : 'false'); return;
    case 'bigint': out.push(v.toString()); return;
    case 'object':
      if (v === null) { out.push('null'); return; }
      if (Array.isArray(v) || ArrayBuffer.isView(v)) {
        out.push('[');
        for (let i = 0; i < v.length; i++) {
          if (i) out.push(',');
          write(v[i] === undefined ? null : v[i], out);
        }
        out.push(']');
        return;
      }
      {
        const keys = Object.keys(v).sort();
        out.push('{');
        let first = true;
        for (const k of keys) {
          const x = v[k];
          if (x === undefined || typeof x === 'function') continue;
          if (!first) out.push(',');
          first = false;
          out.push(quote(k), ':');
          write(x, out);
        }
        out.push('}');
      }
      return;
    default:
      throw new TypeError(`canonicalJSON: unsupported type ${typeof v}`);
  }
}

// xorshift32 — state is a non-zero uint32 stored in the game state.
function xorshift32(s) {
  s ^= s << 13; s >>>= 0;
  s ^= s >>> 17;
  s ^= s << 5; s >>>= 0;
  return s;
}

function seedState(seed) {
  // splitmix-style scramble of the seed into a non-zero uint32
  let x = (Number(seed) >>> 0) ^ 0x9e3779b9;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x === 0 ? 0x6d2b79f5 : x;
}

const DX = [0, 0, 0, -1, 1];
const DY = [0, -1, 1, 0, 0];

function textOf(s) {
  if (typeof s === 'string') return s;
  if (s instanceof Uint8Array || ArrayBuffer.isView(s) || s instanceof ArrayBuffer) return new TextDecoder().decode(s);
  return null;
}

/**
 * createGridGame({ numPlayers = 2, numBots = 0, seed = 1, width = 16, height = 12, numCoins = 3,
 *                  maxFrames = 0, endOnScore = 0 }) → adapter (the driver.js env interface):
 *   step(actions) → {terminated, truncated, rewards}   actions: Uint8Array | number[] (players then
 *                            bots; missing = noop); rewards: this step's reward per actor
 *   getState() → string      canonical JSON
 *   setState(state)          string | Uint8Array (UTF-8 JSON) | state object
 *   reset(seed?)             back to frame 0 (seed defaults to the current episode's seed)
 *   replay(framesActions, saveFlags?) → {states, results}   steps every action array, and stops after
 *                            the first step that ends the episode; states[i] is the pre-step state of
 *                            frame i when saveFlags[i] (or saveFlags(i)) is truthy, results[i] its step result
 *   rewards() → { '0': score, ... }   cumulative per-player episode scores
 *   lastRewards() → number[]           per-player rewards of the last step
 *   botActions() → number[]            deterministic greedy bot policy for the current state
 *   corrupt()                flips player 0's score by +1 (for desync tests)
 *   render() → string        ASCII picture
 *   frame, done, numPlayers, numBots, numActors (getters); state (the live state object)
 */
export function createGridGame({ numPlayers = 2, numBots = 0, seed = 1, width = 16, height = 12, numCoins = 3, maxFrames = 0, endOnScore = 0 } = {}) {
  if (!Number.isInteger(numPlayers) || numPlayers < 1 || numPlayers > 8) throw new RangeError('grid_game: numPlayers must be 1..8');
  if (!Number.isInteger(numBots) || numBots < 0 || numBots > 8) throw new RangeError('grid_game: numBots must be 0..8');
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 4 || height < 4) throw new RangeError('grid_game: width/height must be integers ≥ 4');
  const numActors = numPlayers + numBots;
  if (numActors + numCoins > width * height / 2) throw new RangeError('grid_game: grid too small');

  let S; // live state

  function startPositions() {
    const w = width, h = height;
    const corners = [[1, 1], [w - 2, h - 2], [w - 2, 1], [1, h - 2], [w >> 1, 1], [w >> 1, h - 2], [1, h >> 1], [w - 2, h >> 1]];
    const pos = [];
    for (let i = 0; i < numPlayers; i++) pos.push(corners[i]);
    for (let i = 0; i < numBots; i++) pos.push([(w >> 1) - 2 + (i % 4), (h >> 1) - 1 + (i >> 2)]);
    return pos;
  }

  function occupied(x, y, skipCoin) {
    for (const a of S.players) if (a.x === x && a.y === y) return true;
    for (const a of S.bots) if (a.x === x && a.y === y) return true;
    for (let c = 0; c < S.coins.length; c++) if (c !== skipCoin && S.coins[c][0] === x && S.coins[c][1] === y) return true;
    return false;
  }

  function nextRand() {
    S.rng = xorshift32(S.rng);
    return S.rng;
  }

  function placeCoin(c) {
    const cells = width * height;
    let idx = -1;
    for (let tries = 0; tries < 16; tries++) {
      const r = nextRand() % cells;
      if (!occupied(r % width, (r / width) | 0, c)) { idx = r; break; }
    }
    if (idx < 0) {
      const start = nextRand() % cells;
      for (let k = 0; k < cells; k++) {
        const r = (start + k) % cells;
        if (!occupied(r % width, (r / width) | 0, c)) { idx = r; break; }
      }
    }
    S.coins[c] = [idx % width, (idx / width) | 0];
  }

  function init(sd) {
    const pos = startPositions();
    S = {
      bots: [], coins: [], end_on_score: endOnScore, frame: 0, height, max_frames: maxFrames, num_bots: numBots,
      num_players: numPlayers, players: [], rng: seedState(sd), seed: Number(sd) >>> 0, width,
    };
    for (let i = 0; i < numPlayers; i++) S.players.push({ reward: 0, score: 0, x: pos[i][0], y: pos[i][1] });
    for (let i = 0; i < numBots; i++) S.bots.push({ score: 0, x: pos[numPlayers + i][0], y: pos[numPlayers + i][1] });
    for (let c = 0; c < numCoins; c++) S.coins.push([-1, -1]);
    for (let c = 0; c < numCoins; c++) placeCoin(c);
  }

  function actorAt(i) { return i < numPlayers ? S.players[i] : S.bots[i - numPlayers]; }

  function terminated() {
    if (!(S.end_on_score > 0)) return false;
    for (const p of S.players) if (p.score >= S.end_on_score) return true;
    return false;
  }
  function truncated() { return S.max_frames > 0 && S.frame >= S.max_frames; }

  function step(actions) {
    const P = S.players;
    const before = S.bots.map((b) => b.score);
    for (let i = 0; i < numPlayers; i++) P[i].reward = 0;
    for (let i = 0; i < numActors; i++) {
      let a = actions && i < actions.length ? actions[i] | 0 : 0;
      if (a < 0 || a > 4) a = 0;
      if (a === 0) continue;
      const actor = actorAt(i);
      const nx = actor.x + DX[a], ny = actor.y + DY[a];
      if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
      let blocked = false;
      for (let j = 0; j < numActors; j++) {
        if (j === i) continue;
        const o = actorAt(j);
        if (o.x === nx && o.y === ny) { blocked = true; break; }
      }
      if (!blocked) { actor.x = nx; actor.y = ny; }
    }
    for (let i = 0; i < numActors; i++) {
      const actor = actorAt(i);
      for (let c = 0; c < S.coins.length; c++) {
        const coin = S.coins[c];
        if (coin[0] === actor.x && coin[1] === actor.y) {
          actor.score += 1;
          if (i < numPlayers) actor.reward += 1;
          placeCoin(c);
        }
      }
    }
    S.frame += 1;
    const rewards = new Array(numActors);
    for (let i = 0; i < numPlayers; i++) rewards[i] = P[i].reward;
    for (let b = 0; b < numBots; b++) rewards[numPlayers + b] = S.bots[b].score - before[b];
    return { terminated: terminated(), truncated: truncated(), rewards };
  }

  function getState() { return canonicalJSON(S); }

  function setState(state) {
    const text = textOf(state);
    const obj = text !== null ? JSON.parse(text) : JSON.parse(JSON.stringify(state));
    if (!obj || typeof obj !== 'object' || !Array.isArray(obj.players) || !Array.isArray(obj.bots) || !Array.isArray(obj.coins)) {
      throw new TypeError('grid_game: bad state');
    }
    if (obj.players.length !== numPlayers || obj.bots.length !== numBots || obj.width !== width || obj.height !== height ||
        typeof obj.end_on_score !== 'number') {
      throw new RangeError('grid_game: state does not match this game configuration');
    }
    S = obj;
  }

  function replay(framesActions, saveFlags) {
    const states = new Array(framesActions.length).fill(null);
    const results = [];
    for (let i = 0; i < framesActions.length; i++) {
      const want = typeof saveFlags === 'function' ? saveFlags(i) : saveFlags && saveFlags[i];
      if (want) states[i] = getState();
      const r = step(framesActions[i]);
      results.push(r);
      if (r.terminated || r.truncated) break;
    }
    return { states, results };
  }

  function rewards() {
    const r = {};
    for (let i = 0; i < numPlayers; i++) r[i] = S.players[i].score;
    return r;
  }

  function botActions() {
    // greedy: move along the larger axis toward the nearest coin (Manhattan; ties → lower coin index)
    const acts = [];
    for (const b of S.bots) {
      let best = -1, bd = Infinity;
      for (let c = 0; c < S.coins.length; c++) {
        const d = Math.abs(S.coins[c][0] - b.x) + Math.abs(S.coins[c][1] - b.y);
        if (d < bd) { bd = d; best = c; }
      }
      if (best < 0 || bd === 0) { acts.push(0); continue; }
      const dx = S.coins[best][0] - b.x, dy = S.coins[best][1] - b.y;
      if (Math.abs(dx) >= Math.abs(dy)) acts.push(dx > 0 ? 4 : 3);
      else acts.push(dy > 0 ? 2 : 1);
    }
    return acts;
  }

  function render() {
    const g = [];
    for (let y = 0; y < height; y++) g.push(new Array(width).fill('.'));
    for (const [x, y] of S.coins) if (x >= 0) g[y][x] = '$';
    S.players.forEach((p, i) => { g[p.y][p.x] = String(i); });
    S.bots.forEach((b, i) => { g[b.y][b.x] = String.fromCharCode(97 + i); });
    return g.map((r) => r.join('')).join('\n');
  }

  init(seed);

  return {
    step,
    getState,
    setState,
    reset(sd) { init(sd === undefined ? S.seed : sd); },
    replay,
    rewards,
    lastRewards() { return S.players.map((p) => p.reward); },
    botActions,
    corrupt() { S.players[0].score += 1; },
    render,
    destroy() {},
    get frame() { return S.frame; },
    get done() { return terminated() || truncated(); },
    get state() { return S; },
    numPlayers,
    numBots,
    numActors,
    kind: 'grid_game',
  };
}

export default createGridGame;
