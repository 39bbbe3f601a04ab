// Multi-peer sessions over the network simulator, every peer running the real .wasm engine
// (web/sim_session.js), plus the main job's CLI (scripts/demo --json). A session is episodes that
// end by truncation after `frames` frames (the engine's maxEpisodeFrames) or by the env; these
// sessions play one truncated episode unless they say otherwise (tests/node/episodes.test.mjs
// has the multi-episode sweeps).
//   node --test tests/node/session.test.mjs        (needs build/wasm: scripts/build wasm)
// Budget: well under 60 s on 2 cores. One p2psync module and ONE Pyodide instance (shared by the
// Python-env sessions; every session still gives each peer its own env object) for the whole file.
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { loadP2PSync } from '../../web/p2psync.js';
import { runSession } from '../../web/sim_session.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let lib;
before(async () => { lib = await loadP2PSync(); });

function summary(r) {
  return JSON.stringify({
    healthy: r.healthy, reasons: r.verdict.reasons, episodes: r.episodes, framesRun: r.framesRun, confirmed: r.confirmedFrames,
    desyncs: r.desyncs, rollbacks: r.rollbacks, stalls: r.stalls, waits: r.waits, fallback: r.fallback, errors: r.errors.slice(0, 3),
  });
}

/**
 * The consistency every normal one-episode session must show: the engine truncates the episode
 * after `frames` frames (runSession's maxEpisodeFrames) on every peer, never runs a frame past
 * it, and every peer confirmed the same actions and reached the same final state.
 */
function assertConsistent(r, frames) {
  const s = summary(r);
  assert.equal(r.verdict.timedOut, false, `session did not finish: ${s}`);
  assert.equal(r.episodesPlanned, 1);
  assert.equal(r.episodes.length, 1, `one episode: ${s}`);
  const [ep] = r.episodes;
  assert.equal(ep.index, 0);
  assert.deepEqual(ep.endFramesByPeer, r.framesRun.map(() => frames - 1), `every peer ended on frame ${frames - 1}: ${s}`);
  assert.deepEqual(ep.episodeEndFramesByPeer, ep.endFramesByPeer, 'the first episode starts at session frame 0');
  assert.equal(ep.frames, frames);
  assert.ok(ep.truncated.every((t) => t === true), `truncated by the frame limit: ${s}`);
  assert.deepEqual(r.framesRun, r.framesRun.map(() => frames), `every peer executed exactly ${frames} frames (none past the end): ${s}`);
  assert.equal(r.finalStateFrame, frames - 1);
  assert.ok(ep.finalStateHashes.every((h) => /^[0-9a-f]{16}$/.test(h) && h === ep.finalStateHashes[0]), `final hashes equal: ${s}`);
  assert.deepEqual(r.finalStateHashes, ep.finalStateHashes);
  assert.ok(ep.rewards.every((x) => JSON.stringify(x) === JSON.stringify(ep.rewards[0])), `equal rewards: ${s}`);
  assert.equal(r.actionLogsIdentical, true, `action logs identical: ${s}`);
  assert.equal(r.comparedFrames, frames, `every frame of the episode confirmed and compared: ${s}`);
  assert.equal(r.desyncs, 0, `no desync: ${s}`);
  assert.deepEqual(r.nondeterminism, [], `no nondeterminism: ${s}`);
  assert.deepEqual(r.errors, [], `no engine/runner errors: ${s}`);
  for (const m of r.perPeer) {
    assert.equal(m.session.badStepReports, 0, 'every step reported in plan order');
    assert.equal(m.session.unreportedSteps, 0);
    assert.equal(m.session.terminalFrame, frames - 1);
    assert.deepEqual(m.episodes.map((e) => e.frame), [frames - 1]);
  }
  assert.equal(r.healthy, true, `healthy: ${s}`);
}

// ------------------------------------------------------------------------------------------------
describe('profiles × players × seeds (JS env, 600 frames)', () => {
  for (const profile of ['lan', 'wifi', 'mobile', 'bad', 'hostile']) {
    for (const players of [2, 4]) {
      test(`${profile}, ${players} players, seeds 1 and 2: identical logs, no desync, equal final hashes`, async () => {
        for (const seed of [1, 2]) {
          const r = await runSession({ lib, players, profile, seed, frames: 600 });
          assertConsistent(r, 600);
          if (profile === 'lan') assert.equal(r.fallback.length, 0, 'lan never falls back');
          if (profile === 'bad' || profile === 'hostile') assert.ok(r.rollbacks.count > 0, 'lossy profiles cause rollbacks');
        }
      });
    }
  }

  test('a session is a pure function of its options (same seed → same result)', async () => {
    const a = await runSession({ lib, players: 3, profile: 'bad', seed: 'repeat', frames: 300 });
    const b = await runSession({ lib, players: 3, profile: 'bad', seed: 'repeat', frames: 300 });
    for (const k of ['finalStateHashes', 'actionLogHashes', 'rollbacks', 'stalls', 'waits', 'framesRun', 'confirmedFrames', 'fallback', 'virtualMs']) {
      assert.deepEqual(a[k], b[k], k);
    }
    assert.deepEqual(a.network, b.network);
    const c = await runSession({ lib, players: 3, profile: 'bad', seed: 'other', frames: 300 });
    assert.notDeepEqual(c.actionLogHashes, a.actionLogHashes, 'another seed plays another game');
  });
});

// ------------------------------------------------------------------------------------------------
describe('faults (JS env)', () => {
  test('cut-p2p at 300: fallback (channel-closed) at frame >= 300 on every peer, relay carries the inputs', async () => {
    for (const players of [2, 4]) {
      const r = await runSession({ lib, players, profile: 'wifi', seed: 3, frames: 600, cutP2PAt: 300 });
      assertConsistent(r, 600);
      const s = summary(r);
      for (let i = 0; i < players; i++) {
        const mine = r.fallback.filter((f) => f.peer === i);
        assert.ok(mine.length >= 1, `peer ${i} fell back: ${s}`);
        const cc = mine.filter((f) => f.reason === 'channel-closed');
        assert.ok(cc.length >= 1, `peer ${i} fell back for channel-closed: ${s}`);
        assert.ok(cc.every((f) => f.frame >= 300), `peer ${i} fallback frame >= 300: ${s}`);
        assert.equal(r.p2p[i].p2pFallbackTriggered, true);
        assert.ok(r.p2p[i].p2pFallbackFrame >= 300, `p2pFallbackFrame ${r.p2p[i].p2pFallbackFrame}`);
      }
      const cut = r.faults.find((f) => f.type === 'cut-p2p');
      assert.ok(cut && cut.framesRun.every((f) => f >= 300));
      for (let i = 0; i < players; i++) {
        const before = cut.p2p[i].inputsReceivedViaSocketIO, after = r.p2p[i].inputsReceivedViaSocketIO;
        // ~300 frames of every remote peer's inputs can only have come through the relay
        assert.ok(after - before >= 250 * (players - 1), `peer ${i}: inputsReceivedViaSocketIO ${before} -> ${after}`);
        const p2pAfter = r.p2p[i].inputsReceivedViaP2P - cut.p2p[i].inputsReceivedViaP2P;
        assert.ok(p2pAfter <= 5 * (players - 1), `peer ${i}: (almost) no P2P input after the cut (${p2pAfter})`);
      }
    }
  });

  test('cut-p2p at 200 and restore at 400: consistent throughout', async () => {
    const r = await runSession({ lib, players: 2, profile: 'mobile', seed: 4, frames: 600, cutP2PAt: 200, restoreP2PAt: 400 });
    assertConsistent(r, 600);
    assert.deepEqual(r.faults.map((f) => f.type), ['cut-p2p', 'restore-p2p']);
  });

  test('corrupt at 400: every peer detects the desync at the first hash frame after 400', async () => {
    for (const [players, profile] of [[2, 'wifi'], [3, 'bad']]) {
      const r = await runSession({ lib, players, profile, seed: 5, frames: 600, corruptAt: 400 });
      const s = summary(r);
      assert.equal(r.actionLogsIdentical, true, s);
      assert.equal(r.verdict.expectedDesyncFrame, 405); // corrupt() after stepping 400 -> snapshot 401 differs; hash frames every 5
      for (let i = 0; i < players; i++) {
        const mine = r.desyncEvents.filter((d) => d.peer === i);
        assert.ok(mine.length > 0, `peer ${i} detected a desync: ${s}`);
        assert.equal(Math.min(...mine.map((d) => d.frame)), 405, `peer ${i} first desync frame: ${s}`);
        // only pairs involving the corrupted peer (1) disagree
        assert.ok(mine.every((d) => i === 1 ? d.remotePeer !== 1 : d.remotePeer === 1), `peer ${i} desync partners`);
      }
      assert.ok(r.desyncEvents.every((d) => d.frame >= 405), 'nothing before the corruption');
      assert.notEqual(r.finalStateHashes[1], r.finalStateHashes[0]);
      // the corruption changes the state, not the inputs: the episode still ends on one frame
      assert.deepEqual(r.episodes[0].endFramesByPeer, r.framesRun.map(() => 599), s);
      assert.equal(r.healthy, true, `the expected desync makes the corrupt run healthy: ${s}`);
    }
  });

  test('stall-peer 1:2000@300: the other peer stalls or waits, both converge', async () => {
    const r = await runSession({ lib, players: 2, profile: 'wifi', seed: 6, frames: 600, stallPeer: { peer: 1, ms: 2000, atFrame: 300 } });
    assertConsistent(r, 600);
    const s = summary(r);
    assert.ok(r.ticks[0].stalls + r.ticks[0].waits > 0, `peer 0 stalled or waited: ${s}`);
    assert.ok(Math.abs(r.finalFrames[0] - r.finalFrames[1]) <= 5, `frame counters converged: ${r.finalFrames}`);
    const stall = r.faults.find((f) => f.type === 'stall-peer');
    assert.ok(stall && stall.peer === 1 && stall.framesRun[1] === 300);
  });
});

// ------------------------------------------------------------------------------------------------
describe('Python env in Pyodide (one shared instance)', () => {
  let pyodide;
  before(async () => {
    const { loadPyodide } = await import('pyodide');
    pyodide = await loadPyodide();
  });

  test('sync-test over the nondeterministic env is flagged within 100 frames; the deterministic env never', async () => {
    const bad = await runSession({ lib, pyodide, env: 'pyodide', nondeterministic: true, syncTest: 2, players: 2, profile: 'lan', seed: 7, frames: 120 });
    assert.ok(bad.nondeterminism.length > 0, `flagged: ${summary(bad)}`);
    assert.ok(bad.nondeterminism.every((n) => n.detectedAtFrame <= 100), JSON.stringify(bad.nondeterminism));
    assert.equal(bad.actionLogsIdentical, true, 'inputs still agree');
    assert.equal(bad.healthy, true, 'the expected flag makes this run healthy');

    const good = await runSession({ lib, pyodide, env: 'pyodide', syncTest: 2, players: 2, profile: 'lan', seed: 7, frames: 120 });
    assert.deepEqual(good.nondeterminism, [], 'deterministic env never flagged');
    assertConsistent(good, 120);
  });

  // A misprediction rollback legitimately changes a frame's state: sync-test must re-record the
  // first-run hashes after it instead of flagging the env.
  test('sync-test with network mispredictions (profile mobile): the deterministic env is never flagged', async () => {
      const r = await runSession({ lib, pyodide, env: 'pyodide', syncTest: 2, players: 2, profile: 'mobile', seed: 7, frames: 300 });
      assert.ok(r.rollbacks.count > 0, 'the profile causes misprediction rollbacks');
      assert.deepEqual(r.nondeterminism, [], 'deterministic env never flagged');
      assertConsistent(r, 300);
    });

  test('episodes the Python env ends itself (end_on_score, batched replays in Python): every episode on one frame', async () => {
    const r = await runSession({ lib, pyodide, env: 'pyodide', players: 2, profile: 'mobile', inputDelay: 0, endOnScore: 3, episodes: 2, frames: 900, seed: 9 });
    const s = summary(r);
    assert.equal(r.healthy, true, s);
    assert.equal(r.episodes.length, 2, s);
    for (const ep of r.episodes) {
      assert.equal(ep.endFramesByPeer[0], ep.endFramesByPeer[1], s);
      assert.equal(ep.finalStateHashes[0], ep.finalStateHashes[1], s);
      assert.deepEqual(ep.truncated, [false, false], `ended by the env's score condition: ${s}`);
      assert.ok(Object.values(ep.rewards[0]).some((v) => v >= 3), s);
    }
    assert.equal(r.actionLogsIdentical, true, s);
    assert.ok(r.rollbacks.framesReplayed > 0, 'replays went through the Python env');
  });

  test("profile 'bad', 600 frames: identical logs and final hashes", async () => {
    const r = await runSession({ lib, pyodide, env: 'pyodide', players: 2, profile: 'bad', seed: 8, frames: 600 });
    assertConsistent(r, 600);
    assert.ok(r.rollbacks.count > 0, 'rollbacks replayed through the Python env');
  });
});

// ------------------------------------------------------------------------------------------------
describe('CLI', () => {
  function run(cmd, args, timeoutMs = 120000) {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '', err = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { err += d; });
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`timeout: ${cmd} ${args.join(' ')}\n${err}`)); }, timeoutMs);
      child.on('error', reject);
      child.on('close', (code) => { clearTimeout(timer); resolve({ code, out, err }); });
    });
  }

  test('scripts/demo --json: default run prints exactly one healthy JSON object', async () => {
    const { code, out, err } = await run(path.join(ROOT, 'scripts/demo'), ['--json'], 300000);
    assert.equal(code, 0, `exit 0; stderr:\n${err.slice(-2000)}`);
    const lines = out.trim().split('\n');
    assert.equal(lines.length, 1, 'one line on stdout');
    const r = JSON.parse(lines[0]);
    assert.equal(r.healthy, true);
    assert.equal(r.players, 2);
    assert.equal(r.frames, 900);
    assert.equal(r.profile, 'wifi');
    assert.equal(r.actionLogsIdentical, true);
    assert.equal(r.desyncs, 0);
    assert.equal(r.finalStateHashes.length, 2);
    assert.equal(r.finalStateHashes[0], r.finalStateHashes[1]);
    for (const k of ['rollbacks', 'stalls', 'waits', 'p2p', 'fallback', 'nondeterminism', 'perPeer', 'verdict', 'desyncEvents', 'wallMs']) assert.ok(k in r, k);
    // one episode (the default), truncated after 900 frames on both peers
    assert.equal(r.episodesPlanned, 1);
    assert.equal(r.episodes.length, 1);
    assert.deepEqual(r.episodes[0].endFramesByPeer, [899, 899]);
    assert.deepEqual(r.episodes[0].truncated, [true, true]);
    assert.equal(r.episodes[0].frames, 900);
  });

  test('demo-cli: bad arguments exit 2; an unhealthy session exits 1', async () => {
    for (const args of [['--players', '9'], ['--profile', 'moon'], ['--stall-peer', 'x'], ['--bogus'], ['--nondeterministic']]) {
      const { code, out } = await run(process.execPath, ['web/demo-cli.mjs', ...args]);
      assert.equal(code, 2, `exit 2 for ${args.join(' ')}`);
      assert.equal(out, '', 'nothing on stdout');
    }
    // a corrupt run is healthy only when the desync is detected: corrupting after frame 58 of a
    // 60-frame run differs first at hash frame 60, which nobody hashes -> undetected -> exit 1
    const { code, out } = await run(process.execPath, ['web/demo-cli.mjs', '--frames', '60', '--corrupt-at', '58', '--json']);
    assert.equal(code, 1);
    assert.equal(JSON.parse(out).healthy, false);
  });
});
