// Two (and three) web/server.mjs processes sharing rooms through a private redis-server:
// a room's players on different processes pair, signal and relay; room state lives in Redis;
// seats are reclaimed across processes; rate-limit penalties are shared.
// Needs Debian's redis-server (scripts/setup installs it). Everything runs on 127.0.0.1.
// Run: node --test tests/node/server-redis.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Redis } from 'ioredis';
import { io as connect } from 'socket.io-client';
import { startRedis, spawnServer } from '../../web/server-procs.mjs';

let redis, p1, p2, raw;
const clients = [];
const common = ['--trust-proxy', '--rate', '100', '--burst', '100', '--reconnect-grace', '30', '--max-connections-per-ip', '200',
  '--proc-timeout', '2', '--quiet'];

before(async () => {
  redis = await startRedis();
  [p1, p2] = await Promise.all([spawnServer(['--redis', redis.url, ...common]), spawnServer(['--redis', redis.url, ...common])]);
  raw = new Redis(redis.url);
});
after(async () => {
  for (const c of clients) c.close();
  for (const p of [p1, p2]) if (p) await p.stop();
  if (raw) raw.disconnect();
  if (redis) await redis.stop();
});

function client(srv, { headers, transports = ['websocket'] } = {}) {
  const c = connect(srv.url, { transports, forceNew: true, reconnection: false, extraHeaders: headers });
  clients.push(c);
  return c;
}
function once(sock, event, ms = 4000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { sock.off(event, on); reject(new Error(`timeout waiting for ${event}`)); }, ms);
    const on = (...a) => { clearTimeout(t); resolve(a.length > 1 ? a : a[0]); };
    sock.once(event, on);
  });
}
function outcome(c, ms = 4000) {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), ms);
    c.once('connect', () => { clearTimeout(t); resolve('connected'); });
    c.once('connect_error', (e) => { clearTimeout(t); resolve(`refused: ${e.message} ${e.context?.responseText ?? ''}`.trim()); });
  });
}
const ack = (sock, event, payload) => sock.timeout(4000).emitWithAck(event, payload);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');

/** Player i joins on servers[i]; resolves once every player got room_ready. */
async function room(servers, payload) {
  const cs = servers.map((s) => client(s));
  const ready = cs.map((c) => once(c, 'room_ready'));
  const joined = [];
  for (const c of cs) joined.push(await ack(c, 'join', payload));
  const readies = await Promise.all(ready);
  return { cs, joined, readies };
}

test('two players on different processes share a named room: pairing, signaling, every relay', async () => {
  const { cs: [a, b], joined: [ja, jb], readies: [ra, rb] } = await room([p1, p2], { room: 'x-1', players: 2 });
  assert.equal(ja.ok, true);
  assert.equal(jb.ok, true);
  assert.deepEqual([ja.playerIndex, jb.playerIndex], [0, 1]);
  assert.deepEqual(ra, rb);
  assert.deepEqual(ra.peers, [{ playerIndex: 0, id: a.id }, { playerIndex: 1, id: b.id }]);
  // signaling both ways
  const offer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' };
  let p = once(b, 'signal');
  assert.deepEqual(await ack(a, 'signal', { to: 1, data: offer }), { ok: true });
  assert.deepEqual(await p, { from: 0, data: offer });
  p = once(a, 'signal');
  assert.deepEqual(await ack(b, 'signal', { to: 0, data: { type: 'answer', sdp: 'v=0' } }), { ok: true });
  assert.deepEqual(await p, { from: 1, data: { type: 'answer', sdp: 'v=0' } });
  // relayed inputs, state sync and binary packets, in order
  const got = [];
  b.on('pyodide_other_player_action', (m) => got.push(m.frame_number));
  for (let f = 0; f < 50; f++) a.emit('pyodide_player_action', { player_id: 0, action: f % 3, frame_number: f, timestamp: f });
  const last = once(a, 'pyodide_other_player_action');
  b.emit('pyodide_player_action', { player_id: 1, action: 2, frame_number: 7 });
  assert.deepEqual(await last, { player_id: 1, action: 2, frame_number: 7, from: 1 });
  const sync = { game_id: 'g', sender_id: 1, frame_number: 60, state_hash: 'abcd', action_counts: null };
  p = once(a, 'p2p_state_sync');
  b.emit('p2p_state_sync', sync);
  assert.deepEqual(await p, { ...sync, from: 1 });
  p = once(a, 'p2psync_packet');
  assert.deepEqual(await ack(b, 'p2psync_packet', { to: 0, bytes: Uint8Array.from([9, 8, 7]) }), { ok: true });
  const pk = await p;
  assert.equal(pk.from, 1);
  assert.deepEqual([...new Uint8Array(pk.bytes)], [9, 8, 7]);
  p = once(b, 'p2psync_packet');
  await ack(a, 'p2psync_packet', { to: -1, bytes: Uint8Array.from([1]) });
  assert.equal((await p).from, 0);
  for (let i = 0; i < 40 && got.length < 50; i++) await sleep(25);
  assert.deepEqual(got, Array.from({ length: 50 }, (_, f) => f));
  // validation still applies to cross-process targets
  assert.deepEqual(await ack(a, 'signal', { to: 0, data: offer }), { ok: false, error: 'bad_target' });
  assert.deepEqual(await ack(a, 'pyodide_player_action', { player_id: 1, action: 1, frame_number: 1 }), { ok: false, error: 'identity_mismatch' });
});

test('auto-match pairs players that connected to different processes (3 players, 2 processes)', async () => {
  const { cs: [a, b, c], joined } = await room([p1, p2, p1], { players: 3 });
  assert.ok(joined.every((j) => j.ok && j.room === joined[0].room && j.players === 3), JSON.stringify(joined));
  assert.match(joined[0].room, /^auto-3-\d+$/);
  assert.deepEqual(joined.map((j) => j.playerIndex), [0, 1, 2]);
  const pb = once(b, 'p2psync_packet'), pc = once(c, 'p2psync_packet');
  await ack(a, 'p2psync_packet', { to: -1, bytes: Uint8Array.from([5]) });
  assert.equal((await pb).from, 0);
  assert.equal((await pc).from, 0);
  const pa = once(a, 'signal');
  await ack(b, 'signal', { to: 0, data: { type: 'candidate', candidate: null } });
  assert.equal((await pa).from, 1);
  const next = await ack(client(p2), 'join', { players: 3 });
  assert.notEqual(next.room, joined[0].room, 'a full auto room takes nobody else');
  assert.equal(next.playerIndex, 0);
});

test('simultaneous joins on two processes: every player gets room_ready exactly once', async () => {
  const N = 40;
  const players = [];
  for (let i = 0; i < N; i++) for (const srv of [p1, p2]) players.push({ c: client(srv), room: `x-race-${i}`, got: [] });
  await Promise.all(players.map((p) => once(p.c, 'connect')));
  for (const p of players) p.c.on('room_ready', (m) => p.got.push(m));
  // every join in flight at once: the two seats of a room are taken on different processes
  const res = await Promise.all(players.map((p) => ack(p.c, 'join', { room: p.room, players: 2 })));
  assert.ok(res.every((r) => r.ok), JSON.stringify(res.find((r) => !r.ok)));
  for (let i = 0; i < 80 && players.some((p) => p.got.length === 0); i++) await sleep(25);
  await sleep(200);
  for (const p of players) {
    assert.equal(p.got.length, 1, `${p.room}: ${p.got.length} room_ready`);
    assert.equal(p.got[0].peers.length, 2);
  }
  for (const p of players) p.c.close();
});

test('room state lives in Redis: membership, size, seats, token hashes; other processes honour it', async () => {
  const { cs: [a, b], joined: [ja, jb] } = await room([p1, p2], { room: 'x-state', players: 2 });
  const h = await raw.hgetall('p2p:room:x-state');
  assert.equal(h.size, '2');
  assert.equal(h.ready, '1');
  assert.equal(h.s0, a.id);
  assert.equal(h.s1, b.id);
  assert.notEqual(h.p0, h.p1, 'the seats are held by two different processes');
  assert.equal(h.t0, sha256(ja.token));
  assert.equal(h.t1, sha256(jb.token));
  assert.ok(!Object.values(h).includes(ja.token), 'tokens are stored hashed');
  assert.equal(await raw.get(`p2p:tok:${sha256(ja.token)}`), 'x-state');
  assert.equal(Number(await raw.zscore('p2p:rooms', 'x-state')), 1e15);
  assert.equal(await raw.zcard('p2p:procs'), 2);
  // p1 never saw b join, yet it knows the room is full
  assert.deepEqual(await ack(client(p1), 'join', { room: 'x-state' }), { ok: false, error: 'room_full' });
  assert.deepEqual(await ack(client(p2), 'join', { room: 'x-state', players: 3 }), { ok: false, error: 'room_size_mismatch' });
});

test('a player who drops on one process reclaims its seat on the other', async () => {
  const { cs: [a, b], joined: [ja] } = await room([p1, p2], { room: 'x-rejoin', players: 2 });
  const left = once(b, 'peer_left');
  a.close();
  const pl = await left;
  assert.equal(pl.playerIndex, 0);
  assert.equal(pl.graceMs, 30000);
  assert.equal((await raw.hget('p2p:room:x-rejoin', 's0')), '');
  assert.deepEqual(await ack(client(p1), 'join', { room: 'x-rejoin' }), { ok: false, error: 'room_full' });
  const a2 = client(p2);
  const rejoined = once(b, 'peer_rejoined');
  const r = await ack(a2, 'join', { room: 'x-rejoin', players: 2, token: ja.token });
  assert.equal(r.ok, true);
  assert.equal(r.playerIndex, 0);
  assert.equal(r.rejoined, true);
  assert.deepEqual(await rejoined, { room: 'x-rejoin', playerIndex: 0, id: a2.id });
  assert.equal(await raw.hget('p2p:room:x-rejoin', 's0'), a2.id);
  let p = once(b, 'pyodide_other_player_action');
  a2.emit('pyodide_player_action', { player_id: 0, action: 1, frame_number: 3 });
  assert.equal((await p).from, 0);
  p = once(a2, 'p2psync_packet');
  await ack(b, 'p2psync_packet', { to: 0, bytes: Uint8Array.from([3]) });
  assert.equal((await p).from, 1);
});

test('a token used on another process takes the seat over and evicts the old connection', async () => {
  const { cs: [a, b], joined: [ja] } = await room([p1, p2], { room: 'x-takeover', players: 2 });
  const reclaimed = once(a, 'seat_reclaimed');
  const gone = once(a, 'disconnect');
  const rejoined = once(b, 'peer_rejoined');
  const a2 = client(p2);
  assert.equal((await ack(a2, 'join', { token: ja.token })).playerIndex, 0);
  assert.deepEqual(await reclaimed, { room: 'x-takeover', playerIndex: 0 });
  await gone;
  assert.equal((await rejoined).id, a2.id);
  await sleep(100);
  assert.equal(await raw.hget('p2p:room:x-takeover', 's0'), a2.id, 'the old connection leaving did not vacate the seat');
});

test('when a process shuts down, its players keep their seats for the grace period and reclaim them elsewhere', async () => {
  const p3 = await spawnServer(['--redis', redis.url, ...common]);
  try {
    const { cs: [a, b], joined: [ja] } = await room([p3, p2], { room: 'x-restart', players: 2 });
    const left = once(b, 'peer_left');
    await p3.stop();
    const pl = await left;
    assert.equal(pl.playerIndex, 0);
    assert.equal(pl.graceMs, 30000);
    assert.equal(a.connected, false);
    const a2 = client(p1);
    const rejoined = once(b, 'peer_rejoined');
    assert.equal((await ack(a2, 'join', { room: 'x-restart', token: ja.token })).playerIndex, 0);
    await rejoined;
    const p = once(a2, 'pyodide_other_player_action');
    b.emit('pyodide_player_action', { player_id: 1, action: 0, frame_number: 0 });
    assert.equal((await p).from, 1);
  } finally {
    await p3.stop();
  }
});

test('when a process is killed, the others release its seats: peers get peer_left, players reclaim elsewhere', async () => {
  const p3 = await spawnServer(['--redis', redis.url, ...common]);
  try {
    const { cs: [a, b], joined: [ja] } = await room([p3, p2], { room: 'x-crash', players: 2 });
    await room([p3, p3], { room: 'x-crash-all', players: 2 });
    const dead = await raw.hget('p2p:room:x-crash', 'p0');
    assert.deepEqual((await raw.smembers(`p2p:pseats:${dead}`)).sort(), ['x-crash', 'x-crash-all']);
    const left = once(b, 'peer_left', 8000);
    p3.child.kill('SIGKILL');
    const pl = await left; // within --proc-timeout (2 s) plus a heartbeat
    assert.deepEqual(pl, { playerIndex: 0, room: 'x-crash', reason: 'server process lost', graceMs: 30000 });
    assert.equal(await raw.zscore('p2p:procs', dead), null);
    assert.equal(await raw.exists(`p2p:pseats:${dead}`), 0);
    // a room whose players were all on the dead process is held for their tokens, then expires
    assert.equal(await raw.hget('p2p:room:x-crash-all', 's0'), '');
    assert.ok(Number(await raw.pttl('p2p:room:x-crash-all')) > 0);
    // the player comes back on another process with its token
    void a;
    const a2 = client(p1);
    const rejoined = once(b, 'peer_rejoined');
    assert.equal((await ack(a2, 'join', { room: 'x-crash', token: ja.token })).playerIndex, 0);
    await rejoined;
    const p = once(b, 'pyodide_other_player_action');
    a2.emit('pyodide_player_action', { player_id: 0, action: 1, frame_number: 0 });
    assert.equal((await p).from, 0);
  } finally {
    await p3.stop();
  }
});

test('a seat held by a process that stopped its heartbeat (crashed) is freed so the room can still fill', async () => {
  // a waiting room whose seat 0 belongs to a process that is gone (no heartbeat in p2p:procs)
  await raw.hset('p2p:room:x-ghost', { size: '2', auto: '0', ready: '0', s0: 'ghost-socket-id-0000', p0: 'dead-process', t0: 'f'.repeat(64) });
  await raw.set(`p2p:tok:${'f'.repeat(64)}`, 'x-ghost');
  await raw.zadd('p2p:rooms', 1e15, 'x-ghost');
  // and one whose seat 0 belongs to a live process stays taken
  const live = await raw.zrange('p2p:procs', 0, 0);
  await raw.hset('p2p:room:x-alive', { size: '2', auto: '0', ready: '0', s0: 'alive-socket-id-0000', p0: live[0] });
  await raw.zadd('p2p:rooms', 1e15, 'x-alive');
  const a = client(p1);
  const ja = await ack(a, 'join', { room: 'x-ghost', players: 2 });
  assert.equal(ja.playerIndex, 0, 'the ghost seat was freed');
  assert.equal(await raw.get(`p2p:tok:${'f'.repeat(64)}`), null, "the ghost's token went with it");
  const b = client(p2);
  const ready = once(a, 'room_ready');
  assert.equal((await ack(b, 'join', { room: 'x-ghost', players: 2 })).playerIndex, 1);
  assert.deepEqual((await ready).peers.map((p) => p.id), [a.id, b.id]);
  assert.equal((await ack(client(p1), 'join', { room: 'x-alive', players: 2 })).playerIndex, 1);
});

test('a rate-limit penalty earned on one process is enforced by the other', async () => {
  const bad = { 'X-Forwarded-For': '198.51.100.9' };
  const a = client(p1, { headers: bad });
  assert.equal(await outcome(a), 'connected');
  const penalty = once(a, 'penalty');
  for (let i = 0; i < 3000; i++) a.emit('bogus', {});
  assert.equal((await penalty).reason, 'rate_limited');
  await sleep(200);
  assert.match(await outcome(client(p2, { headers: bad, transports: ['polling'] })), /^refused: .*rate limited/);
  assert.match(await outcome(client(p1, { headers: bad })), /^refused/);
  assert.equal(await outcome(client(p2, { headers: { 'X-Forwarded-For': '198.51.100.10' } })), 'connected');
  assert.ok(Number(await raw.hget('p2p:pen:198.51.100.9', 'strikes')) >= 1);
});

test('a process that finds it was taken for dead closes its seated connections (their clients reclaim)', async () => {
  const { cs: [a, b], joined: [ja] } = await room([p1, p2], { room: 'x-stall', players: 2 });
  const idle = client(p1);
  assert.equal(await outcome(idle), 'connected');
  const proc = await raw.hget('p2p:room:x-stall', 'p0');
  const gone = once(a, 'disconnect', 5000);
  await raw.zrem('p2p:procs', proc); // what the others do once its heartbeat is --proc-timeout old
  assert.equal((await gone)[0], 'io server disconnect');
  await sleep(100);
  assert.equal(idle.connected, true, 'a connection without a seat stays');
  assert.equal(b.connected, true);
  const a2 = client(p2);
  assert.equal((await ack(a2, 'join', { token: ja.token })).playerIndex, 0);
});
