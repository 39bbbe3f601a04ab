// Netcode quality (issue 17) through the simulator behind scripts/demo (web/sim_session.js):
// balanced frame advantage (no peer takes the rollbacks), the input delay chosen and agreed by
// every peer ('auto'), recorded per episode in the export, --json and the research rows.
// The full sweep (8 seeds per profile and player count) is scripts/sweep; this is a few seeds.
//   node --test tests/node/quality.test.mjs        (needs build/wasm: scripts/build wasm)
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadP2PSync } from '../../web/p2psync.js';
import { runSession } from '../../web/sim_session.js';
import { fairnessBound } from '../../web/sweep.mjs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let lib;
before(async () => { lib = await loadP2PSync(); });

/**
 * The largest share of a session's rollbacks one peer may take. A session of R rollbacks shared
 * fairly still splits them with binomial noise, so a short, quiet session (wifi: a handful of
 * rollbacks) may exceed the goal's bound by chance: allow 1/N + 3 standard deviations when that is
 * larger. A peer that keeps a lead takes nearly all of them (the issue measured 99.8%), far beyond
 * either.
 */
function allowedShare(players, rollbacks) {
  const p = 1 / players;
  return Math.max(fairnessBound(players), p + 3 * Math.sqrt((p * (1 - p)) / rollbacks));
}

for (const profile of ['wifi', 'mobile', 'bad']) {
  for (const players of [2, 4]) {
    test(`fairness: ${profile}, ${players} players — no peer takes the rollbacks, the frame advantage is balanced`, async () => {
      for (const seed of [1, 2]) {
        const r = await runSession({ lib, profile, players, seed, frames: 3000 });
        const where = `${profile} ${players}p seed ${seed}`;
        assert.equal(r.healthy, true, `${where}: ${r.verdict.reasons.join('; ')}`);
        const per = r.rollbacks.perPeer;
        const total = per.reduce((a, b) => a + b, 0);
        if (total > 0) {
          const share = Math.max(...per) / total;
          assert.ok(share <= allowedShare(players, total), `${where}: one peer took ${(100 * share).toFixed(1)}% of ${total} rollbacks (${per})`);
        }
        // every pair: the mean lead near 0, hardly ever more than a frame (sampled every frame)
        assert.equal(r.frameAdvantage.length, players);
        for (const list of r.frameAdvantage) {
          assert.equal(list.length, players - 1);
          for (const a of list) {
            assert.ok(a.samples > 2000, `${where}: P${a.peer}-P${a.remotePeer} sampled ${a.samples} times`);
            assert.ok(Math.abs(a.mean) <= 0.3, `${where}: P${a.peer} leads P${a.remotePeer} by ${a.mean} frames on average`);
            assert.ok(a.shareBeyondOne <= 0.05, `${where}: P${a.peer}-P${a.remotePeer} more than a frame apart ${(100 * a.shareBeyondOne).toFixed(1)}% of the time`);
          }
        }
        // the two views of a pair are mirror images: P_i's lead over P_j is -(P_j's over P_i)
        for (const list of r.frameAdvantage) {
          for (const a of list) {
            const b = r.frameAdvantage[a.remotePeer].find((x) => x.remotePeer === a.peer);
            assert.ok(Math.abs(a.mean + b.mean) <= 0.15, `${where}: P${a.peer}/P${a.remotePeer} leads ${a.mean} / ${b.mean}`);
          }
        }
        // WAITs stay rare: pacing does the balancing
        assert.ok(r.waits <= 0.01 * 3000 * players, `${where}: ${r.waits} WAIT frames`);
      }
    });
  }
}

test('auto input delay on a LAN: at most 1 frame, the same on every peer, in the export, the --json result and every row', async () => {
  const r = await runSession({ lib, profile: 'lan', players: 3, seed: 4, frames: 600, episodes: 2, inputDelay: 'auto' });
  assert.equal(r.healthy, true, r.verdict.reasons.join('; '));
  assert.equal(r.inputDelayByEpisode.length, 2);
  for (const d of r.inputDelayByEpisode) assert.ok(d <= 1, `lan delay ${d}`);
  for (const d of r.inputDelayByEpisodeByPeer) assert.deepEqual(d.slice(0, 2), r.inputDelayByEpisode);
  assert.equal(r.stalls, 0);
  for (const m of r.perPeer) {
    assert.deepEqual(m.quality.inputDelayByEpisode.slice(0, 2), r.inputDelayByEpisode);
    assert.deepEqual(m.episodes.slice(0, 2).map((e) => e.inputDelay), r.inputDelayByEpisode);
  }
});

test('auto input delay on a bad link: a larger delay, agreed, far fewer rollbacks than a fixed 2, no stall', async () => {
  const common = { lib, profile: 'bad', players: 2, seed: 5, frames: 1500, episodes: 2 };
  const fixed = await runSession({ ...common, inputDelay: 2 });
  const auto = await runSession({ ...common, inputDelay: 'auto' });
  for (const r of [fixed, auto]) assert.equal(r.healthy, true, r.verdict.reasons.join('; '));
  assert.deepEqual(fixed.inputDelayByEpisode.slice(0, 2), [2, 2]);
  for (const d of auto.inputDelayByEpisode) assert.ok(d > 2 && d <= 30, `bad-link delay ${d}`);
  assert.ok(auto.rollbacks.count * 2 <= fixed.rollbacks.count, `rollbacks: auto ${auto.rollbacks.count}, fixed 2 ${fixed.rollbacks.count}`);
  assert.equal(auto.stalls, 0);
});

test('the research rows (--data-out) carry the episode\'s input delay, equal on every peer', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'p2psync-quality-'));
  try {
    const r = await runSession({ lib, profile: 'mobile', players: 2, seed: 6, frames: 400, episodes: 2, inputDelay: 'auto', dataOut: dir });
    assert.equal(r.healthy, true, r.verdict.reasons.join('; '));
    const delays = r.inputDelayByEpisode.slice(0, 2);
    const texts = [];
    for (const peer of [0, 1]) {
      const text = await readFile(join(dir, `peer${peer}.csv`), 'utf8');
      texts.push(text);
      const [header, ...lines] = text.trimEnd().split('\n');
      const cols = header.split(',');
      const ep = cols.indexOf('episode'), d = cols.indexOf('inputDelay');
      assert.ok(d >= 0, `an inputDelay column: ${header}`);
      assert.equal(lines.length, 800);
      const episodes = [...new Set(lines.map((l) => l.split(',')[ep]))];
      assert.equal(episodes.length, 2);
      for (const l of lines) {
        const c = l.split(',');
        assert.equal(Number(c[d]), delays[episodes.indexOf(c[ep])], l);
      }
    }
    assert.equal(texts[1], texts[0], 'the shared columns are equal on both peers');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
