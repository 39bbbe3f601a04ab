// web/mug/adapter.js (the code the README's mug integration guide quotes) with a mug-style Python
// env in a real Pyodide (tests/compat/mug_env.py), and two MugGame pages paired by the Python test
// server (web/mug_server.py) over fake RTCDataChannels in real time.
//   node --test tests/compat/mug_adapter.test.mjs      (or: scripts/test compat)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { loadPyodide } from 'pyodide';
import {
  MugGame, createMugEnvAdapter, mugSessionOptions, checkAction, toMugEpisodeData, MAX_ACTION,
} from '../../web/mug/adapter.js';
import { REPO, loadLib, startMugServer, rtcWorld, mugSocket, sleep } from './helpers.mjs';

const ENV_PY = fs.readFileSync(path.join(REPO, 'tests', 'compat', 'mug_env.py'), 'utf8');
const servers = [];
const pyodides = [];
before(async () => {
  // one Python interpreter per page, as each tab has its own
  for (let i = 0; i < 2; i++) pyodides.push(await loadPyodide());
});
after(async () => { for (const s of servers) await s.close(); });

/** The page's `env` global, as mug's page creates it from the scene's env code. */
function makeEnv(pyodide, agentIds, goal) {
  pyodide.runPython(ENV_PY);
  const ids = pyodide.toPy(agentIds);
  pyodide.globals.set('_agent_ids', ids);
  ids.destroy();
  pyodide.runPython(`env = CoinEnv(_agent_ids, goal=${goal})`);
}

/** A policy that walks agent `who` towards the coin (so coins are taken and the RNG is used). */
function greedy(stateText, who) {
  const s = JSON.parse(stateText).env_state;
  const me = s.pos.find(([name]) => name === String(who))[1];
  const [cx, cy] = s.coin;
  if (cx !== me[0]) return cx > me[0] ? 4 : 3;
  if (cy !== me[1]) return cy > me[1] ? 2 : 1;
  return 0;
}

test('the env adapter\'s snapshot restores env state, cumulative rewards, step_num and the RNG: a replay from it is identical', async () => {
  const pyodide = pyodides[0];
  const ids = ['agent_left', 'agent_right'];
  makeEnv(pyodide, ids, 1000);
  const ad = await createMugEnvAdapter({ pyodide, agentIds: ids, maxSteps: 1000 });
  try {
    ad.reset(1234);
    for (let k = 0; k < 10; k++) ad.step([greedy(ad.getState(), 'agent_left'), 0]);
    const snap = ad.getState();
    const parsed = JSON.parse(snap);
    assert.deepEqual(Object.keys(parsed).sort(), ['cumulative_rewards', 'env_state', 'py_rng_state', 'step_num'], 'NumPy is not loaded: no np_rng_state');
    assert.equal(parsed.step_num, 10);
    const rewardsAt = ad.cumulativeRewards;
    const actions = [];
    const first = [];
    for (let k = 0; k < 60; k++) {
      const a = [greedy(ad.getState(), 'agent_left'), greedy(ad.getState(), 'agent_right')];
      actions.push(a);
      first.push(ad.step(a));
    }
    const end = ad.getState();
    const taken = first.reduce((n, r) => n + r.rewards[0] + r.rewards[1], 0);
    assert.ok(taken >= 3, `coins were taken (each respawn draws from the RNG): ${taken}`);
    assert.equal(ad.stepNum, 70);
    ad.setState(snap);
    assert.equal(ad.stepNum, 10, 'step_num restored');
    assert.deepEqual(ad.cumulativeRewards, rewardsAt, 'cumulative rewards restored: a replay does not count them twice');
    const again = actions.map((a) => ad.step(a));
    assert.deepEqual(again, first, 'the replay gives the same results (RNG restored)');
    assert.equal(ad.getState(), end, 'and the same state text');
    // the batched replay (one Python call) does the same and hands back the flagged pre-step states
    ad.setState(snap);
    const flags = actions.map((_, k) => k % 5 === 0);
    const { states, results } = ad.replay(actions, flags);
    assert.deepEqual(results, first);
    assert.equal(ad.getState(), end);
    ad.setState(snap);
    for (let k = 0; k < actions.length; k++) {
      if (flags[k]) assert.equal(states[k], ad.getState(), `replay state of frame ${k}`);
      ad.step(actions[k]);
    }
    // mug's end rule: step_num >= max_steps truncates
    const short = await createMugEnvAdapter({ pyodide, agentIds: ids, maxSteps: 3 });
    short.reset(1);
    assert.deepEqual([0, 1, 2].map(() => short.step([0, 0]).truncated), [false, false, true]);
    short.destroy();
  } finally {
    ad.destroy();
  }
});

test('actions outside 0..255 are refused where they enter (config time and step), never truncated', async () => {
  assert.throws(() => mugSessionOptions({ scene_id: 'big', action_mapping: { up: 1, huge: 256 } }), /action_mapping\["huge"\] 256 is not an integer in 0\.\.255/);
  assert.throws(() => mugSessionOptions({ scene_id: 'd', default_action: 300 }), /default_action 300 .*0\.\.255/);
  assert.throws(() => mugSessionOptions({ scene_id: 's', action_mapping: { a: 'up' } }), RangeError);
  assert.equal(MAX_ACTION, 255);
  assert.equal(checkAction(255), 255);
  assert.throws(() => checkAction(2.5), RangeError);
  const o = mugSessionOptions({ scene_id: 'ok', action_mapping: { a: 0, b: 255 }, input_delay: 3, fps: 30, num_episodes: 2, max_steps: 450 });
  assert.deepEqual(o.config, { inputDelay: 3, predictionMethod: 'default_action', defaultAction: 0, snapshotInterval: 5, focusPolicy: 'predict', numBots: 0 });
  const p = mugSessionOptions({ scene_id: 'p', pause_on_partner_background: true, action_population_method: 'previous_submitted_action', default_action: 6,
    policy_mapping: { 0: 'human', 1: 'human', 2: 'models/bot.onnx' } });
  assert.deepEqual([p.config.focusPolicy, p.config.predictionMethod, p.config.defaultAction, p.config.numBots], ['pause', 'previous_submitted_action', 6, 1]);
  assert.deepEqual([o.episodes, o.maxSteps, o.fps], [2, 450, 30]);
  assert.equal(mugSessionOptions({ scene_id: 'x' }).fps, 10, 'mug\'s default: this.config.fps || 10');
  assert.equal(mugSessionOptions({ scene_id: 'x', max_steps: 1e4 }).maxSteps, 10000);
  // a MugGame refuses the scene at construction and an action at step
  const fakeSocket = { on() {}, off() {}, emit() {} };
  assert.throws(() => new MugGame({ lib: {}, socket: fakeSocket, pyodide: null, sceneMetadata: { scene_id: 'big', action_mapping: { x: 999 } } }), /0\.\.255/);
  const g = new MugGame({ lib: {}, socket: fakeSocket, pyodide: null, sceneMetadata: { scene_id: 'ok', action_mapping: { x: 1 } } });
  g.session = { step() { throw new Error('must not be reached'); } };
  g.myPlayerId = 0;
  await assert.rejects(g.step({ 0: 256 }), /256 is not an integer in 0\.\.255/);
});

test('two MugGame pages (string ids + a bot) on mug\'s protocol: 2 episodes, P2P cut in episode 2, mug-format data identical, rewards counted once', async () => {
  const scene = {
    scene_id: 'coin_hh', num_episodes: 2, max_steps: 240, input_delay: 0, default_action: 0, fps: 60,
    action_mapping: { noop: 0, up: 1, down: 2, left: 3, right: 4 }, action_population_method: 'previous_submitted_action',
    policy_mapping: { agent_right: 'human', agent_left: 'human', bot_0: 'random' },
  };
  const srv = await startMugServer({ ids: 'agent_right,agent_left', scene });
  servers.push(srv);
  const world = rtcWorld({ latencyMs: 30 });
  const lib = await loadLib();
  const pages = [];
  try {
    for (let i = 0; i < 2; i++) {
      makeEnv(pyodides[i], Object.keys(scene.policy_mapping), 30);
      const socket = mugSocket(srv.url, `adapter-${process.pid}-${i}`);
      const uploads = [];
      const game = new MugGame({
        lib, socket, pyodide: pyodides[i], sceneMetadata: scene,
        onEpisodeData: (data, n) => uploads.push({ n, data }),
        sessionOptions: {
          RTCPeerConnection: world.RTCPeerConnection, trackVisibility: false, connectTimeoutMs: 4000, barrierTimeoutMs: 3000,
          settleRttMs: 250, log: () => {}, config: { catchUp: false },
        },
      });
      pages.push({ i, socket, game, uploads, returned: [], busy: false, error: null, ends: [] });
      await sleep(150);
    }
    await Promise.all(pages.map((p) => p.game.connect()));
    for (const p of pages) p.game.session.addEventListener('episodeEnd', (e) => p.ends.push(e.detail));
    assert.deepEqual(pages.map((p) => p.game.myPlayerId), ['agent_right', 'agent_left'], 'FIFO slots');
    for (const p of pages) assert.deepEqual(p.game.playerIds, ['agent_left', 'agent_right']);
    // the pages' loops: the human by its policy, the bot from the frame (the same on both pages)
    let cut = false;
    const metrics = [];
    const timers = pages.map((p) => setInterval(() => {
      const g = p.game;
      if (p.busy || p.error || g.state === 'done') return;
      p.busy = true;
      const dict = { [g.myPlayerId]: greedy(g.envAdapter.getState(), g.myPlayerId), bot_0: (g.frameNumber * 7 + 3) % 5 };
      g.step(dict).then((r) => {
        if (r && p.returned.length < 3) p.returned.push(r);
        if (!cut && p.i === 0 && g.num_episodes >= 1 && g.frameNumber >= 40) { cut = true; g.session.closeP2P(); }
        if (g.state === 'done' && !p.metrics) {
          p.metrics = { sessionMetrics: g.sessionMetrics, p2pMetrics: g.p2pMetrics, buffer: g.frameDataBuffer, rewards: g.cumulative_rewards };
          metrics.push(p.metrics);
        }
        p.busy = false;
      }, (e) => { p.error = e; p.busy = false; });
    }, 1000 / 60));
    const t0 = Date.now();
    while (!pages.every((p) => p.game.state === 'done') && !pages.some((p) => p.error) && Date.now() - t0 < 90000) await sleep(20);
    for (const t of timers) clearInterval(t);
    for (const p of pages) if (p.error) throw p.error;
    assert.ok(pages.every((p) => p.game.state === 'done'), `both pages played 2 episodes: ${JSON.stringify(pages.map((p) => [p.game.num_episodes, p.game.frameNumber, p.game.session.status]))}`);
    assert.ok(cut, 'P2P was cut in episode 2');
    await sleep(100);
    await Promise.all(pages.map((p) => p.game.cleanupForSceneExit()));

    // mug-format episode data: every column but timestamp identical on both pages
    for (const p of pages) assert.deepEqual(p.uploads.map((u) => u.n), [0, 1]);
    for (let e = 0; e < 2; e++) {
      const [a, b] = pages.map((p) => p.uploads[e].data);
      const cols = Object.keys(a).sort();
      assert.deepEqual(Object.keys(b).sort(), cols, 'same columns');
      for (const c of ['actions.agent_left', 'actions.agent_right', 'actions.bot_0', 'rewards.bot_0', 'terminateds.__all__', 'isFocused.agent_left', 'wasSpeculative.agent_right', 't', 'episode_num', 'player_subjects']) {
        assert.ok(cols.includes(c), `column ${c} in ${cols}`);
      }
      for (const c of cols) if (c !== 'timestamp') assert.deepEqual(b[c], a[c], `episode ${e}: column ${c} identical`);
      assert.deepEqual(a.t, a.t.map((_, k) => k), 't is the frame within the episode');
      assert.ok(a.episode_num.every((n) => n === e));
      assert.ok(a['actions.bot_0'].every((v, k) => v === (k * 7 + 3) % 5), 'the bot\'s actions as the pages chose them');
      assert.deepEqual(a.player_subjects, { agent_right: `adapter-${process.pid}-0`, agent_left: `adapter-${process.pid}-1` });
      // rewards counted once: the env's cumulative rewards at the end = the per-frame rewards' sum
      for (const p of pages) {
        const ep = p.ends[e];
        assert.equal(ep.reason, 'synced');
        for (const id of ['agent_left', 'agent_right', 'bot_0']) {
          const sum = p.uploads[e].data[`rewards.${id}`].reduce((x, y) => x + y, 0);
          assert.equal(ep.rewards[id], sum, `page ${p.i} episode ${e}: cumulative_rewards.${id} = the sum of its rewards column`);
        }
        assert.ok(a['terminateds.__all__'].at(-1) || a.t.length === 240, 'the episode ended by the env or max_steps');
      }
    }
    // what mug's tests read from window.game
    const rollbacks = metrics.map((m) => m.sessionMetrics.rollbacks);
    assert.ok(rollbacks.some((r) => r.count > 0), `rollbacks happened (the replay path ran): ${JSON.stringify(rollbacks.map((r) => r.count))}`);
    for (const r of rollbacks) {
      assert.equal(r.events.length > 0, r.count > 0);
      for (const ev of r.events) {
        assert.ok(['agent_left', 'agent_right'].includes(ev.playerId), `playerId is mug's id: ${JSON.stringify(ev)}`);
        assert.equal(ev.rollbackFrames, ev.currentFrame - ev.frame);
        assert.ok(ev.timestamp > 1.6e12, 'timestamp in epoch ms');
      }
    }
    for (const m of metrics) {
      assert.equal(m.p2pMetrics.p2pFallbackTriggered, true);
      assert.ok(m.p2pMetrics.inputsReceivedViaP2P > 0 && m.p2pMetrics.inputsReceivedViaSocketIO > 0);
      const last = [...m.buffer.values()].at(-1);
      assert.deepEqual(Object.keys(last.actions), ['agent_left', 'agent_right', 'bot_0']);
    }
    for (const p of pages) {
      const [obs, rewards, terminateds, truncateds, infos, renderState] = p.returned[0];
      assert.deepEqual(Object.keys(obs).sort(), ['agent_left', 'agent_right', 'bot_0']);
      assert.ok('__all__' in terminateds && '__all__' in truncateds && 'agent_left' in rewards && infos);
      assert.equal(renderState.game_state_objects.length, 3);
    }
    // the server relayed only events mug's server has
    const st = await srv.stats();
    assert.deepEqual(st.dropped, {});
    console.log(`# MugGame x2: rollbacks ${rollbacks.map((r) => `${r.count} (max ${r.maxFrames})`).join(' / ')}, episode frames ${pages[0].uploads.map((u) => u.data.t.length).join(' + ')}, ` +
      `relayed ${JSON.stringify(st.relayed)}`);
  } finally {
    for (const p of pages) {
      try { p.game.session?.destroy(); } catch { /* closed */ }
      p.socket.close();
    }
  }
});

test('toMugEpisodeData maps the research columns onto mug\'s', () => {
  const episode = {
    columns: ['episode', 'episodeFrame', 'frame', 'action.0', 'action.1', 'action.bot0', 'wasSpeculative.0', 'wasSpeculative.1', 'rollbacks',
      'reward.0', 'reward.1', 'reward.bot0', 'terminated', 'truncated', 'isFocused.0', 'isFocused.1', 'timestamp'],
    rows: [
      { episode: 1, episodeFrame: 0, frame: 305, 'action.0': 2, 'action.1': 3, 'action.bot0': 1, 'wasSpeculative.0': false, 'wasSpeculative.1': true, rollbacks: 1,
        'reward.0': 0, 'reward.1': 1, 'reward.bot0': 0, terminated: false, truncated: false, 'isFocused.0': true, 'isFocused.1': false, timestamp: 1.7e12 },
      { episode: 1, episodeFrame: 1, frame: 306, 'action.0': 4, 'action.1': 0, 'action.bot0': 2, 'wasSpeculative.0': false, 'wasSpeculative.1': false, rollbacks: 0,
        'reward.0': 1, 'reward.1': 0, 'reward.bot0': 0, terminated: true, truncated: false, 'isFocused.0': true, 'isFocused.1': true, timestamp: 1.7e12 + 33 },
    ],
  };
  const d = toMugEpisodeData(episode, { episodeNum: 1, playerSubjects: { 0: 'a', 1: 'b' }, botIds: ['bot_left'] });
  assert.deepEqual(d, {
    'actions.0': [2, 4], 'actions.1': [3, 0], 'actions.bot_left': [1, 2],
    'rewards.0': [0, 1], 'rewards.1': [1, 0], 'rewards.bot_left': [0, 0],
    'terminateds.__all__': [false, true], 'truncateds.__all__': [false, false],
    'isFocused.0': [true, true], 'isFocused.1': [false, true],
    'wasSpeculative.0': [true, true], 'wasSpeculative.1': [true, true],
    episode_num: [1, 1], t: [0, 1], timestamp: [1.7e12, 1.7e12 + 33], player_subjects: { 0: 'a', 1: 'b' },
  });
});
