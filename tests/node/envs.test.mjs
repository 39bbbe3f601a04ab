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
    const { states: saved, results } = g.replay(acts.slice(10, 20), (i) => i % 5 === 0);
    assert.equal(saved[0], states[10]); assert.equal(saved[5], states[15]); assert.equal(saved[1], null);
    assert.equal(results.length, 10);
    for (const r of results) assert.deepEqual(Object.keys(r).sort(), ['rewards', 'terminated', 'truncated']);
    assert.ok(results.every((r) => !r.terminated && !r.truncated));
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
    const { states: saved, results } = A.replay(acts.slice(10, 20), [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert.equal(saved.length, 10);
    assert.equal(results.length, 10);
    assert.ok(results.every((r) => !r.terminated && !r.truncated && r.rewards.length === 3));
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

  // ---- the JS and Python envs agree: the same rules, the same state text, the same ends.
  // (Their RNGs differ: states stay byte-identical until a coin respawns.)

  /** Player 0 walks toward coin 0 (a random step when it bumped); every other actor idles. */
  function walker(seed, actors) {
    const rng = createRng(seed);
    let last = null;
    return (state) => {
      const p = state.players[0];
      const [cx, cy] = state.coins[0];
      const at = `${p.x},${p.y}`;
      let a = cx !== p.x ? (cx > p.x ? 4 : 3) : cy > p.y ? 2 : 1;
      if (at === last) a = 1 + rng.int(4);
      last = at;
      return [a, ...new Array(actors - 1).fill(0)];
    };
  }

  /** A JS game and a Python env on the same state (the JS game's, with `edit` applied). */
  async function pair({ seed, endOnScore = 0, edit = () => {} }) {
    const js = createGridGame({ numPlayers: 2, numBots: 1, seed, endOnScore });
    edit(js.state);
    const pe = await createPyodideEnv({ numPlayers: 2, numBots: 1, seed: 1, pyodide: py });  // end_on_score 0: it comes with the state
    pe.setState(js.getState());
    assert.equal(pe.getState(), js.getState(), 'a JS state loads into Python byte-identically');
    return { js, pe };
  }

  test('JS and Python: step() gives the same {terminated, truncated, rewards} and states; end_on_score ends both on the same step', async () => {
    for (const [seed, endOnScore, startScore] of [[3, 1, 0], [8, 2, 1], [12, 3, 2]]) {
      const { js, pe } = await pair({ seed, endOnScore, edit: (st) => { st.players[0].score = startScore; } });
      try {
        const act = walker(seed, 3);
        for (let f = 0; ; f++) {
          assert.ok(f < 400, `seed ${seed}: player 0 reaches a coin`);
          const a = act(js.state);
          const rj = js.step(a), rp = pe.step(a);
          assert.deepEqual(rp, rj, `seed ${seed}, step ${f}: the same step result`);
          assert.equal(rj.rewards.length, 3, 'a reward per actor (bots included)');
          assert.equal(js.done, rj.terminated || rj.truncated);
          assert.equal(pe.done, js.done);
          if (rj.rewards[0] > 0) {
            // the coin player 0 collected respawned (each env's own RNG): all else is identical
            const strip = (t) => { const o = JSON.parse(t); delete o.rng; delete o.coins; return o; };
            assert.deepEqual(strip(pe.getState()), strip(js.getState()));
            assert.equal(js.state.players[0].score, startScore + 1);
            assert.equal(rj.terminated, startScore + 1 >= endOnScore, `seed ${seed}: ends when the score reaches ${endOnScore}`);
            assert.equal(rj.terminated, true);
            break;
          }
          assert.equal(rj.terminated, false);
          assert.equal(pe.getState(), js.getState(), `seed ${seed}, step ${f}: byte-identical states`);
        }
      } finally {
        pe.destroy();
      }
    }
    // end_on_score 0 never ends: the same walk collects a coin without ending anything
    const { js, pe } = await pair({ seed: 3 });
    try {
      const act = walker(3, 3);
      let r;
      do { const a = act(js.state); r = js.step(a); assert.deepEqual(pe.step(a), r); } while (r.rewards[0] === 0);
      assert.equal(r.terminated, false);
    } finally {
      pe.destroy();
    }
  });

  test('JS and Python: max_frames truncates both on the same step', async () => {
    const { js, pe } = await pair({ seed: 5, edit: (st) => { st.max_frames = 7; } });
    try {
      for (let f = 1; f <= 7; f++) {
        const rj = js.step([0, 0, 0]), rp = pe.step([0, 0, 0]);
        assert.deepEqual(rp, rj);
        assert.equal(rj.truncated, f === 7, `frame ${f}`);
        assert.equal(rj.terminated, false);
        assert.equal(pe.getState(), js.getState());
      }
      assert.equal(js.frame, 7);
      assert.equal(pe.frame, 7);
    } finally {
      pe.destroy();
    }
  });

  test('JS and Python: replay() stops after the step that ends the episode, with the same states and results', async () => {
    const { js, pe } = await pair({ seed: 8, endOnScore: 2, edit: (st) => { st.players[0].score = 1; } });
    try {
      const start = js.getState();
      // the actions of a walk that ends the episode at step k, then 10 more
      const act = walker(8, 3);
      const list = [];
      const pre = [];
      let k = -1;
      for (let f = 0; k < 0; f++) {
        assert.ok(f < 400);
        const a = act(js.state);
        pre.push(js.getState());
        list.push(a);
        if (js.step(a).terminated) k = f;
      }
      const endJs = js.getState();
      for (let f = 0; f < 10; f++) list.push([1 + (f % 4), f % 5, 0]);
      const flags = list.map(() => 1);
      js.setState(start);
      const rj = js.replay(list, flags);
      const rp = pe.replay(list, flags);
      for (const [name, r] of [['JS', rj], ['Python', rp]]) {
        assert.equal(r.results.length, k + 1, `${name}: stopped after step ${k}`);
        assert.equal(r.results[k].terminated, true, name);
        assert.ok(r.results.slice(0, k).every((x) => !x.terminated && !x.truncated), name);
        assert.deepEqual(r.states.slice(0, k + 1), pre, `${name}: the pre-step states`);
        assert.ok(r.states.slice(k + 1).every((x) => x === null), `${name}: nothing past the end`);
      }
      assert.deepEqual(rp.results, rj.results);
      assert.equal(js.getState(), endJs, 'JS: the state after the ending step');
      assert.equal(pe.frame, js.frame);
      assert.equal(js.frame, JSON.parse(start).frame + k + 1);
    } finally {
      pe.destroy();
    }
  });
});
