// The wire codec through the real .wasm (web/p2psync.js): hand-written golden vectors, every
// truncation, every decode error code, and encode refusals naming the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadP2PSync } from '../../web/p2psync.js';

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
  assert.equal(types.size, 10, 'every message type has a golden vector');
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
    BAD_FLAGS: [0x01, 0, 1, 0, 0, 0, 7, 1, 1, 0, 0, 0, 7, 3],
    NON_MONOTONIC_FRAMES: [0x01, 0, 1, 0, 0, 0, 7, 2, 0, 0, 0, 0, 7, 1, 0, 0, 0, 6, 1],
    FRAME_AFTER_HEADER: [0x01, 0, 1, 0, 0, 0, 7, 1, 0, 0, 0, 0, 8, 1],
    BAD_TIMESTAMP: [0x02, 0x7F, 0xF8, 0, 0, 0, 0, 0, 0],
    BAD_RANGE: [0x12, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
    BAD_VALUE: [0x14, 2, 0, 0, 0, 1],
  };
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
