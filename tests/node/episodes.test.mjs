// The simulator ends episodes the way pages do (issue 12): the engine owns the end, whether the env
// decides it on its simulated state (endOnScore) or the engine truncates it (frames). Every peer is
// a SessionPeer (web/peer.js, web/driver.js) with the real .wasm over the network simulator.
//   * a sweep over profiles × 2–4 players × input delay 0 / 2 × seeds, 3 episodes each: no
//     deadlock, every episode ends on one frame on every peer, identical action logs;
//   * the isDone case: 2 players, 150 ± 60 ms one way, 30% loss, input delay 0, an env that ends
//     itself on a state condition: 20 of 20 seeds end every episode on one frame;
//   * scripts/demo --profile bad --players 3 --episodes 3 --end-on-score 4 --seed 9 exits 0.
//   node --test tests/node/episodes.test.mjs        (needs build/wasm: scripts/build wasm)
// P2PSYNC_FULL_SWEEP=1 runs the whole sweep (4 seeds per combination, ~20 s); by default each
// combination runs 2 of the 4 seeds, alternating, so every seed still runs on every profile.
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { runSession, SimWorld } from '../../web/sim_session.js';
import { createGridGame } from '../../web/envs/grid_game.js';
import { loadLib, assertInSync, describeWorld, firstEndOnLog } from './helpers.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let lib;
before(async () => { lib = await loadLib(); });

function summary(r) {
  return JSON.stringify({ reasons: r.verdict.reasons, episodes: r.episodes.map((e) => ({ ends: e.endFramesByPeer, truncated: e.truncated })), framesRun: r.framesRun, rollbacks: r.rollbacks.count });
}

/** What every multi-episode session must show. Returns how many episodes the env ended. */
function assertEpisodes(r, episodes, what) {
  const s = `${what}: ${summary(r)}`;
  assert.equal(r.verdict.timedOut, false, `no deadlock: ${s}`);
  assert.equal(r.episodes.length, episodes, `${episodes} episodes: ${s}`);
  let byEnv = 0;
  for (const ep of r.episodes) {
    assert.ok(ep.endFramesByPeer.every((f) => Number.isInteger(f) && f === ep.endFramesByPeer[0]), `episode ${ep.index} ended on one frame: ${s}`);
    assert.ok(ep.truncated.every((t) => t === ep.truncated[0]), `episode ${ep.index}: one verdict on truncation: ${s}`);
    assert.ok(ep.finalStateHashes.every((h) => h === ep.finalStateHashes[0]), `episode ${ep.index}: equal final states: ${s}`);
    assert.ok(ep.frames >= 1 && ep.frames <= r.frames, s);
    if (ep.truncated[0]) assert.equal(ep.frames, r.frames, `a truncated episode has ${r.frames} frames: ${s}`);
    else byEnv++;
  }
  // episodes follow one another on the session timeline
  for (let k = 1; k < r.episodes.length; k++) assert.ok(r.episodes[k].endFramesByPeer[0] > r.episodes[k - 1].endFramesByPeer[0], s);
  assert.equal(r.actionLogsIdentical, true, `identical action logs: ${s}`);
  assert.ok(r.comparedFrames > r.episodes[r.episodes.length - 1].endFramesByPeer[0], `logged up to the last end: ${s}`);
  assert.equal(r.desyncs, 0, s);
  assert.deepEqual(r.errors, [], s);
  assert.equal(r.healthy, true, s);
  return byEnv;
}

describe('profiles × players × input delay × seeds, 3 episodes ending at a score (or truncated)', () => {
  const full = process.env.P2PSYNC_FULL_SWEEP === '1';
  const SEEDS = [1, 2, 3, 4];
  let combo = 0;
  for (const profile of ['lan', 'wifi', 'mobile', 'bad', 'hostile']) {
    test(`${profile}: 2–4 players, input delay 0 and 2`, async () => {
      let byEnv = 0, total = 0;
      for (const players of [2, 3, 4]) {
        for (const inputDelay of [0, 2]) {
          const seeds = full ? SEEDS : combo++ % 2 === 0 ? [1, 3] : [2, 4];
          for (const seed of seeds) {
            const r = await runSession({ lib, profile, players, seed, episodes: 3, endOnScore: 3, inputDelay, frames: 900 });
            byEnv += assertEpisodes(r, 3, `${profile}, ${players} players, delay ${inputDelay}, seed ${seed}`);
            total += 3;
          }
        }
      }
      assert.ok(byEnv >= total / 2, `most episodes were ended by the env's score condition (${byEnv}/${total})`);
    });
  }
});

describe('the isDone case: 150 ± 60 ms one way, 30% loss, input delay 0, an end decided on the state', () => {
  const NET = { profile: 'wifi', overrides: { rttMs: 300, jitterMs: 120, loss: 0.3 } };

  test('runSession: 20 of 20 seeds end every episode on one frame, by the env', async () => {
    let ended = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const r = await runSession({ lib, players: 2, ...NET, inputDelay: 0, endOnScore: 3, episodes: 3, frames: 10000, seed });
      assert.equal(assertEpisodes(r, 3, `seed ${seed}`), 3, `seed ${seed}: every end is the score condition, none a truncation`);
      for (const ep of r.episodes) assert.ok(Object.values(ep.rewards[0]).some((v) => v >= 3), `seed ${seed}: a score reached 3`);
      assert.ok(r.rollbacks.count > 20, `seed ${seed}: late inputs were rolled back`);
      ended++;
    }
    assert.equal(ended, 20);
  });

  test('the end learned on a predicted timeline is forgotten when a rollback refutes it; the synced end is the first on the confirmed timeline', () => {
    let refuted = 0;
    const make = () => createGridGame({ numPlayers: 2, seed: 7, endOnScore: 3 });
    for (const seed of [1, 2, 3, 4, 5]) {
      const w = new SimWorld({ lib, envs: [make(), make()], ...NET, seed, engineConfig: { inputDelay: 0 }, episodes: 3 });
      w.memory0 = w.peers.map((p) => p.sp.engine.memoryBytes());
      try {
        assert.equal(w.runUntil(() => w.allFinished(), 600000), true, `seed ${seed}: ${describeWorld(w)}`);
        assertInSync(w, { minCompared: 100 });
        for (const p of w.peers) {
          const ends = p.sp.episodeResults;
          assert.equal(ends.length, 3);
          for (const [k, res] of ends.entries()) {
            assert.equal(res.frame, w.peers[0].sp.episodeResults[k].frame, `seed ${seed}, episode ${k}: one end frame`);
            assert.equal(res.truncated, false);
            // a fresh game stepped through the confirmed actions ends exactly there
            assert.equal(firstEndOnLog(p.sp, { start: res.frame - res.episodeFrame, lastFrame: res.frame, env: make() }), res.episodeFrame,
              `seed ${seed}, peer ${p.index}, episode ${k}`);
          }
          // terminal events at other frames: ends of predicted timelines that rollbacks refuted
          refuted += p.events.filter((ev) => ev.type === 'terminal' && !ends.some((e) => e.frame === ev.frame)).length;
        }
      } finally {
        w.destroy();
      }
    }
    assert.ok(refuted > 0, 'some predicted end was refuted by a rollback (the case is exercised)');
  });
});

describe('CLI', () => {
  function run(cmd, args, timeoutMs = 300000) {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '', err = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { err += d; });
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`no exit: ${cmd} ${args.join(' ')}\n${err}`)); }, timeoutMs);
      child.on('error', reject);
      child.on('close', (code) => { clearTimeout(timer); resolve({ code, out, err }); });
    });
  }

  test('scripts/demo --profile bad --players 3 --episodes 3 --end-on-score 4 --seed 9 exits 0 with three synced episodes', async () => {
    const args = ['--profile', 'bad', '--players', '3', '--episodes', '3', '--end-on-score', '4', '--seed', '9'];
    const text = await run(path.join(ROOT, 'scripts/demo'), args);
    assert.equal(text.code, 0, `exit 0; stderr:\n${text.err.slice(-2000)}`);
    assert.match(text.out, /^HEALTHY$/m);
    for (const e of [0, 1, 2]) assert.match(text.out, new RegExp(`^  episode ${e}\\s+ended at episode frame \\d+ on every peer`, 'm'));
    // the same session as JSON
    const json = await run(process.execPath, ['web/demo-cli.mjs', ...args, '--json']);
    assert.equal(json.code, 0);
    const r = JSON.parse(json.out);
    assert.equal(r.players, 3);
    assert.equal(r.episodesPlanned, 3);
    assert.equal(r.endOnScore, 4);
    assertEpisodes(r, 3, 'scripts/demo');
    assert.ok(r.episodes.some((e) => !e.truncated[0]), 'an episode ended on the score');
  });
});
