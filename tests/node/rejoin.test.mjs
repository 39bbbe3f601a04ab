// Rejoin after a reload and desync recovery (issue 16) through the simulator behind scripts/demo:
// every peer a SessionPeer over the real .wasm; a page that goes away and comes back as a fresh
// SessionPeer ({rejoin: true}) and a fresh env; a corrupted env with desyncPolicy 'resync'.
//   node --test tests/node/rejoin.test.mjs        (needs build/wasm: scripts/build wasm)
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadP2PSync } from '../../web/p2psync.js';
import { runSession } from '../../web/sim_session.js';

let lib;
before(async () => { lib = await loadP2PSync(); });

for (const players of [2, 3]) {
  test(`rejoin: a page reloads at frame 300 and is back 3 s later (mobile, ${players} players)`, async () => {
    const r = await runSession({ lib, profile: 'mobile', players, seed: 11, frames: 900, rejoinPeer: { peer: 1, atFrame: 300, downMs: 3000 } });
    assert.equal(r.healthy, true, r.verdict.reasons.join('; '));
    // the session finished on one frame, no desync, equal final states
    assert.equal(r.desyncs, 0);
    assert.ok(r.verdict.finalHashesEqual);
    // the confirmed action logs agree from the rejoin on
    assert.equal(r.actionLogsIdentical, true);
    assert.ok(r.rejoin.logsComparedFrom >= 250 && r.rejoin.logsComparedFrom <= 330, `compared from ${r.rejoin.logsComparedFrom}`);
    assert.ok(r.comparedFrames >= 550);
    // the gap is in every peer's data: the frame it came back at, how long it was away
    for (const [i, gaps] of r.rejoin.gapsByPeer.entries()) {
      const g = gaps.find((x) => x.peer === 1);
      assert.ok(g, `peer ${i}: the rejoin is in its data`);
      assert.equal(g.type, 'rejoin');
      assert.equal(g.episode, 0);
      if (i !== 1) {
        assert.ok(g.downMs >= 2900 && g.downMs < 8000, `peer ${i}: away ${g.downMs} ms`);
        assert.ok(g.lastInputFrame >= 290, `peer ${i}: its last input ${g.lastInputFrame}`);
      }
    }
    // the rejoiner recovered the rows it lost, and every peer's shared columns are equal
    const rec = r.rejoin.recovered.find((x) => x.rows > 0);
    assert.ok(rec && rec.rows >= 250, JSON.stringify(r.rejoin.recovered));
    const ep = r.episodes[0];
    assert.ok(ep.dataDigestByPeer.every((d) => d === ep.dataDigestByPeer[0]), JSON.stringify(ep.dataDigestByPeer));
    assert.deepEqual(ep.rowsByPeer, Array(players).fill(900));
    // the faults and the transfer are in the result
    assert.deepEqual(r.faults.map((f) => f.type), ['drop-peer', 'rejoin-peer']);
    const sent = r.perPeer.reduce((a, m) => a + m.session.transfers.sent, 0);
    const got = r.perPeer.reduce((a, m) => a + m.session.transfers.received, 0);
    assert.equal(sent, 1);
    assert.equal(got, 1);
  });
}

test('rejoin in the second of three episodes: the episode numbering and the earlier episodes carry over', async () => {
  const r = await runSession({ lib, profile: 'wifi', players: 2, seed: 4, frames: 400, episodes: 3, rejoinPeer: { peer: 0, atFrame: 600, downMs: 2000 } });
  assert.equal(r.healthy, true, r.verdict.reasons.join('; '));
  assert.equal(r.episodes.length, 3);
  for (const e of r.episodes) {
    assert.ok(e.endFramesByPeer.every((f) => f === e.endFramesByPeer[0]), JSON.stringify(e.endFramesByPeer));
    assert.ok(e.dataDigestByPeer.every((d) => d === e.dataDigestByPeer[0]), `episode ${e.index}: data equal`);
  }
  const g = r.rejoin.gapsByPeer[1].find((x) => x.peer === 0);
  assert.equal(g.episode, 1);
});

for (const players of [2, 3]) {
  test(`resync: a corrupted env (${players} players) is detected, one state agreed and loaded, the final states equal`, async () => {
    const common = { lib, profile: 'mobile', players, seed: 5, frames: 900, corruptAt: 400, corruptPeer: players - 1 };
    const resync = await runSession({ ...common, desyncPolicy: 'resync' });
    assert.equal(resync.healthy, true, resync.verdict.reasons.join('; '));
    assert.equal(resync.verdict.finalHashesEqual, true);
    assert.ok(resync.desyncs > 0);
    for (const m of resync.perPeer) assert.ok(m.sync.desyncEvents.every((d) => typeof d.timeMs === 'number'));
    const resyncs = resync.perPeer.map((m) => m.session.transfers.resyncs);
    assert.equal(resyncs.reduce((a, b) => a + b, 0), 1, `one peer loaded one state: ${resyncs}`);
    // every peer recorded the same agreed source: with 3 players the two healthy ones are the
    // majority (source 0); with 2 there is no majority and the lower index wins. (The source
    // records 'requested' when the request reached it before it applied the rule itself.)
    const first = resync.resync.byPeer.map((rs) => rs[0]);
    assert.ok(first.every((r) => r && r.frame === first[0].frame && r.source === 0), JSON.stringify(first));
    const rule = players === 3 ? 'majority' : 'lowest-index';
    assert.ok(first.every((r, i) => r.reason === rule || (i === 0 && r.reason === 'requested')), JSON.stringify(first));
    assert.deepEqual(resync.resync.loadedBy, [players - 1], 'the corrupted peer loaded the state');
    // the default keeps today's behaviour: reported, never repaired
    const report = await runSession({ ...common });
    assert.equal(report.healthy, true, report.verdict.reasons.join('; '));
    assert.equal(report.verdict.finalHashesEqual, false);
    assert.ok(report.desyncs > resync.desyncs * 10, `${report.desyncs} desyncs reported vs ${resync.desyncs}`);
  });
}

test('a rejoin needs the JS env and a valid peer; a bad desyncPolicy is refused', async () => {
  await assert.rejects(runSession({ lib, players: 2, rejoinPeer: { peer: 2, atFrame: 10 } }), /rejoinPeer.peer/);
  await assert.rejects(runSession({ lib, players: 2, rejoinPeer: { peer: 1, atFrame: 0 } }), /rejoinPeer/);
  await assert.rejects(runSession({ lib, players: 2, desyncPolicy: 'fix' }), /desyncPolicy/);
});
