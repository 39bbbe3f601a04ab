// Tests for web/envs/grid_game.js and web/envs/pyodide_env.js (node --test tests/node/).
// The Pyodide part loads ONE Pyodide instance (~2-3 s) shared by all its envs.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createGridGame, canonicalJSON } from '../../web/envs/grid_game.js';
import { createPyodideEnv } from '../../web/envs/pyodide_env.js';
import { createRng } from '../../web/netsim.js';

function actionSeq(seed, frames, n) {
  const rng = createRng(seed);
  return Array.from({ length: frames }, () => Array.from({ length: n }, () => rng.int(5)));
}

/** Every object in the parsed JSON has its keys in sorted order, and the text has no whitespace. */
function assertCanonical(text) {
  assert.ok(!/\s/.test(text), 'no whitespace');
  const walk = (v) => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (v && typeof v === 'object') {
      const keys = Object.keys(v);
      assert.deepEqual(keys, [...keys].sort(), 'keys sorted');
      keys.forEach((k) => walk(v[k]));
    } else if (typeof v === 'number') assert.ok(Number.isInteger(v), 'integers only');
  };
  walk(JSON.parse(text));
  assert.equal(canonicalJSON(JSON.parse(text)), text);
}

// ------------------------------------------------------------------------------------------------
describe('grid_game (JS)', () => {
  test('two instances with the same actions give identical getState text at every frame', () => {
    const cfg = { numPlayers: 4, numBots: 2, seed: 17 };
    const a = createGridGame(cfg), b = createGridGame(cfg);
    const acts = actionSeq(1, 500, 6);
    let collected = 0;
    for (const act of acts) {
      a.step(act); b.step(Uint8Array.from(act));
      assert.equal(a.getState(), b.getState());
      collected += a.lastRewards().reduce((s, x) => s + x, 0);
    }
    assert.equal(a.frame, 500);
    assert.ok(collected > 0, 'some coins collected');
    assert.deepEqual(a.rewards(), b.rewards());
    assert.notEqual(createGridGame({ ...cfg, seed: 18 }).getState(), createGridGame(cfg).getState());
  });

  test('save at 10, run to 20, restore, replay the same actions → identical states', () => {
    const g = createGridGame({ numPlayers: 2, numBots: 1, seed: 5 });
    const acts = actionSeq(2, 60, 3);
    const states = [g.getState()];
    for (const act of acts) { g.step(act); states.push(g.getState()); }
    // states[f] = state before stepping frame f
    g.setState(states[10]);
    assert.equal(g.frame, 10);
    for (let f = 10; f < 60; f++) { g.step(acts[f]); assert.equal(g.getState(), states[f + 1]); }
    // batch replay with snapshot flags, state given as UTF-8 bytes
    g.setState(new TextEncoder().encode(states[10]));
    const saved = g.replay(acts.slice(10, 20), (i) => i % 5 === 0);
    assert.equal(saved[0], states[10]); assert.equal(saved[5], states[15]); assert.equal(saved[1], null);
    assert.equal(g.getState(), states[20]);
    g.reset();
    assert.equal(g.getState(), states[0]);
  });

  test('getState is canonical JSON; canonicalJSON matches json.dumps rules', () => {
    const g = createGridGame({ numPlayers: 3, numBots: 2, seed: 9 });
    for (let i = 0; i < 20; i++) g.step([1, 2, 3, 4, 0]);
    assertCanonical(g.getState());
    assert.equal(canonicalJSON({ b: 1, a: [1, { d: null, c: true }], 'é': 'x"\n' }),
      '{"a":[1,{"c":true,"d":null}],"b":1,"\\u00e9":"x\\"\\n"}');
  });

  test('corrupt() changes the state; bot policy is deterministic', () => {
    const g = createGridGame({ numPlayers: 2, numBots: 2, seed: 3 });
    const s = g.getState();
    g.corrupt();
    assert.notEqual(g.getState(), s);
    const h = createGridGame({ numPlayers: 2, numBots: 2, seed: 3 });
    for (let i = 0; i < 100; i++) {
      const acts = [i % 5, (i * 3) % 5, ...h.botActions()];
      h.step(acts);
    }
    assert.ok(h.state.bots.some((b) => b.score > 0), 'greedy bots collect coins');
  });

  test('speed: thousands of steps/s with getState every 5 frames', () => {
    const g = createGridGame({ numPlayers: 4, numBots: 2, seed: 1 });
    const act = new Uint8Array(6);
    const N = 20000;
    for (let i = 0; i < 2000; i++) { g.step(act); if (i % 5 === 0) g.getState(); } // warm up
    const t0 = performance.now();
    for (let i = 0; i < N; i++) { act[i % 6] = i % 5; g.step(act); if (i % 5 === 0) g.getState(); }
    const perSec = N / ((performance.now() - t0) / 1000);
    console.log(`# grid_game: ${Math.round(perSec)} steps/s (getState every 5 frames)`);
    assert.ok(perSec > 5000);
  });
});

// ------------------------------------------------------------------------------------------------
describe('pyodide_env (Python gridworld in Pyodide)', () => {
  let A, B, N, py;
  const FRAMES = 60;

  before(async () => {
    A = await createPyodideEnv({ numPlayers: 2, numBots: 1, seed: 21 });
    py = A.pyodide;
    B = await createPyodideEnv({ numPlayers: 2, numBots: 1, seed: 21, pyodide: py });
    N = await createPyodideEnv({ numPlayers: 2, numBots: 1, seed: 21, pyodide: py, nondeterministic: true });
  });
  after(() => { A?.destroy(); B?.destroy(); N?.destroy(); });

  const acts = actionSeq(4, FRAMES, 3);

  test('determinism: same actions → same getState at every frame', () => {
    assert.equal(A.getState(), B.getState());
    for (const act of acts) {
      A.step(act); B.step(Uint8Array.from(act));
      assert.equal(A.getState(), B.getState());
    }
    assert.equal(A.frame, FRAMES);
    assert.deepEqual(A.rewards(), B.rewards());
    assert.deepEqual(Object.keys(A.rewards()), ['0', '1']);
  });

  test('set_state/get_state round trip: save at 10, run to 20, restore, replay → identical', () => {
    A.reset(21);
    const states = [A.getState()];
    for (const act of acts) states.push(A.stepAndGetState(act));
    A.setState(states[10]);
    assert.equal(A.frame, 10);
    for (let f = 10; f < FRAMES; f++) { A.step(acts[f]); assert.equal(A.getState(), states[f + 1]); }
    // batched replay (one Python call) with snapshot flags; state passed as bytes
    A.setState(new TextEncoder().encode(states[10]));
    const saved = A.replay(acts.slice(10, 20), [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert.equal(saved.length, 10);
    assert.equal(saved[0], states[10]); assert.equal(saved[5], states[15]); assert.equal(saved[3], null);
    assert.equal(A.getState(), states[20]);
    A.reset();
    assert.equal(A.getState(), states[0]);
  });

  test('nondeterministic variant diverges after restore + replay', () => {
    N.seedHiddenRandom(1);
    const saved = [];
    for (let f = 0; f < FRAMES; f++) { if (f === 10) saved.push(N.getState()); N.step(acts[f]); }
    const end1 = N.getState();
    N.setState(saved[0]);
    for (let f = 10; f < FRAMES; f++) N.step(acts[f]);
    assert.equal(N.frame, FRAMES);
    assert.notEqual(N.getState(), end1, 'hidden RNG makes replay differ');
  });

  test("getState text equals json.dumps(sort_keys=True, separators=(',',':')) and matches canonicalJSON", () => {
    const text = A.getState();
    assertCanonical(text);
    const dumps = py.runPython(`
import json
def _p2psync_test_dumps(t):
    return json.dumps(json.loads(t), sort_keys=True, separators=(',', ':'))
_p2psync_test_dumps`);
    try {
      assert.equal(dumps(text), text);
      // the JS canonicalizer agrees with Python on JS game states and awkward strings
      const g = createGridGame({ numPlayers: 4, numBots: 3, seed: 2 });
      for (let i = 0; i < 30; i++) g.step([1, 2, 3, 4, 1, 2, 3]);
      assert.equal(dumps(g.getState()), g.getState());
      const odd = canonicalJSON({ z: 'é\u007f\u0001\t"\\/😀', a: [-0, -5, 123456789012], m: { y: false, b: null } });
      assert.equal(dumps(odd), odd);
    } finally {
      dumps.destroy();
    }
  });

  test('corrupt() changes the state', () => {
    const s = B.getState();
    B.corrupt();
    assert.notEqual(B.getState(), s);
    B.setState(s);
    assert.equal(B.getState(), s);
  });

  test('speed: step + getState through proxies', () => {
    const n = 2000;
    const act = [1, 2, 3];
    for (let i = 0; i < 500; i++) { B.step(act); B.getState(); B.stepAndGetState(act); } // warm up
    let t0 = performance.now();
    for (let i = 0; i < n; i++) { act[0] = i % 5; B.step(act); B.getState(); }
    const sep = ((performance.now() - t0) * 1000) / n;
    t0 = performance.now();
    for (let i = 0; i < n; i++) { act[0] = i % 5; B.stepAndGetState(act); }
    const comb = ((performance.now() - t0) * 1000) / n;
    console.log(`# pyodide_env: step+getState ${sep.toFixed(1)} µs (two calls), stepAndGetState ${comb.toFixed(1)} µs`);
    assert.ok(sep < 2000);
  });
});
