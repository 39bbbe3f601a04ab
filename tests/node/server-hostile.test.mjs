// web/server.mjs against hostile clients (issue 15): each test reproduces one attack that the
// server used to fail, and checks the defence.
// Run: node --test tests/node/server-hostile.test.mjs
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { io as connect } from 'socket.io-client';
import { startServer, CLIENT_EVENTS } from '../../web/server.mjs';
import { escapeLog, ipKey, makeOriginPolicy } from '../../web/server-guard.mjs';

const servers = [];
const clients = [];
after(async () => {
  for (const c of clients) c.close();
  for (const s of servers) await s.close();
});

async function server(opts = {}) {
  const logs = [];
  const srv = await startServer({ port: 0, log: (m) => logs.push(m), ...opts });
  srv.logs = logs;
  servers.push(srv);
  return srv;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Retry `fn` (a promise of an outcome) until it gives `want`, for at most `ms`. */
async function eventually(fn, want, ms = 3000) {
  const t0 = Date.now();
  let got;
  do {
    got = await fn();
    if (got === want) return got;
    await sleep(50);
  } while (Date.now() - t0 < ms);
  return got;
}
function client(srv, { headers, transports = ['websocket'] } = {}) {
  const c = connect(srv.url, { transports, forceNew: true, reconnection: false, extraHeaders: headers });
  clients.push(c);
  return c;
}
function once(sock, event, ms = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { sock.off(event, on); reject(new Error(`timeout waiting for ${event}`)); }, ms);
    const on = (...a) => { clearTimeout(t); resolve(a.length > 1 ? a : a[0]); };
    sock.once(event, on);
  });
}
/** Resolves 'connected' or 'refused: <message>'. */
function outcome(c, ms = 3000) {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), ms);
    c.once('connect', () => { clearTimeout(t); resolve('connected'); });
    c.once('connect_error', (e) => { clearTimeout(t); resolve(`refused: ${e.message} ${e.context?.responseText ?? ''}`.trim()); });
  });
}
const ack = (sock, event, payload) => sock.timeout(3000).emitWithAck(event, payload);
async function pair(srv, room, extra = {}) {
  const a = client(srv, extra.a), b = client(srv, extra.b);
  const ra = once(a, 'room_ready'), rb = once(b, 'room_ready');
  const ja = await ack(a, 'join', { room, players: 2 });
  const jb = await ack(b, 'join', { room, players: 2 });
  await Promise.all([ra, rb]);
  assert.equal(ja.playerIndex, 0);
  assert.equal(jb.playerIndex, 1);
  return { a, b, ja, jb };
}
/** Raw HTTP GET to 127.0.0.1:port with chosen headers (Host included). */
function rawGet(port, path, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'GET', headers }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// unbounded memory

test('made-up event names do not grow the counters: known names plus one "other" bucket', async () => {
  const srv = await server({ ratePerSecond: 1e6, rateBurst: 1e6, logBurst: 10 });
  const N = 5, PER = 2000;
  const cs = Array.from({ length: N }, () => client(srv));
  await Promise.all(cs.map((c) => once(c, 'connect')));
  cs.forEach((c, k) => { for (let i = 0; i < PER; i++) c.emit(`made-up-${k}-${i}`, {}); });
  // a final acked event from each client orders after its flood
  for (const c of cs) assert.deepEqual(await ack(c, `last-${c.id}`, {}), { ok: false, error: 'unknown_event' });
  const s = srv.stats();
  const keys = Object.keys(s.dropsByEvent);
  const allowed = new Set([...CLIENT_EVENTS, 'other']);
  assert.ok(keys.every((k) => allowed.has(k)), `unexpected counter keys: ${keys.slice(0, 5).join(', ')}… (${keys.length})`);
  assert.equal(s.dropsByEvent.other, N * PER + N);
  assert.equal(s.drops.unknown_event, N * PER + N);
  // every counter map is bounded the same way
  for (const k of Object.keys(s.drops)) assert.match(k, /^[a-z_]+$/);
  assert.ok(Object.keys(s.drops).length < 40);
  // and a relayed event still counts under its own name
  const { a } = await pair(srv, 'mem-1');
  assert.deepEqual(await ack(a, 'pyodide_player_action', { player_id: 0, action: 1, frame_number: 'x' }), { ok: false, error: 'bad_frame' });
  assert.equal(srv.stats().dropsByEvent.pyodide_player_action, 1);
});

// ---------------------------------------------------------------------------------------------
// origins and Host

test('a page on another origin cannot connect over WebSocket or polling; same origin can', async () => {
  const srv = await server();
  const self = `http://127.0.0.1:${srv.port}`;
  assert.match(await outcome(client(srv, { headers: { Origin: 'http://evil.example' } })), /^refused/);
  assert.match(await outcome(client(srv, { headers: { Origin: 'http://evil.example' }, transports: ['polling'] })), /^refused/);
  assert.match(await outcome(client(srv, { headers: { Origin: 'null' } })), /^refused/, 'opaque origin');
  assert.match(await outcome(client(srv, { headers: { Origin: `http://127.0.0.1:${srv.port + 1}` } })), /^refused/, 'another port is another origin');
  assert.equal(await outcome(client(srv, { headers: { Origin: self } })), 'connected');
  assert.equal(await outcome(client(srv, { headers: { Origin: self }, transports: ['polling'] })), 'connected');
  assert.equal(await outcome(client(srv, { headers: { Origin: `http://localhost:${srv.port}`, Host: `localhost:${srv.port}` } })), 'connected');
  assert.equal(await outcome(client(srv)), 'connected', 'non-browser clients send no Origin');
  assert.equal(srv.stats().refused.origin, 4);
  // a refused page never got as far as a room
  assert.equal(srv.stats().connections, 4);
});

test('--allow-origin extends the allow-list (and its host name becomes a valid Host)', async () => {
  const srv = await server({ allowOrigins: ['https://Lab.example.org:443/'] });
  assert.equal(await outcome(client(srv, { headers: { Origin: 'https://lab.example.org' } })), 'connected');
  assert.equal(await outcome(client(srv, { headers: { Origin: 'https://lab.example.org', Host: 'lab.example.org' } })), 'connected');
  assert.match(await outcome(client(srv, { headers: { Origin: 'http://lab.example.org' } })), /^refused/, 'scheme is part of the origin');
  assert.match(await outcome(client(srv, { headers: { Origin: 'https://evil.example' } })), /^refused/);
  const any = await server({ allowOrigins: ['*'] });
  assert.equal(await outcome(client(any, { headers: { Origin: 'https://anything.example' } })), 'connected');
  assert.throws(() => makeOriginPolicy({ allowOrigins: ['ftp://x'] }), /bad allowed origin/);
});

test('DNS rebinding: a Host name that is not this server is refused (socket and static files)', async () => {
  const srv = await server();
  const h = `rebind.example:${srv.port}`;
  // the attacker's page is same-origin with itself, so Origin matches Host: only the Host check stops it
  assert.match(await outcome(client(srv, { headers: { Host: h, Origin: `http://${h}` } })), /^refused/);
  assert.match(await outcome(client(srv, { headers: { Host: h } })), /^refused/);
  assert.match(await outcome(client(srv, { headers: { Host: h, Origin: `http://${h}` }, transports: ['polling'] })), /^refused/);
  let r = await rawGet(srv.port, '/web/server.mjs', { Host: h });
  assert.equal(r.status, 403);
  r = await rawGet(srv.port, '/socket.io/?EIO=4&transport=polling', { Host: h });
  assert.notEqual(r.status, 200);
  r = await rawGet(srv.port, '/web/server.mjs', { Host: `127.0.0.1:${srv.port}` });
  assert.equal(r.status, 200);
  r = await rawGet(srv.port, '/web/server.mjs', { Host: `[::1]:${srv.port}` });
  assert.equal(r.status, 200);
  assert.ok(srv.stats().refused.host >= 4);
  // a name can be allowed explicitly (a reverse proxy that passes its own Host)
  const named = await server({ allowHosts: ['game.example'] });
  assert.equal(await outcome(client(named, { headers: { Host: 'game.example', Origin: 'http://game.example' } })), 'connected');
});

// ---------------------------------------------------------------------------------------------
// log injection and log flooding

test('log lines escape control characters, and the log is throttled across connections', async () => {
  const srv = await server({ logBurst: 40, logPerSecond: 5, maxConnectionsPerIp: 100 });
  const evil = 'x\n[server] forged line\x1b[31mRED\x1b[0m\r\u2028';
  const N = 60, PER = 25;
  const cs = Array.from({ length: N }, () => client(srv));
  await Promise.all(cs.map((c) => once(c, 'connect')));
  const t0 = Date.now();
  for (const c of cs) for (let i = 0; i < PER; i++) c.emit(evil, {});
  for (const c of cs) await ack(c, 'unknown-last', {});
  const elapsed = (Date.now() - t0) / 1000;
  const lines = srv.logs;
  for (const l of lines) {
    assert.ok(!/[\x00-\x1f\x7f\u2028]/.test(l), `raw control character in ${JSON.stringify(l)}`);
    assert.ok(l.startsWith('[server] '));
  }
  assert.ok(!lines.some((l) => l.startsWith('[server] forged')));
  assert.ok(lines.some((l) => l.includes('drop x\\n[server] forged line\\x1b[31mRED')), 'the name is logged, escaped');
  // without a global budget this would be N * 20 = 1200 lines
  assert.ok(lines.length <= 40 + Math.ceil(elapsed * 5) + 3, `${lines.length} lines in ${elapsed.toFixed(2)} s`);
  assert.equal(srv.stats().drops.unknown_event, N * (PER + 1));
  assert.ok(srv.stats().logSuppressed > N * 20 - 100);
  // once the budget refills, one summary line reports what was suppressed
  await sleep(600);
  const late = client(srv);
  await ack(late, 'after-the-flood', {});
  assert.ok(srv.logs.some((l) => /^\[server\] log throttled: \d+ line\(s\) suppressed$/.test(l)));
  assert.equal(escapeLog('a\\b'), 'a\\\\b');
  assert.equal(escapeLog('y'.repeat(100), 10), 'yyyyyyyyyy…');
});

// ---------------------------------------------------------------------------------------------
// connection caps and the rate-limit penalty

test('per-address connection cap: extra connections are refused, other addresses are not', async () => {
  const srv = await server({ maxConnectionsPerIp: 4, trustProxy: true });
  const xA = { 'X-Forwarded-For': '198.51.100.7' };
  const xB = { 'X-Forwarded-For': '198.51.100.8' };
  const first = Array.from({ length: 4 }, () => client(srv, { headers: xA }));
  assert.deepEqual(await Promise.all(first.map((c) => outcome(c))), Array(4).fill('connected'));
  assert.match(await outcome(client(srv, { headers: xA })), /^refused/);
  // (a refused WebSocket upgrade shows only "websocket error"; polling shows the reason)
  assert.match(await outcome(client(srv, { headers: xA, transports: ['polling'] })), /^refused: .*too many connections from this address/);
  // a client cannot dodge the cap by prepending its own X-Forwarded-For entries
  assert.match(await outcome(client(srv, { headers: { 'X-Forwarded-For': '203.0.113.1, 198.51.100.7' } })), /^refused/);
  assert.equal(await outcome(client(srv, { headers: xB })), 'connected');
  // closing one gives the slot back
  first[0].close();
  assert.equal(await eventually(() => outcome(client(srv, { headers: xA })), 'connected'), 'connected');
  assert.ok(srv.stats().refused.ip_full >= 3);
});

test('without trustProxy, X-Forwarded-For is ignored (it cannot be used to dodge the cap)', async () => {
  const srv = await server({ maxConnectionsPerIp: 3 });
  const cs = [1, 2, 3].map((i) => client(srv, { headers: { 'X-Forwarded-For': `198.51.100.${i}` } }));
  assert.deepEqual(await Promise.all(cs.map((c) => outcome(c))), Array(3).fill('connected'));
  assert.match(await outcome(client(srv, { headers: { 'X-Forwarded-For': '198.51.100.99' } })), /^refused/);
  assert.equal(ipKey('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(ipKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  assert.equal(ipKey('2001:db8:1:2::9'), ipKey('2001:db8:1:2:ffff::1'), 'one /64 is one address');
});

test('global connection cap', async () => {
  const srv = await server({ maxConnections: 6, maxConnectionsPerIp: 100 });
  const cs = Array.from({ length: 6 }, () => client(srv));
  assert.deepEqual(await Promise.all(cs.map((c) => outcome(c))), Array(6).fill('connected'));
  assert.match(await outcome(client(srv)), /^refused/);
  assert.match(await outcome(client(srv, { transports: ['polling'] })), /^refused: .*server full/);
  assert.equal(srv.stats().refused.server_full, 2);
  cs[0].close();
  assert.equal(await eventually(() => outcome(client(srv)), 'connected'), 'connected');
});

test('a client that stays rate-limited is disconnected and cannot come back with a fresh bucket', async () => {
  const srv = await server({ ratePerSecond: 50, rateBurst: 50, penaltyDrops: 200, penaltyMs: 3000, trustProxy: true });
  const bad = { 'X-Forwarded-For': '198.51.100.66' };
  const { a, b } = await pair(srv, 'pen-1', { a: { headers: bad } });
  let got = 0;
  b.on('pyodide_other_player_action', () => got++);
  const penalty = once(a, 'penalty');
  const gone = once(a, 'disconnect');
  for (let i = 0; i < 2000; i++) a.emit('pyodide_player_action', { player_id: 0, action: 0, frame_number: i });
  const p = await penalty;
  assert.equal(p.reason, 'rate_limited');
  assert.equal(p.retryAfterMs, 3000);
  assert.equal((await gone)[0], 'io server disconnect');
  assert.ok(got <= 50 + 20, `only the bucket's worth got through (${got})`);
  // reconnecting from the same address is refused while the penalty lasts
  const t0 = Date.now();
  assert.match(await outcome(client(srv, { headers: bad, transports: ['polling'] })), /^refused: .*rate limited: retry in [1-3] s/);
  assert.match(await outcome(client(srv, { headers: bad })), /^refused/);
  // ... and the honest peer and other addresses are unaffected
  assert.equal(b.connected, true);
  assert.equal(await outcome(client(srv, { headers: { 'X-Forwarded-For': '198.51.100.67' } })), 'connected');
  // after the penalty the address may connect again
  await sleep(Math.max(0, 3100 - (Date.now() - t0)));
  const again = client(srv, { headers: bad });
  assert.equal(await outcome(again), 'connected');
  // a repeat offence doubles the penalty
  const p2 = once(again, 'penalty');
  for (let i = 0; i < 2000; i++) again.emit('bogus', {});
  assert.equal((await p2).retryAfterMs, 6000);
  assert.equal(srv.stats().penalties, 2);
  assert.equal(srv.stats().refused.penalty, 2);
});

test('a short burst over the limit is only dropped (no penalty)', async () => {
  const srv = await server({ ratePerSecond: 50, rateBurst: 50, penaltyDrops: 200 });
  const { a, b } = await pair(srv, 'pen-2');
  for (let i = 0; i < 150; i++) a.emit('pyodide_player_action', { player_id: 0, action: 0, frame_number: i });
  await sleep(300);
  const p = once(b, 'pyodide_other_player_action');
  a.emit('pyodide_player_action', { player_id: 0, action: 7, frame_number: 999 });
  assert.equal((await p).action, 7);
  assert.equal(a.connected, true);
  assert.equal(srv.stats().penalties, 0);
  assert.ok(srv.stats().drops.rate_limited >= 50);
});

// ---------------------------------------------------------------------------------------------
// seat reclaim

test('joined carries a reconnect token; a dropped player reclaims its seat within the grace period', async () => {
  const srv = await server();
  const { a, b, ja } = await pair(srv, 'seat-1');
  assert.match(ja.token, /^[A-Za-z0-9_-]{32}$/);
  const left = once(b, 'peer_left');
  a.close();
  const pl = await left;
  assert.equal(pl.playerIndex, 0);
  assert.equal(pl.graceMs, 60000);
  // a stranger still cannot take the seat
  const stranger = client(srv);
  assert.deepEqual(await ack(stranger, 'join', { room: 'seat-1', players: 2 }), { ok: false, error: 'room_full' });
  // the token can
  const a2 = client(srv);
  const rejoined = once(b, 'peer_rejoined');
  const ready2 = once(a2, 'room_ready');
  const joined2 = once(a2, 'joined');
  const r = await ack(a2, 'join', { room: 'seat-1', players: 2, token: ja.token });
  assert.equal(r.ok, true);
  assert.equal(r.playerIndex, 0);
  assert.equal(r.rejoined, true);
  assert.notEqual(r.token, ja.token, 'the token is replaced');
  assert.deepEqual(await joined2, { room: 'seat-1', playerIndex: 0, players: 2, token: r.token, rejoined: true });
  assert.deepEqual(await rejoined, { room: 'seat-1', playerIndex: 0, id: a2.id });
  assert.deepEqual((await ready2).peers, [{ playerIndex: 0, id: a2.id }, { playerIndex: 1, id: b.id }]);
  // relays work both ways, addressed and broadcast
  let p = once(b, 'pyodide_other_player_action');
  a2.emit('pyodide_player_action', { player_id: 0, action: 4, frame_number: 100 });
  assert.equal((await p).from, 0);
  p = once(a2, 'signal');
  assert.deepEqual(await ack(b, 'signal', { to: 0, data: { type: 'offer', sdp: 'v=0' } }), { ok: true });
  assert.equal((await p).from, 1);
  p = once(a2, 'p2psync_packet');
  await ack(b, 'p2psync_packet', { to: 0, bytes: new Uint8Array([1, 2]) });
  assert.equal((await p).from, 1);
  // the old token is spent
  assert.deepEqual(await ack(client(srv), 'join', { token: ja.token }), { ok: false, error: 'bad_token' });
  assert.equal(srv.stats().rejoins, 1);
  // a page nonce in the join is passed on in peer_rejoined (the others tell a reload from a
  // Socket.IO reconnect of the same page by it); a malformed one is refused
  const a3 = client(srv);
  const rejoined3 = once(b, 'peer_rejoined');
  assert.deepEqual(await ack(client(srv), 'join', { room: 'seat-1', players: 2, token: r.token, session: 'a b\n' }), { ok: false, error: 'bad_session' });
  const r3 = await ack(a3, 'join', { room: 'seat-1', players: 2, token: r.token, session: 'page-9f2c' });
  assert.equal(r3.ok, true);
  assert.deepEqual(await rejoined3, { room: 'seat-1', playerIndex: 0, id: a3.id, session: 'page-9f2c' });
});

test('a token expires with the grace period; garbage and wrong-room tokens are refused', async () => {
  const srv = await server({ reconnectGraceMs: 300 });
  const { a, b, ja, jb } = await pair(srv, 'seat-2');
  const left = once(b, 'peer_left');
  a.close();
  assert.equal((await left).graceMs, 300);
  await sleep(450);
  assert.deepEqual(await ack(client(srv), 'join', { room: 'seat-2', token: ja.token }), { ok: false, error: 'token_expired' });
  assert.deepEqual(await ack(client(srv), 'join', { room: 'seat-2' }), { ok: false, error: 'room_full' });
  const c = client(srv);
  assert.deepEqual(await ack(c, 'join', { token: 'short' }), { ok: false, error: 'bad_token' });
  assert.deepEqual(await ack(c, 'join', { token: 'x'.repeat(65) }), { ok: false, error: 'bad_token' });
  assert.deepEqual(await ack(c, 'join', { token: 42 }), { ok: false, error: 'bad_token' });
  assert.deepEqual(await ack(c, 'join', { token: 'A'.repeat(32) }), { ok: false, error: 'bad_token' });
  assert.deepEqual(await ack(c, 'join', { room: 'other-room', token: jb.token }), { ok: false, error: 'bad_token' });
  assert.deepEqual(await ack(c, 'join', { room: 'seat-2', players: 3, token: jb.token }), { ok: false, error: 'room_size_mismatch' });
  assert.equal(b.connected, true, 'none of this disturbed the seated player');
});

test('a token takes over a seat whose old connection is still open (the server has not noticed the drop)', async () => {
  const srv = await server();
  const { a, b, ja } = await pair(srv, 'seat-3');
  const leftAtB = [];
  b.on('peer_left', (m) => leftAtB.push(m));
  const reclaimed = once(a, 'seat_reclaimed');
  const aGone = once(a, 'disconnect');
  const rejoined = once(b, 'peer_rejoined');
  const a2 = client(srv);
  const r = await ack(a2, 'join', { token: ja.token });
  assert.equal(r.playerIndex, 0);
  assert.deepEqual(await reclaimed, { room: 'seat-3', playerIndex: 0 });
  await aGone;
  assert.equal((await rejoined).id, a2.id);
  await sleep(50);
  assert.deepEqual(leftAtB, [], 'the seat never became vacant');
  const p = once(b, 'pyodide_other_player_action');
  a2.emit('pyodide_player_action', { player_id: 0, action: 5, frame_number: 1 });
  assert.equal((await p).action, 5);
});

test('a room whose players all dropped is held for the grace period, then deleted', async () => {
  const srv = await server({ reconnectGraceMs: 1000 });
  const { a, b, ja, jb } = await pair(srv, 'seat-4');
  const before = await srv.roomCount();
  a.close(); b.close();
  await sleep(100);
  assert.equal(await srv.roomCount(), before, 'held for reconnects');
  const a2 = client(srv);
  assert.equal((await ack(a2, 'join', { room: 'seat-4', token: ja.token })).playerIndex, 0);
  a2.close();
  await sleep(2300);
  assert.equal(await srv.roomCount(), before - 1);
  assert.deepEqual(await ack(client(srv), 'join', { token: jb.token }), { ok: false, error: 'bad_token' });
  // the name is free again
  assert.equal((await ack(client(srv), 'join', { room: 'seat-4', players: 2 })).playerIndex, 0);
});

test('before the room is ready, a leave frees the seat and its token; auto rooms reclaim by token too', async () => {
  const srv = await server();
  const x = client(srv);
  const jx = await ack(x, 'join', { room: 'seat-5', players: 2 });
  x.close();
  await sleep(50);
  assert.deepEqual(await ack(client(srv), 'join', { token: jx.token }), { ok: false, error: 'bad_token' });
  // auto-matched room: a rejoin may name it (with its token) although names starting auto- are reserved
  const a = client(srv), b = client(srv);
  const ja = await ack(a, 'join', { players: 4 - 1 - 1 });
  await ack(b, 'join', { players: 2 });
  a.close();
  await once(b, 'peer_left');
  assert.deepEqual(await ack(client(srv), 'join', { room: ja.room }), { ok: false, error: 'bad_room' });
  const r = await ack(client(srv), 'join', { room: ja.room, token: ja.token });
  assert.equal(r.ok, true);
  assert.equal(r.room, ja.room);
});

test('rooms are capped per deployment (rooms held for reconnects count too)', async () => {
  const srv = await server({ maxRooms: 3, reconnectGraceMs: 60000 });
  const { a, b } = await pair(srv, 'cap-1');
  await ack(client(srv), 'join', { room: 'cap-2', players: 2 });
  await ack(client(srv), 'join', { room: 'cap-3', players: 2 });
  assert.deepEqual(await ack(client(srv), 'join', { room: 'cap-4', players: 2 }), { ok: false, error: 'server_full' });
  assert.deepEqual(await ack(client(srv), 'join', { players: 3 }), { ok: false, error: 'server_full' });
  // joining an existing room is still fine
  assert.equal((await ack(client(srv), 'join', { room: 'cap-2' })).playerIndex, 1);
  // a started room whose players all left is held for their tokens, and still counts
  a.close(); b.close();
  await sleep(100);
  assert.equal(await srv.roomCount(), 3);
  assert.deepEqual(await ack(client(srv), 'join', { room: 'cap-5', players: 2 }), { ok: false, error: 'server_full' });
});
