// mug/adapter.js — p2psync in mug's MultiplayerPyodideGame (github chasemcd/mug,
// mug/server/static/js/pyodide_multiplayer_game.js at HEAD), against mug's server as it is.
// The README's "Integration guide: mug's pyodide_multiplayer_game.js" quotes this file; every
// block it shows is here (tests/compat/guide.test.mjs checks it) and runs in the compat tests.
//
//   MugGame           what replaces the GGPO/P2P half of MultiplayerPyodideGame, with mug's field
//                     and method names (myPlayerId, gameId, frameNumber, num_episodes, step(),
//                     sessionMetrics, p2pMetrics, frameDataBuffer, ...)
//   createMugEnvAdapter   mug's Pyodide env behind the env adapter (web/mug/p2psync_mug.py)
//   mugSessionOptions     engine config from mug's scene_metadata (and the action-space check)
//   toMugEpisodeData      the research rows as mug's per-episode data (its CSV columns)
//   mugSessionMetrics     window.game.sessionMetrics with mug's names
import { P2PSyncSession } from '../session.js';
import { MugTransport } from '../transport_mug.js';

/** p2psync carries one byte per action (as mug's own P2P codec does: setUint8). */
export const MAX_ACTION = 255;

/** An action as the engine takes it, or a RangeError naming the limit (never truncated). */
export function checkAction(action, what = 'action') {
  if (!Number.isInteger(action) || action < 0 || action > MAX_ACTION) {
    throw new RangeError(`p2psync: ${what} ${JSON.stringify(action)} is not an integer in 0..${MAX_ACTION} (one byte per action)`);
  }
  return action;
}

/** Throws at config time when mug's scene has an action outside 0..255. */
export function checkMugActionSpace(scene) {
  const mapping = scene.action_mapping || {};
  for (const [key, action] of Object.entries(mapping)) checkAction(action, `scene ${scene.scene_id} action_mapping["${key}"]`);
  if (scene.default_action !== undefined && scene.default_action !== null) checkAction(scene.default_action, `scene ${scene.scene_id} default_action`);
}

/** mug's action-dict key conversion (stepWithActions): numeric strings become numbers. */
export const mugKey = (k) => (typeof k === 'string' && /^\d+$/.test(k) ? Number(k) : k);

/** The non-human agents of mug's policy_mapping, in its order (bots: actions from the page). */
export function botIds(scene) {
  return Object.entries(scene.policy_mapping || {}).filter(([, p]) => p !== 'human').map(([k]) => mugKey(k));
}

/** SyncConfig and session options from mug's scene_metadata. */
export function mugSessionOptions(scene) {
  checkMugActionSpace(scene);
  const bots = botIds(scene);
  return {
    config: {
      inputDelay: scene.input_delay ?? 0,                      // mug: config.input_delay ?? 0
      predictionMethod: scene.action_population_method === 'previous_submitted_action'
        ? 'previous_submitted_action' : 'default_action',     // GymScene default: 'default_action'
      defaultAction: scene.default_action ?? 0,                // mug: config.default_action || 0
      snapshotInterval: scene.snapshot_interval ?? 5,          // mug: config.snapshot_interval ?? 5
      focusPolicy: scene.pause_on_partner_background ? 'pause' : 'predict',
      numBots: bots.length,
    },
    episodes: scene.num_episodes ?? 1,                         // mug: max_episodes
    maxSteps: Math.floor(scene.max_steps ?? 10000),            // mug: max_steps (GymScene 1e4)
    fps: scene.fps || 10,                                      // mug: this.config.fps || 10
  };
}

// ------------------------------------------------------------------------------ the env adapter

let moduleSource = null;
async function loadModuleSource() {
  if (moduleSource !== null) return moduleSource;
  const url = new URL('./p2psync_mug.py', import.meta.url);
  if (url.protocol === 'file:') {
    const fsSpec = 'node:fs/promises';
    const { readFile } = await import(/* @vite-ignore */ fsSpec);
    moduleSource = await readFile(url, 'utf8');
  } else {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`p2psync: fetching ${url} failed: ${res.status}`);
    moduleSource = await res.text();
  }
  return moduleSource;
}

/**
 * mug's env (the Pyodide global `env`, as mug's page creates it) behind the env adapter the
 * session runs (web/driver.js). agentIds: the engine's order, players by index then bots.
 */
export async function createMugEnvAdapter({ pyodide, agentIds, maxSteps, scoreCarryOver = false, envName = 'env' }) {
  const install = pyodide.runPython(`
import sys, types
def _p2psync_mug_install(src):
    if 'p2psync_mug' not in sys.modules:
        m = types.ModuleType('p2psync_mug')
        exec(compile(src, 'p2psync_mug.py', 'exec'), m.__dict__)
        sys.modules['p2psync_mug'] = m
    return sys.modules['p2psync_mug']
_p2psync_mug_install`);
  const mod = install(await loadModuleSource());
  install.destroy();
  const env = pyodide.globals.get(envName);
  const ids = pyodide.toPy(agentIds);
  const py = mod.MugEnvAdapter(env, ids, maxSteps, scoreCarryOver);
  ids.destroy();
  env.destroy();
  mod.destroy();
  const [stepFn, getStateFn, setStateFn, replayFn, resetFn, lastFn] =
    ['step', 'get_state', 'set_state', 'replay', 'reset', 'last_step'].map((m) => py[m]);
  const result = (r) => ({ terminated: !!r[0], truncated: !!r[1], rewards: r[2] });
  const toJs = (proxy) => {
    if (!proxy || typeof proxy.toJs !== 'function') return proxy;
    const v = proxy.toJs({ dict_converter: Object.fromEntries });
    proxy.destroy();
    return v;
  };
  return {
    step: (actions) => result(toJs(stepFn(...actions))),
    getState: () => getStateFn(),
    setState: (text) => { setStateFn(text); },
    replay(actionsList, saveFlags) {
      const [states, results] = toJs(replayFn(actionsList.map((a) => Array.from(a)), Array.from(saveFlags, Boolean)));
      return { states, results: results.map(result) };
    },
    reset: (seed) => { toJs(resetFn(seed ?? null)); },
    rewards: () => toJs(py.cumulative_rewards),
    get cumulativeRewards() { return toJs(py.cumulative_rewards); },
    get stepNum() { return py.step_num; },
    lastStep: () => toJs(lastFn()),
    destroy() { for (const f of [stepFn, getStateFn, setStateFn, replayFn, resetFn, lastFn, py]) f.destroy(); },
  };
}

// ------------------------------------------------------------------------------ data and metrics

/** window.game.sessionMetrics as mug names it (its e2e tests read sessionMetrics.rollbacks). */
export function mugSessionMetrics(session, playerIds) {
  const rb = session.engine ? session.exportSessionMetrics().rollbacks : { count: 0, maxFrames: 0, events: [] };
  const origin = typeof performance !== 'undefined' && performance.timeOrigin ? performance.timeOrigin : 0;
  return {
    rollbacks: {
      count: rb.count,
      maxFrames: rb.maxFrames,
      events: rb.events.map((e) => ({
        frame: e.frame, currentFrame: e.currentFrame, rollbackFrames: e.rollbackFrames,
        playerId: String(playerIds[e.playerIndex]), predictedAction: e.predictedAction,
        actualAction: e.actualAction, timestamp: Math.round(origin + e.timeMs),
      })),
    },
  };
}

/**
 * One episode of research rows (session.exportEpisodeData({format: 'json'})) as mug's
 * exportEpisodeDataFromBuffer() shapes it: column lists keyed like mug's CSV columns, bots under
 * their mug agent ids. Every column but `timestamp` is equal on both peers, so mug's parity check
 * (tests/validate_action_sequences.py) holds. p2psync records one terminated / truncated flag per
 * frame (mug's terminateds.__all__ / truncateds.__all__), not the env's per-agent flags or infos.
 * wasSpeculative is true on every row, as in mug (every exported row went through its speculative
 * buffer); p2psync's own per-peer wasSpeculative / rollbacks columns stay in its research data.
 */
export function toMugEpisodeData(episode, { episodeNum, playerSubjects = null, botIds: bots = [] }) {
  const rows = episode.rows;
  const id = (name) => (/^bot\d+$/.test(name) && bots[Number(name.slice(3))] !== undefined ? String(bots[Number(name.slice(3))]) : name);
  const cols = (prefix, ours, value = (r, c) => r[c]) => episode.columns.filter((c) => c.startsWith(ours))
    .map((c) => [`${prefix}${id(c.slice(ours.length))}`, rows.map((r) => value(r, c))]);
  return Object.fromEntries([
    ...cols('actions.', 'action.'),
    ...cols('rewards.', 'reward.'),
    ['terminateds.__all__', rows.map((r) => r.terminated)],
    ['truncateds.__all__', rows.map((r) => r.truncated)],
    ...cols('isFocused.', 'isFocused.'),
    ...cols('wasSpeculative.', 'wasSpeculative.', () => true),
    ['episode_num', rows.map(() => episodeNum)],
    ['t', rows.map((r) => r.episodeFrame)],
    ['timestamp', rows.map((r) => r.timestamp)],
    ...(playerSubjects ? [['player_subjects', playerSubjects]] : []),
  ]);
}

// ------------------------------------------------------------------------------ the game

/**
 * The GGPO/P2P half of mug's MultiplayerPyodideGame on p2psync. Create it where mug creates
 * MultiplayerPyodideGame (activate_scene, before join_game): it listens for the pairing at once.
 */
export class MugGame {
  /**
   * @param {object} o
   * @param {object} o.lib            loaded p2psync (web/p2psync.js loadP2PSync())
   * @param {any} o.socket            mug's Socket.IO socket (window.socket)
   * @param {object} o.pyodide        mug's Pyodide, with the env in the global `env`
   * @param {object} o.sceneMetadata  mug's scene_metadata
   * @param {object} [o.sessionOptions]  more P2PSyncSession.connect options (rtcConfig, ...)
   * @param {(data: object, episodeNum: number) => void} [o.onEpisodeData]  the upload (default:
   *                                  mug's emit_episode_data with the page's msgpack)
   */
  constructor({ lib, socket, pyodide, sceneMetadata, sessionOptions = {}, onEpisodeData = null }) {
    this.options = mugSessionOptions(sceneMetadata);   // throws on an action outside 0..255
    this.lib = lib;
    this.socket = socket;
    this.pyodide = pyodide;
    this.config = sceneMetadata;
    this.sceneId = sceneMetadata.scene_id;
    this.sessionOptions = sessionOptions;
    this.onEpisodeData = onEpisodeData || ((data, n) => this._emitEpisodeData(data, n));
    this.transport = new MugTransport(socket);          // setupMultiplayerHandlers(): pairing, signaling, relay
    this.session = null;
    this.envAdapter = null;
    this.myPlayerId = null;
    this.gameId = null;
    this.gameSeed = null;
    this.playerIds = null;                             // engine order: mug's sorted human ids
    this.botIds = botIds(sceneMetadata);
    this.defaultAction = this.options.config.defaultAction;
    this.num_episodes = 0;
    this.max_episodes = this.options.episodes;
    this.state = 'ready';
    this.episodeData = [];
  }

  /** After pyodide_game_ready (resolves as soon as the transport has it): the env adapter, the
   * session, its channels and start barrier. Replaces _initP2PConnection(), the P2P validation
   * and the ready gate. */
  async connect() {
    const joined = await this.transport.join({ timeoutMs: 60000 });
    this.myPlayerId = joined.mug.myPlayerId;
    this.gameId = joined.gameId;
    this.gameSeed = joined.mug.gameSeed;
    this.playerIds = joined.playerIds;
    this.envAdapter = await createMugEnvAdapter({
      pyodide: this.pyodide,
      agentIds: [...this.playerIds, ...this.botIds],
      maxSteps: this.options.maxSteps,
      scoreCarryOver: !!this.config.hud_score_carry_over,
    });
    this.envAdapter.reset(this.gameSeed);              // mug's first reset(): env.reset(seed=game_seed)
    const { config = {}, ...more } = this.sessionOptions;
    this.session = await P2PSyncSession.connect({
      lib: this.lib,
      transport: this.transport,
      env: this.envAdapter,
      config: { ...this.options.config, ...config },
      episodes: this.max_episodes,
      resetEnv: (env) => env.reset(this.gameSeed),      // every episode starts from the game seed
      keepData: 'episode',
      ...more,
    });
    this.session.addEventListener('episodeEnd', (e) => this.signalEpisodeComplete(e.detail));
    return this;
  }

  /** mug's step(allActionsDict): one tick. Returns mug's step tuple for the newest frame stepped,
   * or null when this tick stepped none (STALL, WAIT, or the episode's end being agreed). */
  async step(allActionsDict) {
    if (!this.session || this.state === 'done') return null;
    const mine = checkAction(allActionsDict[this.myPlayerId] ?? this.defaultAction);
    const bots = this.botIds.map((id) => checkAction(allActionsDict[id] ?? this.defaultAction, `bot ${id} action`));
    const r = await this.session.step(mine, bots.length ? bots : null);
    if (!r.frames.length) return null;
    return this.envAdapter.lastStep();
  }

  /** The synced end of an episode (both peers agree on its last frame): mug's
   * signalEpisodeComplete() — upload the episode, count it, finish after max_episodes. */
  signalEpisodeComplete(ev) {
    const episode = this.session.exportEpisodeData({ episode: ev.episode, format: 'json' });
    const data = toMugEpisodeData(episode, {
      episodeNum: this.num_episodes, playerSubjects: this.transport.ready.player_subjects, botIds: this.botIds,
    });
    this.episodeData.push(data);
    this.onEpisodeData(data, this.num_episodes);
    this.num_episodes += 1;
    if (this.num_episodes >= this.max_episodes) this.state = 'done';
  }

  /** mug's upload of one episode (the payload of _emitEpisodeDataFromBuffer(); mug's page keeps its
   * own, with acks and retries, and only takes the data from toMugEpisodeData). */
  _emitEpisodeData(data, episodeNum) {
    const w = globalThis.window;
    if (!w || typeof w.msgpack === 'undefined') return;     // mug's page loads msgpack
    this.socket.emit('emit_episode_data', {
      data: w.msgpack.encode(data), scene_id: this.sceneId, episode_num: episodeNum,
      session_id: w.sessionId, subject_id: w.subjectName || w.mugGlobals?.subjectName, mugGlobals: w.mugGlobals,
    });
  }

  /** The page's focus (mug's FocusManager hooks): FOCUS_STATE to the partner, recorded per frame. */
  setFocus(focused) { if (this.session) this.session.setFocus(focused); }

  // -- what window.game readers (mug's e2e tests, experiment code) read
  get frameNumber() { return this.session ? this.session.frame - this.session.episodeStart : 0; }
  get confirmedFrame() { return this.session ? this.session.confirmedFrame - this.session.episodeStart : -1; }
  get rollbackInProgress() { return false; }            // a rollback runs inside step()
  get step_num() { return this.envAdapter ? this.envAdapter.stepNum : 0; }
  get cumulative_rewards() { return this.envAdapter ? this.envAdapter.cumulativeRewards : {}; }
  get sessionMetrics() { return this.session ? mugSessionMetrics(this.session, this.playerIds) : { rollbacks: { count: 0, maxFrames: 0, events: [] } }; }
  get p2pMetrics() {
    return this.session ? this.session.p2pMetrics : {
      inputsReceivedViaP2P: 0, inputsReceivedViaSocketIO: 0, inputsSentViaP2P: 0, inputsSentViaSocketIO: 0,
      p2pFallbackTriggered: false, p2pFallbackFrame: null, connectionType: null, connectionDetails: null,
    };
  }
  /** mug's frameDataBuffer (frame → {actions: {id: action}, rewards, isFocused, timestamp}) of the
   * current episode's confirmed frames. */
  get frameDataBuffer() {
    const m = new Map();
    if (!this.session) return m;
    const ep = this.session.exportEpisodeData({ episode: this.session.episode, format: 'json' });
    const id = (name) => (/^bot\d+$/.test(name) ? String(this.botIds[Number(name.slice(3))]) : name);
    const pick = (row, prefix) => Object.fromEntries(ep.columns.filter((c) => c.startsWith(prefix)).map((c) => [id(c.slice(prefix.length)), row[c]]));
    for (const row of ep.rows) {
      m.set(row.episodeFrame, { actions: pick(row, 'action.'), rewards: pick(row, 'reward.'), isFocused: pick(row, 'isFocused.'), timestamp: row.timestamp });
    }
    return m;
  }

  /** mug's cleanupForSceneExit(): answer the partner's last END/READY for a moment, then close. */
  async cleanupForSceneExit() {
    if (this.session) await this.session.finish({ lingerMs: 500, frameMs: 1000 / this.options.fps });
    if (this.envAdapter) this.envAdapter.destroy();
    this.transport.close();
  }
}

export default MugGame;
