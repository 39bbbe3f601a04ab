// The sync engine through the real .wasm (web/p2psync.js), driven as a page drives it: SessionPeers
// (web/peer.js, web/driver.js) over the network simulator (tests/node/helpers.mjs toyWorld) with
// the shared toy game; config errors and named receive errors.
//   node --test tests/node/engine.test.mjs      (needs scripts/build wasm)
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadLib, toyWorld, assertInSync, soloPeer, createToyGame, createRng, FRAME_MS } from './helpers.mjs';

let lib;
before(async () => { lib = await loadLib(); });

// P2P: 50 ± 10 ms one way, 10% loss, 5% reordered, 2% duplicated. Relay: reliable, ordered.
const LOSSY = { rttMs: 100, jitterMs: 20, loss: 0.1, reorder: 0.05, duplicate: 0.02 };

test('two engines over a lossy link: identical action logs, no desync', () => {
  const frames = 3000;
  const w = toyWorld({ lib, seed: 5, profile: 'wifi', overrides: LOSSY });
  try {
    w.runUntil(() => w.minFramesRun() >= frames, frames * FRAME_MS * 2);
    assert.ok(w.netsim.stats().p2p.lost > 100, 'the link really loses packets');
    assert.ok(w.netsim.stats().p2p.duplicated > 0, 'and duplicates some');
    const logs = assertInSync(w, { minCompared: frames - 40, verifiedWithin: 200 });
    assert.ok(logs.compared <= Math.min(...w.peers.map((p) => p.sp.engine.frame)));
    for (const p of w.peers) {
      // the log holds every confirmed frame, in order
      assert.equal(p.sp.loggedUpTo, p.sp.confirmedFrame);
      assert.ok(p.sp.counters.rollbacks > 20, `peer ${p.index}: mispredictions were rolled back (${p.sp.counters.rollbacks})`);
      assert.ok(p.sp.counters.framesReplayed > p.sp.counters.rollbacks, 'every rollback replayed frames');
      const m = p.sp.engine.p2pMetrics;
      assert.ok(m.inputsReceivedViaP2P > frames - 100, `inputsReceivedViaP2P ${m.inputsReceivedViaP2P}`);
      assert.ok((p.sp.rx['p2p:DUPLICATE'] ?? 0) > 0, 'redundant copies are counted as duplicates');
    }
  } finally {
    w.destroy();
  }
});

test('three engines, dual send policy (every input on P2P and the relay): identical action logs', () => {
  const w = toyWorld({ lib, players: 3, seed: 8, profile: 'wifi', overrides: { rttMs: 60, jitterMs: 12, loss: 0.15 }, engineConfig: { sendPolicy: 'dual' } });
  try {
    w.runUntil(() => w.minFramesRun() >= 1200, 1200 * FRAME_MS * 2);
    assertInSync(w, { minCompared: 1150, verifiedWithin: 200 });
    for (const p of w.peers) {
      const m = p.sp.engine.p2pMetrics;
      assert.ok(m.inputsSentViaSocketIO > 1000, `dual sends every input on the relay too (${m.inputsSentViaSocketIO})`);
      assert.ok(m.inputsSentViaP2P > 1000);
    }
  } finally {
    w.destroy();
  }
});

test('config errors throw naming the key', () => {
  const bad = [
    [{ localPlayerIndex: 0, bogus: 1 }, /config\.bogus/],
    [{}, /config\.localPlayerIndex/],
    [{ localPlayerIndex: 2 }, /config\.localPlayerIndex/],
    [{ localPlayerIndex: 0, numPlayers: 9 }, /config\.numPlayers/],
    [{ localPlayerIndex: 0, inputDelay: 99 }, /config\.inputDelay/],
    [{ localPlayerIndex: 0, inputDelay: 1.5 }, /config\.inputDelay/],
    [{ localPlayerIndex: 0, bufferFrames: 100 }, /config\.bufferFrames/],
    [{ localPlayerIndex: 0, redundancy: 0 }, /config\.redundancy/],
    [{ localPlayerIndex: 0, predictionMethod: 'guess' }, /config\.predictionMethod/],
    [{ localPlayerIndex: 0, sendPolicy: 'both' }, /config\.sendPolicy/],
    [{ localPlayerIndex: 0, timeSync: { window: 0 } }, /config\.timeSync\.window/],
    [{ localPlayerIndex: 0, timeSync: { nope: true } }, /config\.timeSync\.nope/],
    [{ localPlayerIndex: 0, syncTest: { checkDistance: 2, x: 1 } }, /config\.syncTest\.x/],
    [{ localPlayerIndex: 0, syncTest: {} }, /config\.syncTest\.checkDistance/],
    [{ localPlayerIndex: 0, timeSync: 'yes' }, /config\.timeSync/],
    [{ localPlayerIndex: 0, playerIds: ['a'] }, /config\.playerIds/],
    [{ localPlayerIndex: 0, pingIntervalMs: -1 }, /config\.pingIntervalMs/],
  ];
  for (const [cfg, re] of bad) assert.throws(() => new lib.SyncEngine(cfg), re, JSON.stringify(cfg));
  assert.throws(() => new lib.SyncEngine('nope'), TypeError);
  assert.throws(() => new lib.SyncEngine(null), TypeError);
  // a valid one works
  const e = new lib.SyncEngine({ localPlayerIndex: 1, numPlayers: 2, inputDelay: 3, timeSync: { window: 8 } });
  assert.equal(e.numActors, 2);
  e.delete();
});

test('receive() of garbage returns named errors; history and memory stay put', () => {
  // one SessionPeer whose messages go nowhere: peer 1 is whoever sends the crafted bytes
  const { sp, engine: e, clock } = soloPeer(lib, { localPlayerIndex: 0, numPlayers: 2, timeSync: false }, createToyGame());
  // the episode's start barrier: the first step saves frame 0 (its READY goes out)
  assert.equal(sp.step(1).status, 'STARTING');
  const first = sp.step(1);
  assert.equal(first.status, 'RUN');
  assert.deepEqual(first.frames.map((f) => f.frame), [0], 'frame 0 ran through the driver');
  const input = (playerIndex, entries, frame = entries.at(-1)[0]) =>
    lib.encode({ type: 'INPUT', playerIndex, frame, inputs: entries.map(([f, a]) => ({ frame: f, action: a })) });
  const rx = (bytes, from = 1, via = 'p2p') => e.receive(bytes, from, via, clock.now);

  assert.equal(rx(new Uint8Array(0)), 'EMPTY');
  assert.equal(rx(Uint8Array.of(0x7f)), 'UNKNOWN_TYPE');
  assert.equal(rx(Uint8Array.of(0x01, 0, 1)), 'TRUNCATED');
  assert.equal(rx(Uint8Array.of(0x01, 0, 1, 0, 0, 0, 5, 0, 0)), 'BAD_COUNT');
  assert.equal(rx(Uint8Array.of(0x01, 0, 1, 0, 0, 0, 5, 1, 2, 0, 0, 0, 5, 2)), 'BAD_FLAGS');  // 0x01 is kInputUnfocused
  const ok = input(1, [[0, 2], [1, 2]]);
  assert.equal(rx(Uint8Array.of(...ok, 0)), 'TRAILING_BYTES');
  assert.equal(rx(Uint8Array.of(0x01, 0, 1, 0, 0, 0, 5, 2, 0, 0, 0, 0, 4, 1, 0, 0, 0, 3, 1)), 'NON_MONOTONIC_FRAMES');
  assert.equal(rx(Uint8Array.of(0x01, 0, 1, 0, 0, 0, 2, 1, 0, 0, 0, 0, 4, 1)), 'FRAME_AFTER_HEADER');
  assert.equal(rx(Uint8Array.of(0x02, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0)), 'BAD_TIMESTAMP');  // +Inf
  assert.equal(rx(Uint8Array.of(0x12, 0, 0, 0, 9, 0, 0, 0, 1)), 'BAD_RANGE');
  assert.equal(rx(new Uint8Array(70000).fill(0x13)), 'OVERSIZED');
  assert.equal(rx(input(0, [[3, 1]])), 'SPOOFED_PLAYER');
  assert.equal(rx(input(5, [[3, 1]])), 'UNKNOWN_PLAYER');
  assert.equal(rx(input(1, [[3, 1]]), 7), 'UNKNOWN_PLAYER');
  assert.equal(rx(input(1, [[100000, 1]])), 'OUT_OF_WINDOW');
  assert.equal(rx(ok), 'OK');
  assert.equal(rx(ok), 'DUPLICATE');
  assert.equal(rx(ok, 1, 'relay'), 'DUPLICATE');
  assert.equal(rx(input(1, [[1, 3]])), 'CONFLICT');
  assert.equal(e.receiveRelay('pyodide_other_player_action', { player_id: 1, action: 2, frame_number: 1, timestamp: 5 }, 1, clock.now), 'DUPLICATE');
  assert.equal(e.receiveRelay('pyodide_other_player_action', { player_id: 1, action: 4, frame_number: 1, timestamp: 5 }, 1, clock.now), 'CONFLICT');
  assert.equal(e.receiveRelay('pyodide_other_player_action', '{"bogus":1', 1, clock.now), 'BAD_RELAY_JSON');
  assert.equal(e.receiveRelay('pyodide_other_player_action', { player_id: 1, action: 999, frame_number: 1, timestamp: 5 }, 1, clock.now), 'BAD_RELAY_JSON');
  assert.equal(e.receiveRelay('pyodide_other_player_action', { player_id: 9, action: 1, frame_number: 1, timestamp: 5 }, 1, clock.now), 'UNKNOWN_PLAYER');
  assert.equal(e.receiveRelay('no_such_event', {}, 1, clock.now), 'BAD_RELAY_JSON');
  assert.equal(e.receiveRelayInput(0, 4, 1, clock.now), 'UNKNOWN_PLAYER');
  assert.equal(e.receiveRelayInput(1, 1e6, 1, clock.now), 'OUT_OF_WINDOW');
  const rejected = e.exportSessionMetrics().rejected;
  assert.ok(rejected.CONFLICT >= 2 && rejected.SPOOFED_PLAYER >= 1 && rejected.OVERSIZED >= 1);

  // a flood of random bytes: every answer is a name, nothing throws, memory is fixed
  const names = new Set(['OK', 'DUPLICATE', 'EMPTY', 'UNKNOWN_TYPE', 'TRUNCATED', 'TRAILING_BYTES', 'BAD_COUNT',
    'BAD_FLAGS', 'NON_MONOTONIC_FRAMES', 'FRAME_AFTER_HEADER', 'BAD_TIMESTAMP', 'BAD_RANGE', 'BAD_VALUE', 'OVERSIZED',
    'SPOOFED_PLAYER', 'UNKNOWN_PLAYER', 'OUT_OF_WINDOW', 'CONFLICT', 'UNSOLICITED_PONG', 'STALE_EPISODE',
    'UNVERIFIABLE', 'FLOOD', 'BAD_RELAY_JSON']);
  const mem = e.memoryBytes();
  const rng = createRng(99);
  const seen = new Set();
  for (let i = 0; i < 20000; i++) {
    const b = new Uint8Array(rng.int(64));
    for (let k = 0; k < b.length; k++) b[k] = rng.int(256);
    if (b.length) b[0] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x12, 0x13, 0x14, 0x55][rng.int(11)];
    const r = rx(b, rng.int(3));
    assert.ok(names.has(r) && lib.layout.rxResults.includes(r), `unnamed result ${r}`);
    seen.add(r);
    if (i % 40 === 39) { clock.now += FRAME_MS; sp.step(0); }
  }
  assert.ok(seen.size >= 6, [...seen].join(','));
  assert.equal(e.memoryBytes(), mem);
  // the executed history survived the junk
  // frame 0 (local action 0: input delay 2) was replayed with player 1's real action 2
  assert.deepEqual([...e.actionLog(0, 0, false)], [0, 2], 'frame 0 as executed');
  assert.equal(e.exportSessionMetrics().session.badStepReports, 0);
  sp.destroy();
});
