// The wire codec through the real .wasm (web/p2psync.js): hand-written golden vectors, every
// truncation, every decode error code, and encode refusals naming the field; the layout table the
// JS reads its constants from (lib.layout); engine events decoded from their binary records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadP2PSync } from '../../web/p2psync.js';
import { toyWorld, describeWorld } from './helpers.mjs';

const lib = await loadP2PSync();

// Bytes written out by hand from the wire-format table (not produced by the encoder).
const GOLDEN = [
  ['INPUT', [0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x02, 0x00, 0x00, 0x00, 0x00, 0x06, 0x02, 0x00, 0x00, 0x00, 0x07, 0x03],
    { type: 'INPUT', playerIndex: 1, frame: 7, inputs: [{ frame: 6, action: 2 }, { frame: 7, action: 3 }] }],
  ['INPUT max values', [0x01, 0x01, 0x02, 0x0A, 0x0B, 0x0C, 0x0D, 0x01, 0x00, 0x0A, 0x0B, 0x0C, 0x0C, 0xFF],
    { type: 'INPUT', playerIndex: 0x0102, frame: 0x0A0B0C0D, inputs: [{ frame: 0x0A0B0C0C, action: 255 }] }],
  ['PING', [0x02, 0x40, 0x93, 0x4A, 0x00, 0x00, 0x00, 0x00, 0x00], { type: 'PING', timestamp: 1234.5 }],
  ['PONG', [0x03, 0x3F, 0xE0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], { type: 'PONG', timestamp: 0.5 }],
  ['PONG epoch', [0x03, 0x42, 0x78, 0xBC, 0xFE, 0x56, 0x80, 0x04, 0x00], { type: 'PONG', timestamp: 1700000000000.25 }],
  ['KEEPALIVE', [0x04], { type: 'KEEPALIVE' }],
  ['EPISODE_END', [0x05, 0x00, 0x00, 0x02, 0x58, 0x00, 0x00, 0x00, 0x03], { type: 'EPISODE_END', frame: 600, episode: 3 }],
  ['EPISODE_READY', [0x06, 0x00, 0x00, 0x00, 0x02, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF],
    { type: 'EPISODE_READY', episode: 2, digest: '0123456789abcdef' }],
  ['STATE_HASH', [0x07, 0x00, 0x00, 0x01, 0x2C, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10],
    { type: 'STATE_HASH', frame: 300, digest: 'fedcba9876543210' }],
  ['INPUT_REQUEST', [0x12, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x01, 0x09], { type: 'INPUT_REQUEST', start: 10, end: 265 }],
  ['INPUT_RESPONSE', [0x13, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x64, 0x01, 0x00, 0x00, 0x00, 0x65, 0x00, 0x00, 0x00, 0x00, 0x67, 0xFF],
    { type: 'INPUT_RESPONSE', playerIndex: 2, inputs: [{ frame: 100, action: 1 }, { frame: 101, action: 0 }, { frame: 103, action: 255 }] }],
  ['FOCUS_STATE', [0x14, 0x01, 0x01, 0x02, 0x03, 0x04], { type: 'FOCUS_STATE', focused: true, frame: 0x01020304 }],
  ['FOCUS_STATE blur', [0x14, 0x00, 0xFF, 0xFF, 0xFF, 0xFF], { type: 'FOCUS_STATE', focused: false, frame: 0xFFFFFFFF }],
  ['INPUT unfocused', [0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x00, 0x00, 0x07, 0x04],
    { type: 'INPUT', playerIndex: 1, frame: 7, inputs: [{ frame: 7, action: 4 }], unfocused: true }],
  ['INPUT_RESPONSE unfocused', [0x13, 0x00, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00, 0x09, 0x02],
    { type: 'INPUT_RESPONSE', playerIndex: 0, inputs: [{ frame: 9, action: 2 }], unfocused: true }],
  ['QUALITY', [0x15, 0x00, 0x00, 0x00, 0x02, 0x03, 0x03, 0xFF, 0xE8, 0x01, 0x02, 0x03, 0x04],
    { type: 'QUALITY', episode: 2, frame: 0x01020304, margin: -1.5, delay: 3 }],
  ['QUALITY margin only', [0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x24, 0x00, 0x00, 0x00, 0x00],
    { type: 'QUALITY', episode: 0, frame: 0, margin: 2.25 }],
  ['STATE_REQUEST', [0x16, 0x01, 0x00, 0x00, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00],
    { type: 'STATE_REQUEST', transferId: 0x01000002, reason: 'rejoin', source: 1, episode: 3, frame: 0 }],
  ['STATE_CHUNK', [0x17, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x04, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x03, 0xAA, 0xBB, 0xCC],
    { type: 'STATE_CHUNK', transferId: 7, total: 1027, index: 1, data: Uint8Array.of(0xAA, 0xBB, 0xCC) }],
  ['STATE_ACK', [0x18, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x05],
    { type: 'STATE_ACK', transferId: 7, status: 'receiving', firstMissing: 5, bitmap: 5 }],
];

test('the done-when example round-trips and [1,0,1] is TRUNCATED', () => {
  const m = { type: 'INPUT', playerIndex: 1, frame: 7, inputs: [{ frame: 6, action: 2 }, { frame: 7, action: 3 }] };
  assert.deepEqual(lib.decode(lib.encode(m)), m);
  assert.deepEqual(lib.decode(new Uint8Array([1, 0, 1])), { error: 'TRUNCATED' });
});

test('golden vectors decode to the expected message and encode back to the same bytes', () => {
  for (const [name, bytes, msg] of GOLDEN) {
    assert.deepEqual(lib.decode(new Uint8Array(bytes)), msg, name);
    assert.deepEqual(Array.from(lib.encode(msg)), bytes, name);
  }
  const types = new Set(GOLDEN.map((g) => g[2].type));
  assert.deepEqual([...types].sort(), Object.keys(lib.layout.messageTypes).sort(), 'every message type has a golden vector');
});

test('decode accepts ArrayBuffer, Buffer and typed-array views', () => {
  const [, bytes, msg] = GOLDEN[0];
  assert.deepEqual(lib.decode(new Uint8Array(bytes).buffer), msg);
  assert.deepEqual(lib.decode(Buffer.from(bytes)), msg);
  const padded = new Uint8Array([9, 9, ...bytes]);
  assert.deepEqual(lib.decode(padded.subarray(2)), msg);
});

test('every proper prefix is TRUNCATED (EMPTY at 0) and one more byte is TRAILING_BYTES', () => {
  for (const [name, bytes] of GOLDEN) {
    for (let n = 0; n < bytes.length; n++) {
      assert.deepEqual(lib.decode(new Uint8Array(bytes.slice(0, n))), { error: n === 0 ? 'EMPTY' : 'TRUNCATED' }, `${name}[:${n}]`);
    }
    assert.deepEqual(lib.decode(new Uint8Array([...bytes, 0])), { error: 'TRAILING_BYTES' }, name);
  }
});

test('every decode error code from a crafted input', () => {
  const cases = {
    EMPTY: [],
    UNKNOWN_TYPE: [0x08],
    TRUNCATED: [0x01, 0, 1],
    TRAILING_BYTES: [0x04, 0],
    BAD_COUNT: [0x01, 0, 1, 0, 0, 0, 7, 255, 0],
    BAD_FLAGS: [0x01, 0, 1, 0, 0, 0, 7, 1, 2, 0, 0, 0, 7, 3],  // flags 0x02 (0x01 is kInputUnfocused)
    NON_MONOTONIC_FRAMES: [0x01, 0, 1, 0, 0, 0, 7, 2, 0, 0, 0, 0, 7, 1, 0, 0, 0, 6, 1],
    FRAME_AFTER_HEADER: [0x01, 0, 1, 0, 0, 0, 7, 1, 0, 0, 0, 0, 8, 1],
    BAD_TIMESTAMP: [0x02, 0x7F, 0xF8, 0, 0, 0, 0, 0, 0],
    BAD_RANGE: [0x12, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
    BAD_VALUE: [0x14, 2, 0, 0, 0, 1],
  };
  // QUALITY: flags other than margin|proposal, a proposed delay above the limit
  assert.deepEqual(lib.decode(new Uint8Array([0x15, 0, 0, 0, 0, 3, 0x04, 0, 0, 0, 0, 0, 0])), { error: 'BAD_FLAGS' });
  assert.deepEqual(lib.decode(new Uint8Array([0x15, 0, 0, 0, 0, lib.layout.limits.maxInputDelay + 1, 0x02, 0, 0, 0, 0, 0, 0])), { error: 'BAD_VALUE' });
  for (const [code, bytes] of Object.entries(cases)) {
    assert.deepEqual(lib.decode(new Uint8Array(bytes)), { error: code }, code);
  }
  // a count of 0 is BAD_COUNT too; -Inf and a negative timestamp are BAD_TIMESTAMP
  assert.deepEqual(lib.decode(new Uint8Array([0x01, 0, 1, 0, 0, 0, 7, 0, 0])), { error: 'BAD_COUNT' });
  assert.deepEqual(lib.decode(new Uint8Array([0x03, 0xFF, 0xF0, 0, 0, 0, 0, 0, 0])), { error: 'BAD_TIMESTAMP' });
  assert.deepEqual(lib.decode(new Uint8Array([0x03, 0xBF, 0xF0, 0, 0, 0, 0, 0, 0])), { error: 'BAD_TIMESTAMP' });
});

test('encode refuses what it cannot encode, naming the field, and never truncates', () => {
  const sixteen = Array.from({ length: 16 }, (_, i) => ({ frame: i, action: 1 }));
  const bad = [
    [{ type: 'NOPE' }, /type/],
    [{ type: 'INPUT', playerIndex: 1, frame: 20, inputs: sixteen }, /inputs/],
    [{ type: 'INPUT', playerIndex: 1, frame: 20, inputs: [] }, /inputs/],
    [{ type: 'INPUT', frame: 20, inputs: [{ frame: 1, action: 1 }] }, /playerIndex/],
    [{ type: 'INPUT', playerIndex: 1, frame: 5, inputs: [{ frame: 6, action: 1 }] }, /inputs\.frame/],
    [{ type: 'INPUT', playerIndex: 1, frame: 9, inputs: [{ frame: 6, action: 1 }, { frame: 6, action: 1 }] }, /inputs\.frame/],
    [{ type: 'INPUT', playerIndex: 1, frame: 9, inputs: [{ frame: 6, action: 256 }] }, /action/],
    [{ type: 'PING', timestamp: NaN }, /timestamp/],
    [{ type: 'PONG', timestamp: -1 }, /timestamp/],
    [{ type: 'PING' }, /timestamp/],
    [{ type: 'STATE_HASH', frame: 5, digest: 'xyz' }, /digest/],
    [{ type: 'EPISODE_READY', digest: '0123456789abcdef' }, /episode/],
    [{ type: 'INPUT_REQUEST', start: 10, end: 5 }, /range/],
    [{ type: 'INPUT_REQUEST', start: 0, end: 256 }, /range/],
    [{ type: 'FOCUS_STATE', focused: 'yes', frame: 1 }, /focused/],
    [{ type: 'EPISODE_END', frame: -1, episode: 0 }, /frame/],
    [{ type: 'QUALITY', episode: 0, frame: 0, delay: 31 }, /delay/],
    [{ type: 'QUALITY', episode: 0, frame: 0, margin: NaN }, /margin/],
    [{ type: 'QUALITY', episode: 0, frame: 0, margin: 4000 }, /margin/],
    [{ type: 'STATE_REQUEST', transferId: 0, reason: 'rejoin', source: 1, episode: 0, frame: 0 }, /transferId/],
    [{ type: 'STATE_REQUEST', transferId: 1, reason: 'other', source: 1, episode: 0, frame: 0 }, /reason/],
    [{ type: 'STATE_CHUNK', transferId: 1, total: 2, index: 0, data: Uint8Array.of(1, 2, 3) }, /count/],
    [{ type: 'STATE_CHUNK', transferId: 1, total: 2, index: 1, data: Uint8Array.of(1) }, /index/],
    [{ type: 'STATE_CHUNK', transferId: 1, total: 2, index: 0, data: [1, 2] }, /data/],
    [{ type: 'STATE_ACK', transferId: 1, status: 'done', firstMissing: 0, bitmap: 0 }, /status/],
  ];
  for (const [msg, field] of bad) {
    assert.throws(() => lib.encode(msg), (e) => e instanceof TypeError && field.test(e.message), JSON.stringify(msg));
  }
  const fifteen = sixteen.slice(0, 15);
  assert.equal(lib.encode({ type: 'INPUT', playerIndex: 0, frame: 20, inputs: fifteen }).length, 9 + 5 * 15);
});

test('hash is XXH3-64 as 16 lowercase hex; canonical mode ignores key order and float noise', () => {
  assert.equal(lib.hash(''), '2d06800538d394c2');
  assert.match(lib.hash('{"a":1}'), /^[0-9a-f]{16}$/);
  assert.equal(lib.hash('{"a":1}'), lib.hash(new TextEncoder().encode('{"a":1}')));
  const a = lib.hash('{"b":1.00000001,"a":[1,2]}', { floatDigits: 6 });
  const b = lib.hash('{"a":[1,2],"b":1.0}', { floatDigits: 6 });
  assert.equal(a, b);
  assert.notEqual(lib.hash('{"b":1.00000001,"a":[1,2]}'), lib.hash('{"a":[1,2],"b":1.0}'));
  assert.throws(() => lib.hash('{not json', { floatDigits: 6 }), TypeError);
});

// ------------------------------------------------------------------------------------------------
// The layout table: every offset, enum and name JS uses comes from lib.layout (declared once in
// C++), never from a copy in JS.

test('lib.layout is what encode / decode / receive / advance produce', () => {
  const L = lib.layout;
  // message types: the names encode accepts and decode returns, the type byte on the wire
  assert.deepEqual({ ...lib.TYPES }, L.messageTypes);
  const types = new Set();
  for (const [name, bytes, msg] of GOLDEN) {
    assert.equal(lib.encode(msg)[0], L.messageTypes[msg.type], name);
    assert.equal(bytes[0], L.messageTypes[msg.type], name);
    types.add(lib.decode(new Uint8Array(bytes)).type);
  }
  assert.deepEqual([...types].sort(), Object.keys(L.messageTypes).sort());
  // decode errors: the names decode returns are the table's
  for (const bytes of [[], [0x08], [0x01, 0, 1], [0x04, 0], [0x02, 0x7F, 0xF8, 0, 0, 0, 0, 0, 0]]) {
    const { error } = lib.decode(new Uint8Array(bytes));
    assert.ok(L.decodeErrors.includes(error) && error !== L.decodeErrors[0], `${error} is a named decode error`);
  }
  // the limits: entries per packet and packet bytes
  const entries = (n) => Array.from({ length: n }, (_, i) => ({ frame: 100 + i, action: 1 }));
  const lim = L.limits;
  assert.ok(lib.encode({ type: 'INPUT', playerIndex: 1, frame: 99 + lim.maxInputsPerPacket, inputs: entries(lim.maxInputsPerPacket) }));
  assert.throws(() => lib.encode({ type: 'INPUT', playerIndex: 1, frame: 100 + lim.maxInputsPerPacket, inputs: entries(lim.maxInputsPerPacket + 1) }), /inputs/);
  assert.ok(lib.encode({ type: 'INPUT_RESPONSE', playerIndex: 1, inputs: entries(lim.maxResponseInputs) }));
  assert.throws(() => lib.encode({ type: 'INPUT_RESPONSE', playerIndex: 1, inputs: entries(lim.maxResponseInputs + 1) }), /inputs/);
  // a plan: request kinds, step flags and status names are the table's
  assert.deepEqual({ ...lib.REQUEST }, { LOAD: L.requestKinds.indexOf('load'), SAVE: L.requestKinds.indexOf('save'), ADVANCE: L.requestKinds.indexOf('advance') });
  assert.deepEqual({ ...lib.STEP }, { TERMINATED: L.stepFlags.terminated, TRUNCATED: L.stepFlags.truncated, REWARDS: L.stepFlags.rewards });
  const e = new lib.SyncEngine({ localPlayerIndex: 0, numPlayers: 2, inputDelay: 0, readyTimeoutMs: 0 });
  try {
    assert.equal(e.layout, L);
    // the episode's start barrier: the first plan saves frame 0 (the READY goes out with it)
    let plan = e.advance(0, 3);
    assert.ok(L.status.includes(plan.status) && plan.status === 'STARTING');
    assert.deepEqual([...Array(plan.requests).keys()].map((i) => L.requestKinds[plan.kind(i)]), ['save']);
    assert.equal(plan.frameOf(0), 0);
    e.saveSnapshot(0, '{"x":0}');
    // (no peer answers: the barrier opens after readyTimeoutMs, here 0)
    plan = e.advance(1, 3);
    assert.ok(L.status.includes(plan.status) && plan.status === 'RUN', plan.status);
    assert.deepEqual([...Array(plan.requests).keys()].map((i) => L.requestKinds[plan.kind(i)]), ['save', 'advance']);
    assert.deepEqual([plan.frameOf(0), plan.frameOf(1), plan.isReplay(1)], [0, 0, false]);
    assert.deepEqual([...plan.actionsOf(1)], [3, 0]);
    assert.equal(plan.predictedMaskOf(1), 0b10, 'player 1 predicted');
    // receive results are the table's names
    const seen = new Set();
    const rx = (bytes, from = 1) => { const r = e.receive(bytes, from, 'p2p', 1); seen.add(r); return r; };
    rx(lib.encode({ type: 'KEEPALIVE' }));
    rx(new Uint8Array(0));
    rx(lib.encode({ type: 'INPUT', playerIndex: 0, frame: 1, inputs: [{ frame: 1, action: 1 }] }));
    assert.equal(rx(new Uint8Array(lim.maxPacketBytes + 1).fill(0x04)), 'OVERSIZED');
    assert.notEqual(rx(new Uint8Array(lim.maxPacketBytes).fill(0x04)), 'OVERSIZED');
    for (const r of seen) assert.ok(L.rxResults.includes(r), r);
    assert.ok(seen.has('OK') && seen.has('EMPTY') && seen.has('SPOOFED_PLAYER'));
  } finally {
    e.delete();
  }
});

test('the JS names come from the module\'s table: a module with renamed names yields the renamed names', async () => {
  const real = (await import('../../build/wasm/p2psync.mjs')).default;
  const renamed = await loadP2PSync({
    moduleFactory: async (args) => {
      const M = await real(args);
      const layout = M.layout;
      M.layout = () => {
        const L = JSON.parse(layout());
        for (const k of ['rxResults', 'decodeErrors', 'status', 'eventTypes', 'fields']) L[k] = L[k].map((n) => `x_${n}`);
        return JSON.stringify(L);
      };
      return M;
    },
  });
  assert.deepEqual(renamed.decode(new Uint8Array([0x01, 0, 1])), { error: 'x_TRUNCATED' });
  assert.deepEqual(renamed.decode(new Uint8Array([0x04])), { type: 'KEEPALIVE' });
  const e = new renamed.SyncEngine({ localPlayerIndex: 0, numPlayers: 2 });
  try {
    assert.equal(e.advance(0, 0).status, 'x_STARTING');
    assert.equal(e.receive(renamed.encode({ type: 'KEEPALIVE' }), 1, 'p2p', 1), 'x_OK');
    assert.equal(e.receive(new Uint8Array(0), 1, 'p2p', 1), 'x_EMPTY');
    e.onChannelClosed(1, 2);
    const evs = e.takeEvents();
    const fb = evs.find((ev) => ev.type === 'x_fallback');
    assert.ok(fb, JSON.stringify(evs));
    assert.equal(fb.x_reason, 'channel-closed');
    assert.equal(fb.x_peer, 1);
  } finally {
    e.delete();
  }
});

// ------------------------------------------------------------------------------------------------
// Events cross as binary records: decoded in JS, every field kind, equal to the C++ JSON of the
// same record (the metrics export keeps desync and fallback events as Event::toJson()).

test('events decode with every field kind (number, bool, null, hex64, text, json), as C++ reads them', () => {
  // Two pages over the network simulator; P2P closed from the start (a fallback, hashes over the
  // relay with action counts); peer 1 starts from another state (a READY mismatch and desyncs);
  // the episode is truncated after 120 frames (terminal / episodeEnd).
  const w = toyWorld({ lib, seed: 3, profile: 'mobile', engineConfig: { maxEpisodeFrames: 120 }, episodes: 1, gameFor: (i) => ({ seed: i === 1 ? 42 : 0 }) });
  try {
    w.cutP2P();
    w.runUntil(() => w.minFramesRun() >= 40, 60000);
    // a forged hash with action counts for a hash frame peer 0 has not hashed yet: its desync
    // carries a non-empty action-count diff (a json field)
    const victim = w.peers[0].sp.engine;
    const f = (Math.floor(w.peers[0].sp.frame / 5) + 3) * 5;
    const forged = { game_id: 'p2psync', sender_id: 1, frame_number: f, state_hash: '0123456789abcdef', action_counts: { 0: { 4: 999 } } };
    assert.equal(victim.receiveRelayStateSync(forged, 1, w.now), 'OK');
    w.runUntil(() => w.allFinished(), 60000);
    assert.ok(w.allFinished(), describeWorld(w));

    const kinds = new Set();
    const kindOf = (v) => (v === null ? 'null' : typeof v === 'boolean' ? 'bool' : typeof v === 'number' ? 'number'
      : typeof v === 'object' ? 'json' : /^[0-9a-f]{16}$/.test(v) ? 'hex64' : 'text');
    for (const p of w.peers) {
      const m = p.sp.engine.exportSessionMetrics();
      const mine = (type) => p.events.filter((ev) => ev.type === type);
      // (SessionPeer adds summary, finalStateHash, rewards and missingPeers to the episodeEnd
      // events it passes on, missingPeers to endTimeout)
      const added = new Set(['type', 'summary', 'finalStateHash', 'rewards', 'missingPeers']);
      for (const ev of p.events) {
        assert.ok(lib.layout.eventTypes.includes(ev.type), ev.type);
        for (const [k, v] of Object.entries(ev)) if (!added.has(k)) { assert.ok(lib.layout.fields.includes(k), k); kinds.add(kindOf(v)); }
      }
      // desync and fallback records: the JS decode equals the C++ decode of the same record
      assert.ok(mine('desync').length > 2, `peer ${p.index}: desyncs`);
      assert.deepEqual(mine('desync'), m.sync.desyncEvents.slice(0, mine('desync').length));
      assert.deepEqual(mine('fallback'), m.quality.fallback.events);
      const ready = mine('desync').find((ev) => ev.source === 'ready');
      assert.ok(ready && ready.frame === 0 && ready.actionCountDiff === null, `peer ${p.index}: the READY mismatch`);
      assert.match(ready.localHash, /^[0-9a-f]{16}$/);
      assert.notEqual(ready.localHash, ready.remoteHash);
      assert.ok(mine('desync').some((ev) => ev.actionCountDiff && typeof ev.actionCountDiff === 'object'), 'a relay hash carried action counts');
      assert.deepEqual(mine('fallback').map((ev) => [ev.reason, ev.latencyMs]), [['channel-closed', null]]);
      // bool: the engine truncated the episode (maxEpisodeFrames)
      assert.deepEqual(mine('terminal').map((ev) => [ev.frame, ev.truncated]), [[119, true]]);
      assert.deepEqual(mine('episodeEnd').map((ev) => [ev.frame, ev.episodeFrame, ev.truncated]), [[119, 119, true]]);
      assert.ok(mine('hashBroadcast').every((ev) => typeof ev.resend === 'boolean' && /^[0-9a-f]{16}$/.test(ev.hash)));
    }
    const forgedDesync = w.peers[0].events.find((ev) => ev.type === 'desync' && ev.frame === f && ev.remoteHash === forged.state_hash);
    assert.ok(forgedDesync, 'the forged hash was compared');
    assert.equal(typeof forgedDesync.actionCountDiff, 'object');
    assert.ok(Object.keys(forgedDesync.actionCountDiff).length > 0, JSON.stringify(forgedDesync));
    assert.deepEqual([...kinds].sort(), [...lib.layout.fieldKinds].sort(), 'every field kind was decoded');
  } finally {
    w.destroy();
  }
});
