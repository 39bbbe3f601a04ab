// The JS frame driver (web/driver.js runPlan) as every participant runs it: SessionPeers over the
// network simulator (SimWorld) with the shared toy game (tests/node/helpers.mjs), the real .wasm.
//   * a sync env and the same env behind Promises give the same session, bit for bit;
//   * the batched replay path (env.replay) and the step-by-step path give the same session;
//   * a step that ends the episode (also in the middle of a replay) voids the rest of the plan,
//     and the env is never stepped past the terminal frame of its timeline;
//   * isDone-style ends (a step that returns true, or {done: true}); an env that truncates;
//   * step rewards reach the engine through engine.stepRewards.
//   node --test tests/node/driver.test.mjs        (needs build/wasm: scripts/build wasm)
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadLib, toyWorld, toyGameAt, asyncEnv, assertInSync, describeWorld, firstEndOnLog } from './helpers.mjs';
import { normalizeStepResult } from '../../web/driver.js';

let lib;
before(async () => { lib = await loadLib(); });

// Late inputs and many rollbacks: 150 ± 60 ms one way, 30% P2P loss, input delay 0.
const LATE = { profile: 'wifi', overrides: { rttMs: 300, jitterMs: 120, loss: 0.3 } };
const EPISODE_BOUND_MS = 600000;

/** Everything a session produced that the driver could change: equal for equivalent drivers. */
function fingerprint(w) {
  return {
    now: w.now,
    network: w.netsim.stats(),
    logs: w.compareLogs(),
    peers: w.peers.map((p) => ({
      episodes: p.sp.episodeResults,
      counters: p.sp.counters,
      rollbackDepths: p.sp.rollbackDepths,
      framesRun: p.framesRun,
      ticks: p.ticks,
      events: p.events,
      metrics: p.sp.engine.exportSessionMetrics(),
      state: p.env.getState(),
    })),
  };
}

/** Plays `episodes` toy-game episodes that end on the game's state (a score of 3). */
function endsOnScore(opts = {}) {
  return { lib, seed: 4, players: 2, ...LATE, engineConfig: { inputDelay: 0 }, episodes: 3, game: { endOnScore: 3, batchReplay: true }, ...opts };
}

function assertEpisodesAgree(w, episodes) {
  const s = describeWorld(w);
  for (const p of w.peers) assert.equal(p.sp.episodeResults.length, episodes, `every peer ended ${episodes} episodes: ${s}`);
  for (let e = 0; e < episodes; e++) {
    const res = w.peers.map((p) => p.sp.episodeResults[e]);
    assert.ok(res.every((r) => r.frame === res[0].frame && r.episodeFrame === res[0].episodeFrame), `episode ${e} ended on one frame: ${s}`);
    assert.ok(res.every((r) => r.finalStateHash === res[0].finalStateHash && /^[0-9a-f]{16}$/.test(r.finalStateHash)), `episode ${e}: equal final states`);
  }
}

test('a sync env and the same env behind Promises give the same session', async () => {
  const sync = toyWorld(endsOnScore());
  const async = toyWorld(endsOnScore({ envFor: (i, env) => asyncEnv(env) }));
  try {
    const a = sync.runUntil(() => sync.allFinished(), EPISODE_BOUND_MS);
    assert.equal(a, true, describeWorld(sync));
    const pending = async.runUntil(() => async.allFinished(), EPISODE_BOUND_MS);
    assert.equal(typeof pending.then, 'function', 'the async env makes the world async');
    assert.equal(await pending, true, describeWorld(async));
    assertEpisodesAgree(sync, 3);
    assertInSync(sync, { minCompared: 100 });
    assert.ok(sync.peers.every((p) => p.sp.counters.framesReplayed > 50), 'rollbacks replayed frames');
    assert.ok(sync.peers.some((p) => p.env.stats.replayCalls > 0), 'through env.replay');
    assert.deepEqual(fingerprint(async), fingerprint(sync));
  } finally {
    sync.destroy();
    async.destroy();
  }
});

test('the batched replay path and the step-by-step path give the same session', () => {
  const batched = toyWorld(endsOnScore({ seed: 6, players: 3 }));
  const stepwise = toyWorld(endsOnScore({ seed: 6, players: 3, driverFor: () => ({ batchReplay: false }) }));
  try {
    for (const w of [batched, stepwise]) assert.equal(w.runUntil(() => w.allFinished(), EPISODE_BOUND_MS), true, describeWorld(w));
    assertEpisodesAgree(batched, 3);
    assertInSync(batched, { minCompared: 100 });
    const calls = (w, k) => w.peers.reduce((n, p) => n + p.env.stats[k], 0);
    assert.ok(calls(batched, 'replayCalls') > 20 && calls(batched, 'replaySteps') > 100, 'the batched world replayed through env.replay');
    assert.ok(calls(batched, 'replayEnds') > 0, 'and some replay stopped at an end before its last frame');
    assert.equal(calls(stepwise, 'replayCalls'), 0, 'the step-by-step world never called env.replay');
    assert.equal(calls(stepwise, 'steps'), calls(batched, 'steps'), 'the same number of env steps');
    assert.deepEqual(fingerprint(stepwise), fingerprint(batched));
  } finally {
    batched.destroy();
    stepwise.destroy();
  }
});

/**
 * Watches one peer's driver: `env` wrapped to record every load, step and replay (with the plan
 * = the peer's tick it belongs to), and spies on the engine's advance() (the last frame each plan
 * asks to step) and stepped() (its answer). Checks, as it goes:
 *   * no env step and no stepped() report after a step that ended the episode, in the same plan;
 *   * the env is never stepped past the terminal frame of its timeline: after a step ended the
 *     episode at episode frame T, every later step is at a frame <= T until a load at or before T
 *     (a rollback that reaches T, where the engine forgets it) or the next episode.
 */
function watch(world, i, env) {
  const peer = () => world().peers[i];
  const rec = { violations: [], endsInReplay: 0, voided: 0, steps: 0, stepped: 0, term: null, endedPlan: -1, planLast: -1 };
  const plan = () => peer().ticks;
  const bad = (what) => { if (rec.violations.length < 20) rec.violations.push(`peer ${i} plan ${plan()}: ${what}`); };
  const onStep = (info, r) => {
    rec.steps++;
    if (rec.endedPlan === plan()) bad(`stepped frame ${info.frame} after the step that ended the episode`);
    if (rec.term !== null && info.episodeFrame > rec.term) bad(`stepped episode frame ${info.episodeFrame} past the terminal frame ${rec.term}`);
    const n = normalizeStepResult(r);
    if (n.terminated || n.truncated) {
      rec.term = info.episodeFrame;
      rec.endedPlan = plan();
      if (info.replay) rec.endsInReplay++;
      if (info.frame < rec.planLast) rec.voided++;
    }
  };
  const watched = {
    step(actions, info) {
      const r = env.step(actions, info);
      onStep(info, r);
      return r;
    },
    getState: () => env.getState(),
    setState(state) {
      if (rec.endedPlan === plan()) bad('loaded after the step that ended the episode');
      env.setState(state);
      const f = env.state.f;
      if (rec.term !== null && f <= rec.term) rec.term = null;
    },
    reset() { rec.term = null; return env.reset(); },
    rewards: () => env.rewards(),
  };
  if (typeof env.replay === 'function') {
    watched.replay = (list, flags, infos) => {
      const res = env.replay(list, flags, infos);
      res.results.forEach((r, k) => onStep(infos[k], r));
      return res;
    };
  }
  // spies on the real engine: they call through and only record
  rec.attach = () => {
    const e = peer().sp.engine;
    const advance = e.advance.bind(e), stepped = e.stepped.bind(e);
    let answeredNo = -1;
    e.advance = (...args) => {
      const p = advance(...args);
      rec.planLast = -1;
      for (let k = 0; k < p.requests; k++) if (p.kind(k) === lib.REQUEST.ADVANCE) rec.planLast = Math.max(rec.planLast, p.frameOf(k));
      return p;
    };
    e.stepped = (frame, flags, pre) => {
      rec.stepped++;
      if (answeredNo === plan()) bad(`reported frame ${frame} after the engine ended the plan`);
      const go = stepped(frame, flags, pre);
      if (!go) answeredNo = plan();
      return go;
    };
  };
  return { env: watched, rec };
}

test('a step that ends the episode voids the rest of the plan (mid-replay too); the env never steps past the terminal frame', async () => {
  const variants = [
    ['step by step', { driverFor: () => ({ batchReplay: false }) }, (e) => e],
    ['batched replay', {}, (e) => e],
    ['batched replay, async env', {}, (e) => asyncEnv(e)],
  ];
  for (const [name, opts, wrap] of variants) {
    let endsInReplay = 0, voided = 0;
    for (const seed of [1, 2, 3]) {
      const recs = [];
      const w = toyWorld(endsOnScore({
        seed, players: seed === 3 ? 3 : 2, ...opts,
        envFor: (i, env) => {
          const { env: watched, rec } = watch(() => w, i, env);
          recs.push(rec);
          return wrap(watched);
        },
      }));
      try {
        for (const r of recs) r.attach();
        assert.equal(await w.runUntil(() => w.allFinished(), EPISODE_BOUND_MS), true, `${name}, seed ${seed}: ${describeWorld(w)}`);
        assertEpisodesAgree(w, 3);
        assertInSync(w, { minCompared: 100 });
        for (const r of recs) {
          assert.deepEqual(r.violations, [], `${name}, seed ${seed}`);
          assert.equal(r.stepped, r.steps, `${name}, seed ${seed}: every env step reported once`);
          endsInReplay += r.endsInReplay;
          voided += r.voided;
        }
        // every end is the earliest end on the confirmed timeline (the env re-stepped from its log)
        for (const p of w.peers) {
          for (const [k, res] of p.sp.episodeResults.entries()) {
            const start = res.frame - res.episodeFrame;
            assert.equal(firstEndOnLog(p.sp, { start, lastFrame: res.frame, env: toyGameAt(k, { actors: w.players, endOnScore: 3 }) }), res.episodeFrame,
              `${name}, seed ${seed}, peer ${p.index}, episode ${k}`);
            assert.equal(res.truncated, false);
          }
        }
      } finally {
        w.destroy();
      }
    }
    assert.ok(endsInReplay > 0, `${name}: some episode end was found in a replay (${endsInReplay})`);
    assert.ok(voided > 0, `${name}: some plan was cut short by an end (${voided})`);
  }
});

test('isDone-style ends: a step returning true, or {done: true}, ends the episode on one frame', async () => {
  const isDone = (s) => s.score.some((v) => v >= 3);
  for (const seed of [7, 8]) {
    const w = toyWorld({
      lib, seed, ...LATE, engineConfig: { inputDelay: 0 }, episodes: 2,
      // the game never ends by itself: the wrapper asks isDone after every step (replays included)
      envFor: (i, g) => ({
        step(actions) { g.step(actions); return i === 0 ? isDone(g.state) : { done: isDone(g.state) }; },
        getState: () => g.getState(),
        setState: (s) => g.setState(s),
        reset: () => g.reset(),
        rewards: () => g.rewards(),
      }),
    });
    try {
      const flags = [];
      const e = w.peers[0].sp.engine;
      const stepped = e.stepped.bind(e);
      e.stepped = (frame, f, pre) => { flags.push(f); return stepped(frame, f, pre); };
      assert.equal(w.runUntil(() => w.allFinished(), EPISODE_BOUND_MS), true, describeWorld(w));
      assertEpisodesAgree(w, 2);
      assertInSync(w, { minCompared: 100 });
      for (const p of w.peers) {
        for (const [k, res] of p.sp.episodeResults.entries()) {
          assert.equal(res.truncated, false, 'the end is the env\'s');
          const g = toyGameAt(k, { actors: 2 });
          assert.equal(firstEndOnLog(p.sp, { start: res.frame - res.episodeFrame, lastFrame: res.frame, env: g, ended: (r, env) => isDone(env.state) }), res.episodeFrame,
            `seed ${seed}, peer ${p.index}, episode ${k}: the first frame isDone holds on the confirmed timeline`);
        }
      }
      assert.ok(flags.length > 0);
      assert.ok(flags.some((f) => f & lib.STEP.TERMINATED), 'a step reported TERMINATED');
      assert.ok(flags.every((f) => !(f & lib.STEP.REWARDS)), 'no rewards without a StepResult carrying them');
    } finally {
      w.destroy();
    }
  }
});

test('an env that truncates ({truncated: true}) ends the episode as truncated, on one frame', () => {
  const w = toyWorld({
    lib, seed: 10, ...LATE, engineConfig: { inputDelay: 0 }, episodes: 2,
    envFor: (i, g) => ({
      step(actions) { const r = g.step(actions); return { ...r, truncated: g.state.f > 150 }; },
      getState: () => g.getState(),
      setState: (s) => g.setState(s),
      reset: () => g.reset(),
      rewards: () => g.rewards(),
    }),
  });
  try {
    assert.equal(w.runUntil(() => w.allFinished(), EPISODE_BOUND_MS), true, describeWorld(w));
    assertEpisodesAgree(w, 2);
    assertInSync(w, { minCompared: 300 });
    for (const p of w.peers) {
      assert.deepEqual(p.sp.episodeResults.map((r) => [r.episodeFrame, r.truncated]), [[150, true], [150, true]]);
      const terminal = p.events.filter((ev) => ev.type === 'terminal');
      assert.ok(terminal.length >= 2 && terminal.every((ev) => ev.truncated === true && ev.episodeFrame === 150), JSON.stringify(terminal));
      assert.deepEqual(p.sp.engine.exportSessionMetrics().episodes.map((e) => e.frame), [150, 150]);
    }
  } finally {
    w.destroy();
  }
});

test('step rewards reach the engine through engine.stepRewards (array and {actor: reward} forms)', () => {
  const w = toyWorld({
    lib, seed: 9, players: 3, profile: 'mobile', engineConfig: { inputDelay: 0 },
    // peer 0: rewards as an array (the toy game's); peer 1: as {actorIndex: reward} with only the
    // nonzero ones; peer 2: no rewards at all
    envFor: (i, g) => ({
      step(actions) {
        const r = g.step(actions);
        const rewards = i === 0 ? r.rewards : i === 1 ? Object.fromEntries(r.rewards.map((v, k) => [k, v]).filter(([, v]) => v)) : undefined;
        this.sent.push(r.rewards);
        return i === 2 ? { terminated: r.terminated } : { ...r, rewards };
      },
      sent: [],
      getState: () => g.getState(),
      setState: (s) => g.setState(s),
      reset: () => g.reset(),
      rewards: () => g.rewards(),
    }),
  });
  try {
    const seen = w.peers.map((p) => {
      const e = p.sp.engine;
      const got = [];
      const stepped = e.stepped.bind(e);
      e.stepped = (frame, flags, pre) => {
        got.push({ flag: (flags & lib.STEP.REWARDS) !== 0, rewards: Array.from(e.stepRewards) });
        return stepped(frame, flags, pre);
      };
      return got;
    });
    w.runFrames(400);
    assertInSync(w, { minCompared: 300 });
    for (const p of w.peers) {
      const got = seen[p.index];
      const sent = p.sp.env.sent;
      assert.equal(got.length, sent.length, `peer ${p.index}: one report per env step`);
      assert.ok(got.length > 400, 'replays included');
      if (p.index === 2) {
        assert.ok(got.every((g) => !g.flag), 'no REWARDS flag without rewards');
        continue;
      }
      got.forEach((g, k) => {
        assert.equal(g.flag, true, `peer ${p.index}, report ${k}: REWARDS flag`);
        assert.deepEqual(g.rewards, sent[k], `peer ${p.index}, report ${k}: stepRewards holds the step's rewards`);
      });
      assert.ok(sent.filter((r) => r.some((v) => v > 0)).length > 5, 'some steps had rewards');
    }
  } finally {
    w.destroy();
  }
});
