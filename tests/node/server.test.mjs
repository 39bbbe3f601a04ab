// Node-only tests of web/server.mjs: pairing, signaling, relays, validation, drops, static files.
// Run: node --test tests/node/server.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io as connect } from 'socket.io-client';
import { startServer, LIMITS } from '../../web/server.mjs';

let srv;
const logs = [];
const clients = [];

before(async () => {
  srv = await startServer({ port: 0, log: (m) => logs.push(m) });
});
after(async () => {
  for (const c of clients) c.close();
  await srv.close();
});

function client() {
  const c = connect(srv.url, { transports: ['websocket'], forceNew: true, reconnection: false });
  clients.push(c);
  return c;
}
function once(sock, event, ms = 2000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { sock.off(event, on); reject(new Error(`timeout waiting for ${event}`)); }, ms);
    const on = (...a) => { clearTimeout(t); resolve(a.length > 1 ? a : a[0]); };
    sock.once(event, on);
  });
}
/** Collect every `event` on `sock` into an array (for "received nothing" checks). */
function record(sock, event) {
  const got = [];
  sock.on(event, (m) => got.push(m));
  return got;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ack = (sock, event, payload) => sock.timeout(2000).emitWithAck(event, payload);

/** Open n clients, join them all with the same join payload, return them in playerIndex order. */
let roomSeq = 0;
async function room(n, payload = { room: `t-${++roomSeq}`, players: n }) {
  const cs = Array.from({ length: n }, client);
  const ready = cs.map((c) => once(c, 'room_ready'));
  const joined = [];
  for (const c of cs) joined.push(await ack(c, 'join', payload));
  const readies = await Promise.all(ready);
  const order = [];
  joined.forEach((j, i) => { order[j.playerIndex] = cs[i]; });
  return { cs: order, joined, ready: readies[0], name: joined[0].room };
}

test('pairs 2 players (auto-match) and emits joined + room_ready', async () => {
  const a = client(), b = client();
  const ja = once(a, 'joined'), jb = once(b, 'joined');
  const ra = once(a, 'room_ready'), rb = once(b, 'room_ready');
  a.emit('join', {});
  const joinedA = await ja;
  b.emit('join');
  const joinedB = await jb;
  assert.equal(joinedA.playerIndex, 0);
  assert.equal(joinedB.playerIndex, 1);
  assert.equal(joinedA.room, joinedB.room);
  assert.equal(joinedA.players, 2);
  const [readyA, readyB] = await Promise.all([ra, rb]);
  assert.deepEqual(readyA, readyB);
  assert.equal(readyA.room, joinedA.room);
  assert.equal(readyA.players, 2);
  assert.deepEqual(readyA.peers, [{ playerIndex: 0, id: a.id }, { playerIndex: 1, id: b.id }]);
});

test('pairs 3 players; room_ready only when full; sizes do not mix', async () => {
  const cs = [client(), client(), client()];
  const lone2 = client();
  const j2 = await ack(lone2, 'join', { players: 2 });
  let earlyReady = false;
  cs[0].on('room_ready', () => { earlyReady = cs.filter((c) => c.__joined).length < 3; });
  const readies = cs.map((c) => once(c, 'room_ready'));
  const js = [];
  for (const c of cs) { js.push(await ack(c, 'join', { players: 3 })); c.__joined = true; }
  assert.deepEqual(js.map((j) => j.playerIndex), [0, 1, 2]);
  assert.ok(js.every((j) => j.room === js[0].room && j.players === 3));
  assert.notEqual(j2.room, js[0].room, '2-player auto room must not take 3-player joiners');
  const r = await Promise.all(readies);
  assert.equal(earlyReady, false);
  assert.equal(r[2].peers.length, 3);
  assert.deepEqual(r[0].peers.map((p) => p.playerIndex), [0, 1, 2]);
  lone2.close();
});

test('named rooms: join, size mismatch, full, reserved names', async () => {
  const { cs, name } = await room(2, { room: 'lab-1', players: 2 });
  assert.equal(name, 'lab-1');
  const c = client();
  assert.deepEqual(await ack(c, 'join', { room: 'lab-1' }), { ok: false, error: 'room_full' });
  const d = client();
  await ack(d, 'join', { room: 'lab-2', players: 3 });
  assert.deepEqual(await ack(c, 'join', { room: 'lab-2', players: 2 }), { ok: false, error: 'room_size_mismatch' });
  assert.deepEqual(await ack(c, 'join', { room: 'auto-2-1' }), { ok: false, error: 'bad_room' });
  assert.deepEqual(await ack(c, 'join', { room: '../x' }), { ok: false, error: 'bad_room' });
  assert.deepEqual(await ack(c, 'join', { players: 5 }), { ok: false, error: 'bad_players' });
  assert.deepEqual(await ack(c, 'join', 'lab-2'), { ok: false, error: 'bad_payload' });
  const ok = await ack(c, 'join', { room: 'lab-2' }); // adopts the room's size
  assert.equal(ok.ok, true);
  assert.equal(ok.players, 3);
  assert.deepEqual(await ack(c, 'join', { room: 'lab-3' }), { ok: false, error: 'already_joined' });
  void cs;
});

test('signaling is forwarded to the addressed peer only, with from', async () => {
  const { cs: [a, b, c] } = await room(3);
  const gotC = record(c, 'signal');
  const offer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' };
  const p = once(b, 'signal');
  assert.deepEqual(await ack(a, 'signal', { to: 1, data: offer }), { ok: true });
  assert.deepEqual(await p, { from: 0, data: offer });
  const cand = { type: 'candidate', candidate: { candidate: 'candidate:1 1 udp 1 198.18.0.1 5000 typ host', sdpMid: '0', sdpMLineIndex: 0 } };
  const q = once(a, 'signal');
  await ack(b, 'signal', { to: 0, data: cand });
  assert.deepEqual(await q, { from: 1, data: cand });
  const r = once(a, 'signal');
  await ack(b, 'signal', { to: 0, data: { type: 'candidate', candidate: null } });
  assert.deepEqual((await r).data, { type: 'candidate', candidate: null });
  await sleep(50);
  assert.equal(gotC.length, 0);
});

test('fallback relays: renamed action, state sync, binary packets', async () => {
  const { cs: [a, b, c], name } = await room(3);
  const selfA = record(a, 'pyodide_other_player_action');
  const action = { player_id: 0, action: 3, frame_number: 17, timestamp: 1234.5, game_id: 'g1', sync_epoch: 0 };
  const pb = once(b, 'pyodide_other_player_action'), pc = once(c, 'pyodide_other_player_action');
  a.emit('pyodide_player_action', action);
  assert.deepEqual(await pb, { ...action, from: 0 });
  assert.deepEqual(await pc, { ...action, from: 0 });
  // A non-numeric (subject id) player_id is allowed; `from` is authoritative.
  const pd = once(a, 'pyodide_other_player_action');
  b.emit('pyodide_player_action', { player_id: 'human-b', action: { move: [1, 2] }, frame_number: 0, timestamp: 1, room: name });
  assert.equal((await pd).from, 1);
  const sync = { game_id: 'g1', sender_id: 2, frame_number: 60, state_hash: 'deadbeef', action_counts: { 0: { 3: 10 } } };
  const sa = once(a, 'p2p_state_sync');
  c.emit('p2p_state_sync', sync);
  assert.deepEqual(await sa, { ...sync, from: 2 });
  // binary: addressed and broadcast
  const bytes = Uint8Array.from([0x10, 1, 2, 3, 255]);
  const kc = once(c, 'p2psync_packet');
  a.emit('p2psync_packet', { to: 2, bytes });
  const got = await kc;
  assert.equal(got.from, 0);
  assert.deepEqual([...new Uint8Array(got.bytes)], [...bytes]);
  const ka = once(a, 'p2psync_packet'), kc2 = once(c, 'p2psync_packet');
  const selfB = record(b, 'p2psync_packet');
  b.emit('p2psync_packet', { to: -1, bytes: bytes.buffer });
  assert.equal((await ka).from, 1);
  assert.equal((await kc2).from, 1);
  await sleep(50);
  assert.equal(selfA.length, 1, 'sender must not receive its own action (only the one from b)');
  assert.equal(selfB.length, 0);
});

test('malformed payloads are dropped with a reason and counted; peers get nothing', async () => {
  const { cs: [a, b] } = await room(2);
  const gotB = record(b, 'pyodide_other_player_action');
  const gotBs = record(b, 'p2p_state_sync');
  const gotBk = record(b, 'p2psync_packet');
  const before = srv.stats().drops;
  const good = { player_id: 0, action: 1, frame_number: 5, timestamp: 1 };
  const cases = [
    ['pyodide_player_action', 'nope', 'bad_payload'],
    ['pyodide_player_action', [good], 'bad_payload'],
    ['pyodide_player_action', { ...good, frame_number: 'x' }, 'bad_frame'],
    ['pyodide_player_action', { ...good, frame_number: -1 }, 'bad_frame'],
    ['pyodide_player_action', { ...good, frame_number: 1.5 }, 'bad_frame'],
    ['pyodide_player_action', { ...good, player_id: { x: 1 } }, 'bad_player_id'],
    ['pyodide_player_action', { ...good, player_id: 1 }, 'identity_mismatch'],
    ['pyodide_player_action', { ...good, player_id: '1' }, 'identity_mismatch'],
    ['pyodide_player_action', { ...good, action: undefined }, 'bad_action'],
    ['pyodide_player_action', { ...good, timestamp: 'now' }, 'bad_timestamp'],
    ['pyodide_player_action', { ...good, action: 'x'.repeat(LIMITS.maxEventBytes + 10) }, 'oversized'],
    ['pyodide_player_action', { ...good, action: new Uint8Array(4) }, 'unexpected_binary'],
    ['pyodide_player_action', { ...good, action: JSON.parse('['.repeat(200) + ']'.repeat(200)) }, 'too_deep'],
    ['p2p_state_sync', { sender_id: 0, frame_number: 1, state_hash: null }, 'bad_state_hash'],
    ['p2p_state_sync', { sender_id: 1, frame_number: 1, state_hash: 'ab' }, 'identity_mismatch'],
    ['p2p_state_sync', { sender_id: 0, frame_number: 1, state_hash: 'ab', action_counts: [1] }, 'bad_action_counts'],
    ['p2psync_packet', { to: 1, bytes: 'not binary' }, 'bad_bytes'],
    ['p2psync_packet', { to: 1, bytes: new Uint8Array(0) }, 'bad_bytes'],
    ['p2psync_packet', { to: 1, bytes: new Uint8Array(LIMITS.maxPacketBytes + 1) }, 'oversized'],
    ['signal', { to: 1, data: { type: 'bogus' } }, 'bad_signal_type'],
    ['signal', { to: 1, data: { type: 'offer', sdp: 42 } }, 'bad_sdp'],
    ['signal', { to: 1, data: { type: 'candidate', candidate: 7 } }, 'bad_candidate'],
    ['signal', { to: 1, data: 'x' }, 'bad_signal'],
    ['no_such_event', {}, 'unknown_event'],
  ];
  for (const [ev, payload, reason] of cases) {
    assert.deepEqual(await ack(a, ev, payload), { ok: false, error: reason }, `${ev} ${reason}`);
  }
  // extra args
  assert.deepEqual(await a.timeout(2000).emitWithAck('pyodide_player_action', good, 'x'), { ok: false, error: 'extra_args' });
  const after = srv.stats().drops;
  const expected = {};
  for (const [, , r] of cases) expected[r] = (expected[r] || 0) + 1;
  expected.extra_args = 1;
  for (const [r, n] of Object.entries(expected)) assert.equal((after[r] || 0) - (before[r] || 0), n, `drops[${r}]`);
  assert.ok(logs.some((l) => /^\[server\] drop pyodide_player_action from \S+: bad_frame$/.test(l)), 'drop is logged');
  await sleep(50);
  assert.equal(gotB.length + gotBs.length + gotBk.length, 0, 'no malformed event may reach the peer');
  // ... and the server still relays valid events for the same client
  const p = once(b, 'pyodide_other_player_action');
  a.emit('pyodide_player_action', good);
  assert.deepEqual(await p, { ...good, from: 0 });
});

test('cross-room sends are rejected; other rooms are unreachable', async () => {
  const r1 = await room(2), r2 = await room(2);
  const [a] = r1.cs;
  const victims = r2.cs.flatMap((c) => ['signal', 'pyodide_other_player_action', 'p2p_state_sync', 'p2psync_packet'].map((e) => record(c, e)));
  const outsider = client();
  await once(outsider, 'connect');
  assert.deepEqual(await ack(outsider, 'pyodide_player_action', { player_id: 0, action: 1, frame_number: 0 }), { ok: false, error: 'not_in_room' });
  assert.deepEqual(await ack(outsider, 'signal', { to: 0, data: { type: 'offer', sdp: 'x' } }), { ok: false, error: 'not_in_room' });
  assert.deepEqual(await ack(outsider, 'p2psync_packet', { to: -1, bytes: new Uint8Array(3) }), { ok: false, error: 'not_in_room' });
  assert.deepEqual(await ack(a, 'signal', { to: 2, data: { type: 'offer', sdp: 'x' } }), { ok: false, error: 'bad_target' });
  assert.deepEqual(await ack(a, 'signal', { to: 0, data: { type: 'offer', sdp: 'x' } }), { ok: false, error: 'bad_target' });
  assert.deepEqual(await ack(a, 'signal', { to: '1', data: { type: 'offer', sdp: 'x' } }), { ok: false, error: 'bad_target' });
  assert.deepEqual(await ack(a, 'p2psync_packet', { to: 7, bytes: new Uint8Array(3) }), { ok: false, error: 'bad_target' });
  assert.deepEqual(await ack(a, 'pyodide_player_action', { player_id: 0, action: 1, frame_number: 0, room: r2.name }), { ok: false, error: 'cross_room' });
  assert.deepEqual(await ack(a, 'p2p_state_sync', { sender_id: 0, frame_number: 0, state_hash: 1, room: r2.name }), { ok: false, error: 'cross_room' });
  await sleep(50);
  assert.equal(victims.reduce((n, g) => n + g.length, 0), 0);
});

test('disconnect notifies the room with peer_left; a half-filled room frees the slot', async () => {
  const { cs: [a, b] } = await room(2, { room: 'leave-1', players: 2 });
  const p = once(b, 'peer_left');
  a.close();
  assert.equal((await p).playerIndex, 0);
  // pre-ready leave: the slot is reused
  const x = client();
  assert.equal((await ack(x, 'join', { room: 'leave-2', players: 2 })).playerIndex, 0);
  x.close();
  await sleep(50);
  const y = client(), z = client();
  assert.equal((await ack(y, 'join', { room: 'leave-2', players: 2 })).playerIndex, 0);
  assert.equal((await ack(z, 'join', { room: 'leave-2', players: 2 })).playerIndex, 1);
});

test('transport-level oversize and protocol garbage only kill the offender', async () => {
  const { cs: [a, b] } = await room(2);
  const bad = client();
  await once(bad, 'connect');
  const gone = once(bad, 'disconnect', 3000);
  bad.emit('pyodide_player_action', { player_id: 0, action: 'x'.repeat(LIMITS.maxHttpBufferSize + 100), frame_number: 0 });
  await gone;
  // raw garbage straight onto the engine.io socket
  const raw = client();
  await once(raw, 'connect');
  const gone2 = once(raw, 'disconnect', 3000);
  raw.io.engine.write('2["join",');
  await gone2;
  const p = once(b, 'pyodide_other_player_action');
  a.emit('pyodide_player_action', { player_id: 0, action: 2, frame_number: 9 });
  assert.equal((await p).action, 2);
  assert.ok(srv.stats().connected >= 2);
});

test('per-connection rate limit drops a flood without disconnecting', async () => {
  const { cs: [a, b] } = await room(2);
  let got = 0;
  b.on('pyodide_other_player_action', () => got++);
  const before = srv.stats().drops.rate_limited || 0;
  const n = LIMITS.rateBurst + 400;
  for (let i = 0; i < n; i++) a.emit('pyodide_player_action', { player_id: 0, action: 0, frame_number: i });
  const last = once(b, 'pyodide_other_player_action', 3000);
  await sleep(300);
  a.emit('pyodide_player_action', { player_id: 0, action: 9, frame_number: n });
  await last;
  await sleep(100);
  const dropped = (srv.stats().drops.rate_limited || 0) - before;
  assert.ok(dropped > 0, 'flood must hit the limiter');
  assert.ok(got > 0 && got < n + 1);
  assert.equal(a.connected, true);
});

test('static files: MIME types, traversal, methods', async () => {
  const base = srv.url;
  let r = await fetch(base + 'web/server.mjs');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/javascript/);
  r = await fetch(base + 'socket.io-client/socket.io.min.js', { method: 'HEAD' });
  assert.equal(r.status, 200);
  assert.ok(Number(r.headers.get('content-length')) > 1000);
  r = await fetch(base + 'pyodide/pyodide.asm.wasm', { method: 'HEAD' });
  if (r.status === 200) assert.equal(r.headers.get('content-type'), 'application/wasm');
  r = await fetch(base + 'web/..%2fpackage.json');
  assert.equal(r.status, 403);
  r = await fetch(base + 'web/nope.js');
  assert.equal(r.status, 404);
  r = await fetch(base + 'package.json');
  assert.equal(r.status, 404);
  r = await fetch(base + 'web/server.mjs', { method: 'POST', body: 'x' });
  assert.equal(r.status, 405);
});

test('stats expose counters', () => {
  const s = srv.stats();
  for (const k of ['connected', 'rooms', 'drops', 'dropsTotal', 'dropsByEvent', 'relayed', 'disconnects']) assert.ok(k in s, k);
  assert.ok(s.dropsTotal > 0);
  assert.ok(s.relayed.pyodide_player_action > 0);
  assert.ok(s.relayed.signal > 0);
});
