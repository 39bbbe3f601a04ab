// pyodide_env.js — env adapter around web/envs/gridworld.py running in Pyodide (Node and browser).
//
// Python is called only through PyProxy functions obtained once at creation (bound methods of a
// bridge object), never through runPython per frame: a proxy call costs tens of µs, runPython ~1 ms.
// Actions cross the boundary as separate int arguments (stepFn(a0, a1, ...)), which Pyodide converts
// without creating JsProxy objects.
//
// Loading Pyodide:
//   * options.pyodide   — an existing instance (several envs may share one; the module is loaded once)
//   * options.loadPyodide — the page's loader (e.g. from pyodide.mjs); options.indexURL is passed to it
//   * else globalThis.loadPyodide (a <script> tag), else import('pyodide') (Node / import maps).
// Loading gridworld.py: options.source (text) or options.sourceURL, else the file next to this module
// (Node: read from disk; browser: fetched relative to import.meta.url).

const MODULE_NAME = 'p2psync_gridworld';

function isNode() {
  return typeof process !== 'undefined' && !!(process.versions && process.versions.node) && typeof window === 'undefined';
}

async function resolveLoader(options) {
  if (typeof options.loadPyodide === 'function') return options.loadPyodide;
  if (typeof globalThis.loadPyodide === 'function') return globalThis.loadPyodide;
  const spec = 'pyodide'; // variable specifier: bundlers leave it alone, browsers need an import map
  try {
    const mod = await import(/* @vite-ignore */ /* webpackIgnore: true */ spec);
    return mod.loadPyodide || (mod.default && mod.default.loadPyodide);
  } catch (e) {
    throw new Error(`pyodide_env: no Pyodide loader (pass options.loadPyodide or options.pyodide): ${e && e.message}`);
  }
}

let cachedSource = null;

/** Text of gridworld.py (cached). */
export async function loadGridworldSource(sourceURL) {
  if (!sourceURL && cachedSource !== null) return cachedSource;
  const url = sourceURL ? new URL(sourceURL, import.meta.url) : new URL('./gridworld.py', import.meta.url);
  let text;
  if (url.protocol === 'file:' && isNode()) {
    const fsSpec = 'node:fs/promises';
    const { readFile } = await import(/* @vite-ignore */ /* webpackIgnore: true */ fsSpec);
    text = await readFile(url, 'utf8');
  } else {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`pyodide_env: fetching ${url} failed: ${res.status}`);
    text = await res.text();
  }
  if (!sourceURL) cachedSource = text;
  return text;
}

const INSTALL_PY = `
import sys, types
def _p2psync_install(src, force):
    if force or '${MODULE_NAME}' not in sys.modules:
        m = types.ModuleType('${MODULE_NAME}')
        m.__file__ = 'gridworld.py'
        sys.modules['${MODULE_NAME}'] = m
        exec(compile(src, 'gridworld.py', 'exec'), m.__dict__)
    return sys.modules['${MODULE_NAME}']
_p2psync_install
`;

/**
 * Load (once per Pyodide instance) gridworld.py as the module 'p2psync_gridworld'.
 * Returns a PyProxy of the module (caller destroys it).
 */
export async function installGridworld(pyodide, { source, sourceURL, force = false } = {}) {
  const src = source ?? (await loadGridworldSource(sourceURL));
  const install = pyodide.runPython(INSTALL_PY);
  try {
    return install(src, !!force);
  } finally {
    install.destroy();
  }
}

/**
 * createPyodideEnv({ numPlayers = 2, numBots = 0, seed = 1, nondeterministic = false, width = 16,
 *   height = 12, numCoins = 3, maxFrames = 0, endOnScore = 0, loadPyodide, indexURL, pyodide, source,
 *   sourceURL }) → Promise<adapter> (the driver.js env interface):
 *   step(actions) → {terminated, truncated, rewards}   actions: Uint8Array | number[] (players then bots)
 *   stepAndGetState(actions) → string   one proxy call: step then the post-step state
 *   getState() → string           exactly json.dumps(state, sort_keys=True, separators=(',', ':'))
 *   setState(state)               string | Uint8Array (UTF-8) | plain object
 *   reset(seed?)
 *   replay(framesActions, saveFlags?) → {states, results}  all frames in ONE Python call, stopping after
 *                                 the first step that ends the episode; states[i] is the pre-step state
 *                                 of frame i when saveFlags[i] (or saveFlags(i)) is truthy
 *   rewards() → { '0': score, ... }   cumulative per-player scores; lastRewards() → number[]
 *   corrupt(), destroy()
 *   seedHiddenRandom(n)           reseed the nondeterministic variant's hidden module-level RNG
 *   frame, done (getters); numPlayers, numBots, numActors, nondeterministic, pyodide
 */
export async function createPyodideEnv(options = {}) {
  const {
    numPlayers = 2, numBots = 0, seed = 1, nondeterministic = false, width = 16, height = 12,
    numCoins = 3, maxFrames = 0, endOnScore = 0, indexURL,
  } = options;
  let pyodide = options.pyodide;
  if (!pyodide) {
    const loader = await resolveLoader(options);
    pyodide = await loader(indexURL ? { indexURL } : {});
  }
  const mod = await installGridworld(pyodide, { source: options.source, sourceURL: options.sourceURL });
  // attribute proxies are borrowed from `mod`: copy them before destroying it
  const create = mod.p2psync_create.copy();
  const seedHidden = mod.seed_hidden_random.copy();
  mod.destroy();
  let bridge;
  try {
    bridge = create(numPlayers, numBots, seed >>> 0, !!nondeterministic, width, height, numCoins, maxFrames, endOnScore);
  } finally {
    create.destroy();
  }
  // PyProxy functions obtained once (bound methods; copied so they own their reference).
  const stepFn = bridge.step.copy();
  const stepGetFn = bridge.step_get_state.copy();
  const getStateFn = bridge.get_state.copy();
  const setStateFn = bridge.set_state.copy();
  const resetFn = bridge.reset.copy();
  const replayFn = bridge.replay.copy();
  const rewardsFn = bridge.rewards_json.copy();
  const lastRewardsFn = bridge.last_rewards_json.copy();
  const frameFn = bridge.frame.copy();
  const doneFn = bridge.done.copy();
  const corruptFn = bridge.corrupt.copy();
  const proxies = [stepFn, stepGetFn, getStateFn, setStateFn, resetFn, replayFn, rewardsFn, lastRewardsFn,
    frameFn, doneFn, corruptFn, seedHidden, bridge];
  const numActors = numPlayers + numBots;
  const decoder = new TextDecoder();
  let destroyed = false;

  function call(fn, a) {
    // ints as separate arguments; specialised for the common sizes
    switch (a.length) {
      case 2: return fn(a[0], a[1]);
      case 3: return fn(a[0], a[1], a[2]);
      case 4: return fn(a[0], a[1], a[2], a[3]);
      default: return fn(...Array.from(a, (x) => x | 0));
    }
  }

  // The bridge's step result string 'T U r0 r1 ...' (gridworld.py _Bridge._result).
  function parseResult(text) {
    const p = text.split(' ');
    const rewards = new Array(p.length - 2);
    for (let i = 2; i < p.length; i++) rewards[i - 2] = Number(p[i]);
    return { terminated: p[0] === '1', truncated: p[1] === '1', rewards };
  }

  function check() {
    if (destroyed) throw new Error('pyodide_env: destroyed');
  }

  return {
    step(actions) { check(); return parseResult(call(stepFn, actions)); },
    stepAndGetState(actions) { check(); return call(stepGetFn, actions); },
    getState() { check(); return getStateFn(); },
    setState(state) {
      check();
      let text;
      if (typeof state === 'string') text = state;
      else if (state instanceof Uint8Array || ArrayBuffer.isView(state) || state instanceof ArrayBuffer) text = decoder.decode(state);
      else text = JSON.stringify(state);
      setStateFn(text);
    },
    reset(sd) { check(); if (sd === undefined) resetFn(); else resetFn(sd >>> 0); },
    replay(framesActions, saveFlags) {
      check();
      const n = framesActions.length;
      const flat = new Array(n * numActors).fill(0);
      const flags = new Array(n).fill(0);
      for (let i = 0; i < n; i++) {
        const a = framesActions[i];
        for (let j = 0; j < numActors && j < a.length; j++) flat[i * numActors + j] = a[j] | 0;
        const want = typeof saveFlags === 'function' ? saveFlags(i) : saveFlags && saveFlags[i];
        flags[i] = want ? 1 : 0;
      }
      const res = replayFn(flat, numActors, flags);
      try {
        const [states, results] = res.toJs();
        return {
          states: Array.from(states, (s) => (s === undefined ? null : s)),
          results: Array.from(results, parseResult),
        };
      } finally {
        res.destroy();
      }
    },
    rewards() { check(); return JSON.parse(rewardsFn()); },
    lastRewards() { check(); return JSON.parse(lastRewardsFn()); },
    corrupt() { check(); corruptFn(); },
    seedHiddenRandom(n) { check(); seedHidden(n >>> 0); },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      for (const p of proxies) { try { p.destroy(); } catch { /* already gone */ } }
    },
    get frame() { check(); return frameFn(); },
    get done() { check(); return doneFn(); },
    numPlayers,
    numBots,
    numActors,
    nondeterministic: !!nondeterministic,
    pyodide,
    kind: 'pyodide_gridworld',
  };
}

export default createPyodideEnv;
