// Research metrics through the real .wasm: short two-page sessions (SessionPeers with the shared toy
// game over the network simulator in virtual time, tests/node/helpers.mjs), then both engines'
// exportSessionMetrics() validated against web/session-metrics.schema.json with ajv. The schema is
// strict: a renamed or an extra field must fail. The p2pMetrics getter carries exactly the
// reference client's seven field names.
//   node --test tests/node/metrics.test.mjs        (needs build/wasm: scripts/build wasm)
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import Ajv from 'ajv';
import { loadLib, toyWorld, corruptAfter, describeWorld, FRAME_MS } from './helpers.mjs';

const SCHEMA_URL = new URL('../../web/session-metrics.schema.json', import.meta.url);
const SEED_NAMES = ['inputsReceivedViaP2P', 'inputsReceivedViaSocketIO', 'inputsSentViaP2P', 'inputsSentViaSocketIO',
  'p2pFallbackTriggered', 'p2pFallbackFrame', 'connectionType'];

let lib;
let schema;
let validate;

before(async () => {
  lib = await loadLib();
  schema = JSON.parse(await readFile(SCHEMA_URL, 'utf8'));
  assert.match(schema.$schema, /draft-07/, 'the schema declares draft-07 (plain Ajv)');
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
  validate = ajv.compile(schema);
});

function check(metrics, what) {
  const ok = validate(metrics);
  assert.ok(ok, `${what}: ${JSON.stringify(validate.errors?.slice(0, 5), null, 1)}`);
}
function errorsOf(metrics) {
  return validate(metrics) ? [] : validate.errors;
}

// ---------------------------------------------------------------------------------- a session
/**
 * Two pages over the network simulator (SessionPeers with the shared toy game, helpers.mjs).
 * Options: frames, seed, config (extra SyncConfig keys), loss (P2P), p2pMs (mean one-way P2P
 * latency; ± 20 ms), relayMs (one-way relay latency), corrupt {peer, frame} (alter the env after
 * stepping that frame, also in replays), endAt (the step of that episode frame terminates the
 * episode; the session then plays that one episode), nondeterministicPeer, alterInitial (that
 * peer starts from another state), faults: [{atFrame, run(world)}] (run once when every page has
 * executed atFrame frames). Returns the world (its peers: world.peers[i].sp).
 */
function twoPages(opts = {}) {
  const { frames = 300, seed = 1, config = {}, loss = 0.1, p2pMs = 80, relayMs = 80, corrupt = null, endAt = -1,
    nondeterministicPeer = -1, faults = [], alterInitial = -1 } = opts;
  const w = toyWorld({
    lib, seed, profile: 'lan',
    overrides: { rttMs: 2 * p2pMs, jitterMs: 40, loss, relayExtraRttMs: 2 * relayMs - 2 * p2pMs, relayJitterMs: 0 },
    engineConfig: config, actionChangeProb: 0.25, episodes: endAt >= 0 ? 1 : Infinity,
    game: endAt >= 0 ? { endAt } : {},
    gameFor: (i) => ({ nondeterministic: i === nondeterministicPeer, seed: i === alterInitial ? 42 : 0 }),
    envFor: (i, env) => (corrupt && i === corrupt.peer ? corruptAfter(env, corrupt.frame) : env),
  });
  const pending = faults.map((f) => ({ ...f, done: false }));
  const finished = w.runUntil(() => {
    const minRun = w.minFramesRun();
    for (const f of pending) {
      if (!f.done && minRun >= f.atFrame) {
        f.done = true;
        f.run(w);
      }
    }
    return endAt >= 0 ? w.allFinished() : minRun >= frames;
  }, frames * FRAME_MS * 20);
  assert.ok(finished, `the session ran its ${endAt >= 0 ? 'episode' : `${frames} frames`}: ${describeWorld(w)}`);
  const peers = w.peers.map((p) => ({ i: p.index, engine: p.sp.engine, sp: p.sp }));
  peers.world = w;
  return peers;
}

function cleanup(peers) {
  peers.world.destroy();
}

/** The engines' packet counters agree with what the network carried, per path and direction. */
function assertWireAgrees(peers) {
  const net = peers.world.netsim;
  for (const p of peers) {
    const o = 1 - p.i;
    const m = p.engine.exportSessionMetrics().inputs;
    for (const [path, name] of [['p2p', 'P2P'], ['relay', 'SocketIO']]) {
      const out = net.linkStats(p.i, o, path), inn = net.linkStats(o, p.i, path);
      assert.equal(m[`packetsSentVia${name}`], out.sent + out.refused, `peer ${p.i}: ${path} packets sent = what the network was handed`);
      assert.equal(m[`packetsReceivedVia${name}`], inn.delivered, `peer ${p.i}: ${path} packets received = what the network delivered`);
    }
  }
}

// ---------------------------------------------------------------------------------- tests

test('a lossy two-engine session: both exports validate against the schema', () => {
  const peers = twoPages({ frames: 300, seed: 7, loss: 0.15 });
  try {
    for (const p of peers) {
      const m = p.engine.exportSessionMetrics();
      check(m, `peer ${p.i}`);
      assert.equal(m.engine.localPlayerIndex, p.i);
      assert.ok(m.session.frame >= 300);
      assert.ok(m.session.verifiedFrame > 200, `verified ${m.session.verifiedFrame}`);
      assert.equal(m.sync.desyncEvents.length, 0);
      assert.ok(m.rollbacks.count > 0, 'the loss caused rollbacks');
      assert.ok(m.rollbacks.events.length > 0);
      assert.ok(m.p2pMetrics.inputsReceivedViaP2P > 250);
      assert.ok(m.inputs.packetsSentViaP2P > 300);
      assert.equal(m.quality.peers.length, 1);
      assert.ok(m.quality.peers[0].samples > 0, 'PING/PONG gave RTT samples');
      assert.equal(m.quality.fallback.triggered, false);
      assert.equal(m.p2pMetrics.p2pFallbackFrame, null);
      assert.deepEqual(m.p2pMetrics, p.engine.p2pMetrics);
    }
    // what one sent is what the other received (first deliveries split by path)
    const [a, b] = peers.map((p) => p.engine.exportSessionMetrics());
    assert.ok(b.inputs.receivedViaP2P + b.inputs.receivedViaSocketIO <= a.inputs.sentViaP2P + a.inputs.sentViaSocketIO);
    assert.equal(b.inputs.firstDelivery.p2p, b.inputs.receivedViaP2P);
    assert.equal(b.inputs.firstDelivery.relay, b.inputs.receivedViaSocketIO);
    assertWireAgrees(peers);
  } finally {
    cleanup(peers);
  }
});

test('fallback, desync, episode end and sync-test nondeterminism records validate too', () => {
  // fallback (channel closed) + a corrupted state (desync events) + an episode end with summary
  const peers = twoPages({
    frames: 400, seed: 3, loss: 0.05, config: { sendPolicy: 'dual', gameId: 'room-1', playerIds: ['alice', 'bob'] },
    corrupt: { peer: 1, frame: 100 }, endAt: 220,
    faults: [{
      atFrame: 60,
      run(w) { w.cutP2P(); },  // both channels close: each engine gets onChannelClosed
    }],
  });
  try {
    for (const p of peers) {
      const m = p.engine.exportSessionMetrics();
      check(m, `peer ${p.i}`);
      assert.equal(m.quality.fallback.triggered, true);
      assert.equal(m.quality.fallback.reason, 'channel-closed');
      assert.ok(m.quality.fallback.events.length >= 1);
      assert.equal(m.p2pMetrics.p2pFallbackTriggered, true);
      assert.equal(typeof m.p2pMetrics.p2pFallbackFrame, 'number');
      assert.ok(m.sync.desyncEvents.length > 0, 'the corrupted state was detected');
      assert.equal(m.sync.desyncEvents[0].frame, 105);
      assert.equal(m.episodes.length, 1);
      assert.equal(m.episodes[0].frame, 220);
      // the summary line has the documented shape; the schema accepts it in the episode entry
      const line = p.engine.episodeSummary({ 0: 1, 1: 2 });
      assert.match(line, /^\[Episode\] Complete at frame 220 \| Rewards: \{"0":1,"1":2\} \| InputBuf: 256 \| Rollbacks: \d+ \| Syncs: \d+ \| P2P: \d+\/\d+ \(\d+\.\d%\) \| Fallback at frame \d+$/);
      const withSummary = structuredClone(m);
      withSummary.episodes[0].summary = line;
      check(withSummary, `peer ${p.i} with the summary line`);
      withSummary.episodes[0].summary = line.replace('[Episode]', '[Ep]');
      assert.ok(errorsOf(withSummary).length > 0, 'a malformed summary line fails');
    }
  } finally {
    cleanup(peers);
  }

  // a READY digest mismatch: a desync record at frame 0 from the READY exchange
  const rd = twoPages({ frames: 40, seed: 9, alterInitial: 1 });
  try {
    for (const p of rd) {
      const m = p.engine.exportSessionMetrics();
      check(m, `READY mismatch, peer ${p.i}`);
      assert.equal(m.sync.desyncEvents[0].frame, 0);
      assert.equal(m.sync.desyncEvents[0].source, 'ready');
      assert.equal(m.sync.desyncEvents[0].actionCountDiff, null);
    }
  } finally {
    cleanup(rd);
  }

  // sync-test mode over a nondeterministic env: a nondeterminism record
  const st = twoPages({ frames: 60, seed: 5, loss: 0, config: { syncTest: { checkDistance: 3 } }, nondeterministicPeer: 0 });
  try {
    const m = st[0].engine.exportSessionMetrics();
    check(m, 'sync-test peer');
    assert.ok(m.sync.nondeterminism.length >= 1, 'nondeterminism flagged');
    assert.equal(m.sync.nondeterminism[0].checkDistance, 3);
    check(st[1].engine.exportSessionMetrics(), 'sync-test peer 1');
  } finally {
    cleanup(st);
  }
});

test('the schema is strict: renamed, extra or mistyped fields fail', () => {
  const peers = twoPages({ frames: 120, seed: 11 });
  try {
    const m = peers[0].engine.exportSessionMetrics();
    check(m, 'baseline');
    const mutations = [
      ['p2pMetrics.inputsSentViaP2P renamed', (x) => { x.p2pMetrics.inputsSentViaP2p = x.p2pMetrics.inputsSentViaP2P; delete x.p2pMetrics.inputsSentViaP2P; }],
      ['p2pMetrics extra field', (x) => { x.p2pMetrics.inputsLost = 0; }],
      ['quality.peers[0].rttAvgMs renamed', (x) => { x.quality.peers[0].rttAvg = x.quality.peers[0].rttAvgMs; delete x.quality.peers[0].rttAvgMs; }],
      ['inputs.firstDelivery.p2p renamed', (x) => { x.inputs.firstDelivery.P2P = x.inputs.firstDelivery.p2p; delete x.inputs.firstDelivery.p2p; }],
      ['rollbacks.events[0].rollbackFrames renamed', (x) => { x.rollbacks.events[0].depth = x.rollbacks.events[0].rollbackFrames; delete x.rollbacks.events[0].rollbackFrames; }],
      ['sync.hashesSent renamed', (x) => { x.sync.hashSent = x.sync.hashesSent; delete x.sync.hashesSent; }],
      ['top-level extra field', (x) => { x.extra = 1; }],
      ['schemaVersion 2', (x) => { x.schemaVersion = 2; }],
      ['connectionType unknown value', (x) => { x.p2pMetrics.connectionType = 'turn'; }],
      ['a negative counter', (x) => { x.inputs.sentViaP2P = -1; }],
      ['a count as a string', (x) => { x.rollbacks.count = String(x.rollbacks.count); }],
      ['rejected: unknown code', (x) => { x.rejected.NOT_A_CODE = 1; }],
      ['lateMargin with 64 bins', (x) => { x.inputs.lateMargin.counts.pop(); }],
    ];
    assert.ok(m.rollbacks.events.length > 0, 'the baseline has rollback events to rename');
    // the rejected codes the schema allows are the engine's receive results (its layout table) but OK
    assert.deepEqual([...schema.properties.rejected.propertyNames.enum].sort(), lib.layout.rxResults.filter((r) => r !== 'OK').sort());
    for (const [name, mutate] of mutations) {
      const x = structuredClone(m);
      mutate(x);
      assert.ok(errorsOf(x).length > 0, `${name} must fail validation`);
    }
  } finally {
    cleanup(peers);
  }
});

test('p2pMetrics getter: exactly the seven reference names, the same values as the export', () => {
  const peers = twoPages({ frames: 90, seed: 2, config: { sendPolicy: 'dual' } });
  try {
    for (const p of peers) {
      const pm = p.engine.p2pMetrics;
      assert.deepEqual(Object.keys(pm).sort(), [...SEED_NAMES].sort());
      assert.deepEqual(pm, p.engine.exportSessionMetrics().p2pMetrics);
      for (const k of SEED_NAMES.slice(0, 4)) assert.ok(Number.isInteger(pm[k]) && pm[k] > 0, `${k} = ${pm[k]}`);
      assert.equal(pm.p2pFallbackTriggered, false);
      assert.equal(pm.p2pFallbackFrame, null);
      assert.equal(pm.connectionType, 'unknown');
      // under "dual" every local input goes out on both paths
      assert.equal(pm.inputsSentViaP2P, pm.inputsSentViaSocketIO);
      assertWireAgrees(peers);
      p.engine.setConnectionType('relay');
      assert.equal(p.engine.p2pMetrics.connectionType, 'relay');
      assert.throws(() => p.engine.setConnectionType('turn'));
      // the getter is a fresh object each time: mutating it changes nothing
      pm.inputsSentViaP2P = -5;
      assert.notEqual(p.engine.p2pMetrics.inputsSentViaP2P, -5);
    }
  } finally {
    cleanup(peers);
  }
});
