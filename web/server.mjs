// p2psync local server: static files + Socket.IO room pairing, WebRTC signaling relay,
// and the fallback input relay (reference event names).
//
//   import { startServer } from './web/server.mjs';
//   const srv = await startServer({ port: 0 });   // -> { url, port, io, close(), stats() }
//
//   node web/server.mjs [--host H] [--port P] [--players N] [--redis URL] [--allow-origin O] ...
//                                    (--help lists every option; README "Deploying the server")
//
// Trust rule: the server never trusts identity fields sent by a client. Every relayed event
// carries `from` = the sender's server-assigned playerIndex, and routing uses only the sender's
// server-side room membership (a client can only reach the room it joined). A client-supplied
// `player_id` / `sender_id` is accepted when it is a non-numeric string (an opaque subject id),
// but when it is numeric (a number, or a string of decimal digits) it must equal the sender's
// playerIndex, else the event is dropped ("identity_mismatch"). A `room` field, if present in a
// relayed payload, must name the sender's own room ("cross_room"); `game_id` is opaque and never
// used for routing.
//
// Hostile clients (see README "Deploying the server", threat model): handshakes are checked for
// Host (DNS rebinding) and Origin (other web pages) in engine.io's allowRequest, which covers
// the WebSocket upgrade (the `cors` option does not); connections are capped globally and per
// address; a connection that stays rate-limited is closed and its address refused for a
// growing penalty; counters are keyed only by names this file defines; every client-chosen
// string is escaped in the log, and the log is throttled for the whole process.
//
// Scale-out: with `redis`, room state (membership, sizes, seats, reconnect tokens) lives in
// Redis (web/server-store.mjs) and events cross processes through @socket.io/redis-adapter.
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Server } from 'socket.io';
import { MemoryStore, RedisStore } from './server-store.mjs';
import {
  LogThrottle, escapeLog, makeOriginPolicy, clientIp, ConnectionLimiter, PenaltyBox,
} from './server-guard.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '..');

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.cjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.py': 'text/x-python; charset=utf-8',
  '.zip': 'application/zip',
  '.whl': 'application/zip',
  '.tar': 'application/x-tar',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
};
function mimeFor(file) {
  if (file.endsWith('.d.ts')) return 'text/plain; charset=utf-8';
  return MIME[path.extname(file).toLowerCase()] || 'application/octet-stream';
}

/** Limits (bytes / counts). Exported so tests and docs agree with the code. */
export const LIMITS = Object.freeze({
  maxEventBytes: 4096,        // per-event payload budget (approx. serialized size), checked per event
  maxHttpBufferSize: 64 * 1024, // transport hard cap (engine.io closes the connection above it)
  maxPacketBytes: 2048,       // p2psync_packet.bytes
  maxIdLength: 64,            // room, player_id, sender_id, game_id strings
  maxHashLength: 128,         // state_hash string
  maxDepth: 16,               // nesting depth of any payload
  maxFrame: 0x7fffffff,
  minPlayers: 2,
  maxPlayers: 4,
  ratePerSecond: 400,         // token bucket per connection
  rateBurst: 800,
  maxConnections: 2000,       // open connections per process
  maxConnectionsPerIp: 32,    // open connections per client address (IPv6: per /64) per process
  penaltyDrops: 1000,         // rate-limited drops within penaltyWindowMs that close a connection
  penaltyWindowMs: 10000,
  penaltyMs: 10000,           // first penalty (new connections from the address refused); doubles
  maxPenaltyMs: 300000,       // ... up to this
  penaltyDecayMs: 600000,     // an address's offences are forgotten this long after its penalty
  reconnectGraceMs: 60000,    // a seat of a started room is held this long for its token
  maxRooms: 10000,            // rooms per deployment (including rooms held only for reconnects)
  maxTokenLength: 64,
  logBurst: 200,              // client-triggered log lines: burst, then per second (whole process)
  logPerSecond: 20,
});

/** The events a client may send. Counters are keyed by these names (+ 'other') only. */
export const CLIENT_EVENTS = Object.freeze(['join', 'signal', 'pyodide_player_action', 'p2p_state_sync', 'p2psync_packet']);
const KNOWN_EVENTS = new Set(CLIENT_EVENTS);
const eventBucket = (event) => (typeof event === 'string' && KNOWN_EVENTS.has(event) ? event : 'other');
const TOKEN_RE = /^[A-Za-z0-9_-]{16,64}$/;
const SESSION_RE = /^[A-Za-z0-9_-]{1,64}$/;  // a page nonce in join (forwarded in peer_rejoined)
const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');
const newToken = () => crypto.randomBytes(24).toString('base64url');

const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const SIGNAL_TYPES = new Set(['offer', 'answer', 'candidate']);

class Drop extends Error {
  constructor(reason) { super(reason); this.reason = reason; }
}
const drop = (reason) => { throw new Drop(reason); };

const isPlainObject = (v) =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !isBinary(v) &&
  (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);
const isBinary = (v) => Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v);
const isInt = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;

/** Approximate serialized size of a decoded Socket.IO argument; throws Drop on bad shapes. */
function measure(v, depth = 0) {
  if (depth > LIMITS.maxDepth) drop('too_deep');
  if (v === null || v === undefined) return 4;
  switch (typeof v) {
    case 'string': return v.length + 2;
    case 'number': if (!Number.isFinite(v)) drop('bad_number'); return 8;
    case 'boolean': return 5;
    case 'object': break;
    default: drop('bad_type');
  }
  if (isBinary(v)) return v.byteLength + 16;
  let n = 2;
  if (Array.isArray(v)) {
    for (const x of v) n += measure(x, depth + 1) + 1;
  } else {
    for (const k of Object.keys(v)) n += k.length + 4 + measure(v[k], depth + 1);
  }
  return n;
}
function hasBinary(v, depth = 0) {
  if (depth > LIMITS.maxDepth) return false;
  if (v === null || typeof v !== 'object') return false;
  if (isBinary(v)) return true;
  for (const k of Object.keys(v)) if (hasBinary(v[k], depth + 1)) return true;
  return false;
}
function toBuffer(v) {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return null;
}

/** Identity field check (see trust rule at the top of this file). */
function checkIdentity(v, playerIndex, field) {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) drop(`bad_${field}`);
    if (v !== playerIndex) drop('identity_mismatch');
    return;
  }
  if (typeof v === 'string') {
    if (v.length === 0 || v.length > LIMITS.maxIdLength) drop(`bad_${field}`);
    if (/^\d+$/.test(v) && Number(v) !== playerIndex) drop('identity_mismatch');
    return;
  }
  drop(`bad_${field}`);
}
function checkOptId(v, reason) {
  if (v === undefined || v === null) return;
  if (typeof v === 'number' ? !Number.isFinite(v) : typeof v !== 'string' || v.length > LIMITS.maxIdLength) drop(reason);
}

// ---------------------------------------------------------------------------------------------
// static files

function makeStaticHandler(root, { crossOriginIsolation, hostAllowed = () => true, onRefused = () => {} }) {
  const mounts = [
    ['/web/', path.join(root, 'web')],
    ['/build/wasm/', path.join(root, 'build', 'wasm')],
    ['/socket.io-client/', path.join(root, 'node_modules', 'socket.io-client', 'dist')],
    ['/pyodide/', path.join(root, 'node_modules', 'pyodide')],
  ];
  const send = (res, code, msg, head) => {
    res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(msg), ...head });
    res.end(msg);
  };
  return (req, res) => {
    // DNS rebinding: a page under another name that resolves here gets nothing
    if (!hostAllowed(req.headers.host)) { onRefused(req); return send(res, 403, 'host not allowed\n'); }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n', { Allow: 'GET, HEAD' });
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      return send(res, 400, 'bad request\n');
    }
    if (pathname.includes('\0') || pathname.includes('\\')) return send(res, 400, 'bad request\n');
    let file = null;
    if (pathname === '/' || pathname === '/index.html') {
      file = path.join(root, 'web', 'demo', 'index.html');
    } else {
      for (const [prefix, base] of mounts) {
        if (!pathname.startsWith(prefix)) continue;
        const resolved = path.resolve(base, '.' + pathname.slice(prefix.length - 1));
        if (resolved !== base && !resolved.startsWith(base + path.sep)) return send(res, 403, 'forbidden\n');
        file = resolved;
        break;
      }
    }
    if (!file) return send(res, 404, 'not found\n');
    fs.stat(file, (err, st) => {
      if (!err && st.isDirectory()) {
        file = path.join(file, 'index.html');
        try { st = fs.statSync(file); } catch (e) { err = e; }
      }
      if (err || !st.isFile()) return send(res, 404, 'not found\n');
      const head = {
        'Content-Type': mimeFor(file),
        'Content-Length': st.size,
        'Cache-Control': 'no-cache',
        'X-Content-Type-Options': 'nosniff',
      };
      if (crossOriginIsolation) {
        head['Cross-Origin-Opener-Policy'] = 'same-origin';
        head['Cross-Origin-Embedder-Policy'] = 'require-corp';
        head['Cross-Origin-Resource-Policy'] = 'same-origin';
      }
      res.writeHead(200, head);
      if (req.method === 'HEAD') return res.end();
      const stream = fs.createReadStream(file);
      stream.on('error', () => res.destroy());
      stream.pipe(res);
    });
  };
}

// ---------------------------------------------------------------------------------------------

/**
 * Start the server.
 * @param {object} [o]
 * @param {string} [o.host='127.0.0.1']
 * @param {number} [o.port=0]            0 = any free port
 * @param {number} [o.roomSize=2]        default players per room when `join` gives none (2..4)
 * @param {(msg:string)=>void} [o.log=console.log]
 * @param {string} [o.staticRoot]        repo root holding web/, build/wasm/, node_modules/
 * @param {boolean} [o.crossOriginIsolation=false] send COOP/COEP headers on static files
 * @param {number} [o.maxEventBytes=4096]
 * @param {number} [o.ratePerSecond=400] per-connection event rate (token bucket)
 * @param {number} [o.rateBurst=800]
 * @param {string[]} [o.allowOrigins=[]] origins allowed besides the server's own ('*' = any)
 * @param {string[]} [o.allowHosts=[]]   Host names allowed besides IP literals, localhost and the
 *                                       allowed origins' names
 * @param {boolean} [o.trustProxy=false] take the client address from X-Forwarded-For's last entry
 * @param {number} [o.maxConnections=2000]
 * @param {number} [o.maxConnectionsPerIp=32]
 * @param {number} [o.penaltyDrops=1000]     rate-limited drops within penaltyWindowMs that close a
 *                                           connection and put its address in the penalty box
 * @param {number} [o.penaltyWindowMs=10000]
 * @param {number} [o.penaltyMs=10000]       first penalty; doubles per repeat, up to maxPenaltyMs
 * @param {number} [o.maxPenaltyMs=300000]
 * @param {number} [o.reconnectGraceMs=60000] how long a started room holds a dropped player's seat
 * @param {number} [o.maxRooms=10000]
 * @param {string} [o.redis]              redis://host:port — share rooms with other processes
 * @param {string} [o.redisPrefix='p2p:'] key prefix in Redis
 * @param {number} [o.procDeadMs=20000]   with Redis: a process whose heartbeat is older is dead
 *                                        (the others release its seats)
 * @param {number} [o.logBurst=200]       client-triggered log lines (whole process): burst ...
 * @param {number} [o.logPerSecond=20]    ... then this many per second
 * @returns {Promise<{url:string, port:number, host:string, io:import('socket.io').Server,
 *           httpServer:import('node:http').Server, store:object, stats:()=>object,
 *           roomCount:()=>Promise<number>, close:()=>Promise<void>}>}
 */
export async function startServer({
  host = '127.0.0.1',
  port = 0,
  roomSize = 2,
  log = console.log,
  staticRoot = REPO_ROOT,
  crossOriginIsolation = false,
  maxEventBytes = LIMITS.maxEventBytes,
  ratePerSecond = LIMITS.ratePerSecond,
  rateBurst = LIMITS.rateBurst,
  allowOrigins = [],
  allowHosts = [],
  trustProxy = false,
  maxConnections = LIMITS.maxConnections,
  maxConnectionsPerIp = LIMITS.maxConnectionsPerIp,
  penaltyDrops = LIMITS.penaltyDrops,
  penaltyWindowMs = LIMITS.penaltyWindowMs,
  penaltyMs = LIMITS.penaltyMs,
  maxPenaltyMs = LIMITS.maxPenaltyMs,
  penaltyDecayMs = LIMITS.penaltyDecayMs,
  reconnectGraceMs = LIMITS.reconnectGraceMs,
  maxRooms = LIMITS.maxRooms,
  redis = null,
  redisPrefix = 'p2p:',
  procDeadMs = 20000,
  heartbeatMs = Math.min(5000, Math.max(100, Math.floor(procDeadMs / 4))),
  logBurst = LIMITS.logBurst,
  logPerSecond = LIMITS.logPerSecond,
} = {}) {
  if (!isInt(roomSize, LIMITS.minPlayers, LIMITS.maxPlayers)) throw new RangeError(`roomSize must be 2..4, got ${roomSize}`);
  for (const [k, v] of Object.entries({ maxConnections, maxConnectionsPerIp, penaltyDrops, maxRooms })) {
    if (!isInt(v, 1, 1e9)) throw new RangeError(`${k} must be a positive integer, got ${v}`);
  }
  if (!isInt(reconnectGraceMs, 0, 86400000)) throw new RangeError(`reconnectGraceMs must be 0..86400000, got ${reconnectGraceMs}`);
  log = typeof log === 'function' ? log : () => {};
  const policy = makeOriginPolicy({ allowOrigins, allowHosts });
  const throttle = new LogThrottle(log, { burst: logBurst, perSecond: logPerSecond });
  const say = (msg) => throttle.line(msg);   // every line a client can cause goes through here
  const penaltyOpts = { penaltyMs, maxPenaltyMs, decayMs: penaltyDecayMs };
  const penalties = new PenaltyBox({ ...penaltyOpts });
  const limiter = new ConnectionLimiter({ maxConnections, maxConnectionsPerIp });
  const proc = `${process.pid}-${crypto.randomBytes(6).toString('hex')}`;

  const counters = {
    drops: Object.create(null),        // reason -> n          (reasons are defined in this file)
    dropsByEvent: Object.create(null), // CLIENT_EVENTS | 'other' -> n
    relayed: Object.create(null),      // event -> n
    disconnects: Object.create(null),  // socket.io disconnect reason -> n (socket.io's fixed set)
    refused: Object.create(null),      // host | origin | penalty | server_full | ip_full -> n
    connectionErrors: 0,
    connections: 0,
    roomsCreated: 0,
    roomsReady: 0,
    rejoins: 0,
    penalties: 0,
    storeErrors: 0,
  };
  const bump = (obj, k) => { obj[k] = (obj[k] || 0) + 1; };

  // ---- room store and (with Redis) the cross-process adapter ----------------------------------
  let store;
  let pubClient = null;
  let subClient = null;
  let adapter;
  const clustered = !!redis;
  if (clustered) {
    const { Redis } = await import('ioredis');
    const { createShardedAdapter } = await import('@socket.io/redis-adapter');
    let lastErr = 0;
    const onRedisError = (e) => {
      counters.storeErrors++;
      const now = Date.now();
      if (now - lastErr > 5000) { lastErr = now; log(`[server] redis: ${escapeLog(e && e.message, 200)}`); }
    };
    store = new RedisStore(redis, { prefix: redisPrefix, proc, maxRooms, procDeadMs, onError: onRedisError });
    pubClient = new Redis(redis, { lazyConnect: true });
    pubClient.on('error', onRedisError);
    subClient = pubClient.duplicate();
    subClient.on('error', onRedisError);
    try {
      await Promise.all([store.ready(), pubClient.connect(), subClient.connect()]);
    } catch (e) {
      store.client.disconnect(); pubClient.disconnect(); subClient.disconnect();
      throw new Error(`cannot reach Redis at ${redis}: ${e.message}`);
    }
    // Sharded Pub/Sub with dynamic subscriptions: a process subscribes to the channel of each
    // room it has a member in, so a relay to seat k of a room reaches only the process holding
    // that seat (README "Deploying the server" says why this adapter).
    // The adapter publishes every cross-process event on its own (one write, one syscall each);
    // publishes are queued and sent together after the current I/O phase instead: one pipelined
    // write per event-loop turn, in order.
    const publishNow = pubClient.spublish.bind(pubClient);
    let queue = [];
    const flush = () => {
      const q = queue;
      queue = [];
      if (q.length === 1) { publishNow(q[0][0], q[0][1]).then(q[0][2], q[0][3]); return; }
      const pl = pubClient.pipeline();
      for (const [c, m] of q) pl.spublish(c, m);
      pl.exec().then((res) => {
        res.forEach(([err, v], i) => (err ? q[i][3](err) : q[i][2](v)));
      }, (e) => { for (const x of q) x[3](e); });
    };
    pubClient.spublish = (channel, msg) => new Promise((resolve, reject) => {
      queue.push([channel, msg, resolve, reject]);
      if (queue.length === 1) setImmediate(flush);
    });
    adapter = createShardedAdapter(pubClient, subClient, { channelPrefix: `${redisPrefix}socket.io`, subscriptionMode: 'dynamic' });
  } else {
    store = new MemoryStore({ maxRooms });
  }

  const httpServer = http.createServer(makeStaticHandler(path.resolve(staticRoot), {
    crossOriginIsolation,
    hostAllowed: policy.hostAllowed,
    onRefused: (req) => refuse('host', req, clientIp(req, trustProxy)),
  }));

  function refuse(reason, req, ip) {
    bump(counters.refused, reason);
    say(`[server] refused ${ip}: ${reason} (Host ${escapeLog(req.headers.host ?? '-', 80)}, Origin ${escapeLog(req.headers.origin ?? '-', 80)})`);
  }

  const io = new Server(httpServer, {
    maxHttpBufferSize: LIMITS.maxHttpBufferSize,
    serveClient: true,
    cors: { origin: false },   // no CORS headers for polling; WebSocket upgrades are checked below
    pingInterval: 10000,
    pingTimeout: 8000,
    ...(adapter ? { adapter } : {}),
    // Every handshake (polling or WebSocket) passes here first.
    allowRequest(req, cb) {
      const ip = clientIp(req, trustProxy);
      const bad = policy.check(req);
      if (bad) { refuse(bad, req, ip); return cb(`${bad} not allowed`, false); }
      const rem = penalties.remaining(ip);
      if (rem > 0) { refuse('penalty', req, ip); return cb(`rate limited: retry in ${Math.ceil(rem / 1000)} s`, false); }
      const full = limiter.reserve(req, ip);
      if (full) { refuse(full, req, ip); return cb(full === 'server_full' ? 'server full' : 'too many connections from this address', false); }
      req.p2pIp = ip;
      if (!clustered) return cb(null, true);
      store.penaltyRemaining(ip).then((ms) => {
        if (ms > 0) {
          penalties.note(ip, ms);
          limiter.release(req);
          refuse('penalty', req, ip);
          cb(`rate limited: retry in ${Math.ceil(ms / 1000)} s`, false);
        } else cb(null, true);
      }, () => cb(null, true)); // Redis unreachable: do not refuse everyone
    },
  });
  const nsp = io.of('/');

  io.engine.on('connection', (raw) => {
    const req = raw.request;
    limiter.attach(req, req.p2pIp ?? clientIp(req, trustProxy), raw);
  });
  io.engine.on('connection_error', (err) => {
    counters.connectionErrors++;
    if (err.code === 4) return; // FORBIDDEN: our own refusal, logged by refuse()
    say(`[server] connection_error: ${escapeLog(err.code, 8)} ${escapeLog(err.message, 120)}`);
  });

  // ---- seats of rooms that have members on this process ----------------------------------------
  // A cache, refreshed by every join / leave / reclaim (here, or on another process through a
  // server-side event); the store is authoritative and is asked when the cache says "vacant".
  const seatCache = new Map(); // room -> {size, seats: string[]}
  const roomKey = (name) => `room:${name}`;
  const seatKey = (name, i) => `seat:${name}:${i}`;
  const hasLocalMembers = (name) => (nsp.adapter.rooms.get(roomKey(name))?.size || 0) > 0;
  function setSeats(name, size, seats, version) {
    if (!hasLocalMembers(name)) { seatCache.delete(name); return; }
    const cur = seatCache.get(name);
    if (cur && cur.version > version) return; // an older snapshot that arrived late
    seatCache.set(name, { size, seats: seats.slice(), version });
  }
  /**
   * Tell every process (this one included) the seats of `name`; if the room is ready, each
   * process sends `room_ready` to its own members that have not had it yet. So `room_ready`
   * reaches a member exactly once, whichever process completed the room.
   */
  function announce(name, size, seats, ready, version) {
    setSeats(name, size, seats, version);
    if (clustered) nsp.serverSideEmit('p2p:seats', name, size, seats, !!ready, version);
    if (ready) readyLocal(name, size, seats);
  }
  function readyLocal(name, size, seats) {
    const ids = nsp.adapter.rooms.get(roomKey(name));
    if (!ids) return;
    const msg = { room: name, players: size, peers: peerList(seats) };
    for (const id of [...ids]) {
      const s = nsp.sockets.get(id);
      const st = s && s.data.p2p;
      if (!st || st.room !== name || st.readySent) continue;
      st.readySent = true;
      s.emit('room_ready', msg);
    }
  }
  if (clustered) {
    nsp.on('p2p:seats', (name, size, seats, ready, version) => {
      if (typeof name !== 'string' || !Array.isArray(seats) || !isInt(size, 2, 4) || seats.length !== size || !Number.isFinite(version)) return;
      if (!hasLocalMembers(name)) { seatCache.delete(name); return; }
      const clean = seats.map((x) => (typeof x === 'string' ? x : ''));
      setSeats(name, size, clean, version);
      if (ready === true) readyLocal(name, size, clean);
    });
  }
  const peerList = (seats) => seats.map((id, i) => (id ? { playerIndex: i, id } : null)).filter(Boolean);

  function recordDrop(socket, event, reason) {
    bump(counters.drops, reason);
    bump(counters.dropsByEvent, eventBucket(event));
    const st = socket.data.p2p;
    st.drops++;
    // Per connection: the first 20 drops, then every 1000th; and the whole log is throttled.
    if (st.drops <= 20 || st.drops % 1000 === 0) {
      say(`[server] drop ${escapeLog(event)} from ${socket.id}: ${reason}${st.drops > 20 ? ` (${st.drops} drops so far)` : ''}`);
    }
  }

  function memberOf(socket) {
    const st = socket.data.p2p;
    if (!st.room) drop('not_in_room');
    return st;
  }
  /** Socket id holding seat `to` (or a promise of it), after the target checks; -1 = broadcast. */
  function targetOf(st, to, allowBroadcast) {
    if (allowBroadcast && to === -1) return -1;
    if (!Number.isInteger(to) || to < 0 || to >= st.size) drop('bad_target');
    if (to === st.playerIndex) drop('bad_target');
    const sid = seatCache.get(st.room)?.seats[to];
    if (sid) return sid;
    if (!clustered) drop('no_such_peer');
    const room = st.room;
    return store.seats(room).then((s) => {
      if (!s || !s.seats[to]) drop('no_such_peer');
      setSeats(room, s.size, s.seats, s.version);
      return s.seats[to];
    }, () => drop('store_unavailable'));
  }
  /** Emit to the holder of seat `to` of `room`: directly when it is on this process. */
  function emitToSeat(room, to, sid, event, payload) {
    const local = nsp.sockets.get(sid);
    if (local) local.emit(event, payload);
    else if (clustered) io.to(seatKey(room, to)).emit(event, payload);
  }
  /**
   * Emit to the other members of the sender's room. Members on this process get it directly;
   * each member on another process through its seat's room, so that (with the Redis adapter)
   * only the process holding that seat decodes it.
   */
  function emitToOthers(socket, st, event, payload) {
    const c = seatCache.get(st.room);
    if (!c) { socket.to(roomKey(st.room)).emit(event, payload); return; }
    let nLocal = 0;
    let one = null;
    for (let i = 0; i < c.seats.length; i++) {
      const sid = c.seats[i];
      if (i === st.playerIndex || !sid) continue;
      const s = nsp.sockets.get(sid);
      if (s) { nLocal++; one = s; } else if (clustered) io.to(seatKey(st.room, i)).emit(event, payload);
    }
    if (nLocal === 1) one.emit(event, payload);
    else if (nLocal > 1) socket.to(roomKey(st.room)).local.emit(event, payload);
  }
  const after = (v, fn) => (v && typeof v.then === 'function' ? v.then(fn) : fn(v));

  // ---- event handlers: (socket, payload) -> ack value (or a promise of it); throw Drop to reject --

  const pending = new Set(); // store operations still running (close() waits for them)
  const track = (p) => { pending.add(p); p.finally(() => pending.delete(p)); return p; };

  function evict(sid, room, playerIndex) {
    const local = nsp.sockets.get(sid);
    if (local) {
      local.data.p2p.room = null;
      local.emit('seat_reclaimed', { room, playerIndex });
      local.disconnect(true);
    } else if (clustered) {
      io.to(sid).emit('seat_reclaimed', { room, playerIndex });
      io.in(sid).disconnectSockets(true);
    }
  }

  const handlers = {
    async join(socket, p) {
      if (p === undefined || p === null) p = {};
      if (!isPlainObject(p)) drop('bad_payload');
      const st = socket.data.p2p;
      if (st.room || st.joining) drop('already_joined');
      const explicit = p.players !== undefined;
      const players = explicit ? p.players : roomSize;
      if (!isInt(players, LIMITS.minPlayers, LIMITS.maxPlayers)) drop('bad_players');
      let name = '';
      if (p.room !== undefined && p.room !== null) {
        if (typeof p.room !== 'string' || !ROOM_RE.test(p.room) || p.room.startsWith('auto-')) {
          // an auto room can be named only together with its token (a rejoin)
          if (!(typeof p.room === 'string' && ROOM_RE.test(p.room) && p.token !== undefined && p.token !== null)) drop('bad_room');
        }
        name = p.room;
      }
      let tokenHash = '';
      if (p.token !== undefined && p.token !== null) {
        if (typeof p.token !== 'string' || !TOKEN_RE.test(p.token)) drop('bad_token');
        tokenHash = sha256(p.token);
      }
      // the page's nonce (web/session.js): tells the others whether the seat's page is the same
      // one (its Socket.IO connection came back) or a new one (a reload)
      let session = null;
      if (p.session !== undefined && p.session !== null) {
        if (typeof p.session !== 'string' || !SESSION_RE.test(p.session)) drop('bad_session');
        session = p.session;
      }
      const token = newToken();
      st.joining = true;
      let r;
      try {
        r = await track(store.join({ sid: socket.id, room: name, size: players, explicit, tokenHash, newTokenHash: sha256(token) }));
      } catch (e) {
        counters.storeErrors++;
        say(`[server] store error on join: ${escapeLog(e && e.message, 200)}`);
        drop('store_unavailable');
      } finally {
        st.joining = false;
      }
      if (!r.ok) drop(r.error);
      if (r.created) counters.roomsCreated++;
      if (!socket.connected) {
        // gone while the store was answering: give the seat back the normal way
        if (r.readyNow) { counters.roomsReady++; announce(r.room, r.players, r.seats, true, r.version); }
        leaveSeat(socket.id, r.room, r.playerIndex, 'disconnected while joining');
        drop('not_connected');
      }
      st.room = r.room;
      st.playerIndex = r.playerIndex;
      st.size = r.players;
      st.readySent = false;
      socket.join([roomKey(r.room), seatKey(r.room, r.playerIndex)]);
      if (r.evict) evict(r.evict, r.room, r.playerIndex);
      const joined = { room: r.room, playerIndex: r.playerIndex, players: r.players, token };
      if (r.rejoined) joined.rejoined = true;
      socket.emit('joined', joined);
      if (r.rejoined) {
        counters.rejoins++;
        say(`[server] ${socket.id} rejoined ${r.room} as player ${r.playerIndex}/${r.players}${r.evict ? ` (took over ${r.evict})` : ''}`);
        const msg = { room: r.room, playerIndex: r.playerIndex, id: socket.id };
        if (session) msg.session = session;
        socket.to(roomKey(r.room)).emit('peer_rejoined', msg);
      } else {
        say(`[server] ${socket.id} joined ${r.room} as player ${r.playerIndex}/${r.players}`);
        if (r.readyNow) {
          counters.roomsReady++;
          say(`[server] room ${r.room} ready (${r.players} players)`);
        }
      }
      announce(r.room, r.players, r.seats, r.ready, r.version);
      if (clustered && !r.ready) {
        // Another process may have completed the room after our join ran in Redis but before
        // this socket was in the room here, so its announcement found nobody to tell. Reading
        // the room now (after socket.join) closes that gap.
        const room = r.room;
        store.seats(room).then((cur) => {
          if (!cur || st.room !== room) return;
          setSeats(room, cur.size, cur.seats, cur.version);
          if (cur.ready) readyLocal(room, cur.size, cur.seats);
        }, () => {});
      }
      return { ok: true, ...joined };
    },

    signal(socket, p) {
      const st = memberOf(socket);
      if (!isPlainObject(p)) drop('bad_payload');
      const target = targetOf(st, p.to, false);
      const d = p.data;
      if (!isPlainObject(d)) drop('bad_signal');
      if (!SIGNAL_TYPES.has(d.type)) drop('bad_signal_type');
      if (hasBinary(d)) drop('unexpected_binary');
      if (d.type === 'candidate') {
        const c = d.candidate;
        const ok = c === null || c === undefined || typeof c === 'string' ||
          (isPlainObject(c) && (c.candidate === undefined || typeof c.candidate === 'string'));
        if (!ok) drop('bad_candidate');
      } else if (typeof d.sdp !== 'string' || d.sdp.length === 0) {
        drop('bad_sdp');
      }
      const room = st.room;
      const out = { from: st.playerIndex, data: d };
      return after(target, (sid) => {
        emitToSeat(room, p.to, sid, 'signal', out);
        bump(counters.relayed, 'signal');
        return { ok: true };
      });
    },

    pyodide_player_action(socket, p) {
      const st = memberOf(socket);
      if (!isPlainObject(p)) drop('bad_payload');
      if (p.room !== undefined && p.room !== st.room) drop('cross_room');
      if (hasBinary(p)) drop('unexpected_binary');
      const idx = st.playerIndex;
      checkIdentity(p.player_id, idx, 'player_id');
      if (p.action === undefined) drop('bad_action');
      if (!isInt(p.frame_number, 0, LIMITS.maxFrame)) drop('bad_frame');
      if (p.timestamp !== undefined && (typeof p.timestamp !== 'number' || !Number.isFinite(p.timestamp))) drop('bad_timestamp');
      checkOptId(p.game_id, 'bad_game_id');
      if (p.sync_epoch !== undefined && !isInt(p.sync_epoch, 0, LIMITS.maxFrame)) drop('bad_sync_epoch');
      emitToOthers(socket, st, 'pyodide_other_player_action', { ...p, from: idx });
      bump(counters.relayed, 'pyodide_player_action');
      return { ok: true };
    },

    p2p_state_sync(socket, p) {
      const st = memberOf(socket);
      if (!isPlainObject(p)) drop('bad_payload');
      if (p.room !== undefined && p.room !== st.room) drop('cross_room');
      if (hasBinary(p)) drop('unexpected_binary');
      const idx = st.playerIndex;
      checkIdentity(p.sender_id, idx, 'sender_id');
      checkOptId(p.game_id, 'bad_game_id');
      if (!isInt(p.frame_number, 0, LIMITS.maxFrame)) drop('bad_frame');
      const h = p.state_hash;
      const hashOk = (typeof h === 'string' && h.length > 0 && h.length <= LIMITS.maxHashLength) ||
        (typeof h === 'number' && Number.isInteger(h) && h >= 0);
      if (!hashOk) drop('bad_state_hash');
      if (p.action_counts !== undefined && p.action_counts !== null && !isPlainObject(p.action_counts)) drop('bad_action_counts');
      emitToOthers(socket, st, 'p2p_state_sync', { ...p, from: idx });
      bump(counters.relayed, 'p2p_state_sync');
      return { ok: true };
    },

    p2psync_packet(socket, p) {
      const st = memberOf(socket);
      if (!isPlainObject(p)) drop('bad_payload');
      const target = targetOf(st, p.to, true);
      const bytes = toBuffer(p.bytes);
      if (!bytes || bytes.length === 0) drop('bad_bytes');
      if (bytes.length > LIMITS.maxPacketBytes) drop('oversized');
      const room = st.room;
      const out = { from: st.playerIndex, bytes };
      return after(target, (sid) => {
        if (sid === -1) emitToOthers(socket, st, 'p2psync_packet', out);
        else emitToSeat(room, p.to, sid, 'p2psync_packet', out);
        bump(counters.relayed, 'p2psync_packet');
        return { ok: true };
      });
    },
  };

  function penalize(socket, st) {
    st.penalized = true;
    counters.penalties++;
    const ip = st.ip;
    const ms = penalties.penalize(ip);
    if (clustered) store.penalize(ip, penaltyOpts).then((shared) => penalties.note(ip, shared), () => {});
    say(`[server] ${socket.id} (${ip}) stayed rate-limited: disconnected, address refused for ${Math.ceil(ms / 1000)} s`);
    socket.emit('penalty', { reason: 'rate_limited', retryAfterMs: ms });
    socket.disconnect(true);
  }

  function dispatch(socket, event, args) {
    const st = socket.data.p2p;
    if (st.penalized) return;
    let ack = null;
    if (args.length && typeof args[args.length - 1] === 'function') ack = args.pop();
    const reply = (v) => { if (ack) { try { ack(v); } catch { /* ignore */ } } };
    const fail = (e) => {
      const reason = e instanceof Drop ? e.reason : e instanceof RangeError ? 'too_deep' : 'handler_error';
      if (reason === 'handler_error') say(`[server] handler error on ${escapeLog(event)}: ${escapeLog(e && e.stack, 400)}`);
      recordDrop(socket, event, reason);
      if (!st.penalized) reply({ ok: false, error: reason });
    };
    try {
      // token bucket
      const now = Date.now();
      st.tokens = Math.min(rateBurst, st.tokens + ((now - st.last) / 1000) * ratePerSecond);
      st.last = now;
      if (st.tokens < 1) {
        if (now - st.rlStart > penaltyWindowMs) { st.rlStart = now; st.rlCount = 0; }
        if (++st.rlCount >= penaltyDrops) penalize(socket, st);
        drop('rate_limited');
      }
      st.tokens -= 1;
      if (typeof event !== 'string' || !Object.hasOwn(handlers, event)) drop('unknown_event');
      if (args.length > 1) drop('extra_args');
      if (measure(args) > maxEventBytes) drop('oversized');
      const r = handlers[event](socket, args[0]);
      if (r && typeof r.then === 'function') r.then(reply, fail);
      else reply(r);
    } catch (e) {
      fail(e);
    }
  }

  function leaveSeat(sid, room, playerIndex, why) {
    track(store.leave({ sid, room, playerIndex, graceMs: reconnectGraceMs }).then((res) => {
      if (!res.left) { if (!hasLocalMembers(room)) seatCache.delete(room); return; }
      announce(room, res.seats.length, res.seats, false, res.version);
      const msg = { playerIndex, room, reason: why };
      if (res.graceMs > 0) msg.graceMs = res.graceMs;
      io.to(roomKey(room)).emit('peer_left', msg);
      say(`[server] ${sid} (player ${playerIndex}) left ${room}: ${escapeLog(why)}${res.graceMs > 0 ? ` (seat held ${Math.round(res.graceMs / 1000)} s)` : ''}`);
    }, (e) => {
      counters.storeErrors++;
      say(`[server] store error on leave: ${escapeLog(e && e.message, 200)}`);
    }));
  }

  function leave(socket, why) {
    const st = socket.data.p2p;
    if (!st.room) return;
    const room = st.room;
    const idx = st.playerIndex;
    st.room = null;
    st.playerIndex = -1;
    leaveSeat(socket.id, room, idx, why);
  }

  io.on('connection', (socket) => {
    counters.connections++;
    const ip = socket.conn.request.p2pIp ?? clientIp(socket.conn.request, trustProxy);
    socket.data.p2p = {
      room: null, playerIndex: -1, size: 0, ip, joining: false, penalized: false, readySent: false,
      tokens: rateBurst, last: Date.now(), drops: 0, rlStart: 0, rlCount: 0,
    };
    socket.onAny((event, ...args) => dispatch(socket, event, args));
    socket.on('disconnect', (reason) => {
      bump(counters.disconnects, reason);
      leave(socket, reason);
    });
  });

  let heartbeat = null;
  if (clustered) {
    // Heartbeat, and release the seats of processes whose heartbeat stopped: their players'
    // peers get peer_left (and the seats are held for the players' tokens) as after a leave.
    heartbeat = setInterval(() => {
      store.heartbeat().then((wasReaped) => {
        if (wasReaped) {
          // This process missed heartbeats long enough to be taken for dead (a stall, or Redis
          // out of reach): its seats were released. Close its seated connections so that their
          // clients reconnect and reclaim their seats with their tokens.
          log(`[server] this process was taken for dead (no heartbeat for ${procDeadMs / 1000} s): closing its seated connections`);
          for (const sock of nsp.sockets.values()) {
            if (sock.data.p2p.room) { sock.data.p2p.room = null; sock.disconnect(true); }
          }
        }
        return store.reap({ graceMs: reconnectGraceMs });
      }).then((released) => {
        for (const res of released) {
          announce(res.room, res.seats.length, res.seats, false, res.version);
          const msg = { playerIndex: res.playerIndex, room: res.room, reason: 'server process lost' };
          if (res.graceMs > 0) msg.graceMs = res.graceMs;
          io.to(roomKey(res.room)).emit('peer_left', msg);
          say(`[server] ${res.sid} (player ${res.playerIndex}) of ${res.room} was on a server process that stopped: released${res.graceMs > 0 ? ` (seat held ${Math.round(res.graceMs / 1000)} s)` : ''}`);
        }
      }).catch(() => {});
    }, heartbeatMs);
    heartbeat.unref?.();
    // The adapter's static subscriptions are in place once the subscriber connection answers.
    await subClient.ping();
  }

  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(port, host, () => { httpServer.off('error', reject); resolve(); });
  });
  const addr = httpServer.address();
  const urlHost = addr.family === 'IPv6' || (typeof addr.family === 'number' && addr.family === 6) ? `[${addr.address}]` : addr.address;
  const url = `http://${urlHost}:${addr.port}/`;

  let closed = null;
  return {
    url,
    port: addr.port,
    host: addr.address,
    io,
    httpServer,
    store,
    proc,
    stats() {
      return {
        store: store.kind,
        connected: nsp.sockets.size,
        connections: counters.connections,
        rooms: clustered ? seatCache.size : store.localRoomCount(),
        roomsCreated: counters.roomsCreated,
        roomsReady: counters.roomsReady,
        rejoins: counters.rejoins,
        drops: { ...counters.drops },
        dropsTotal: Object.values(counters.drops).reduce((a, b) => a + b, 0),
        dropsByEvent: { ...counters.dropsByEvent },
        relayed: { ...counters.relayed },
        disconnects: { ...counters.disconnects },
        refused: { ...counters.refused },
        penalties: counters.penalties,
        penalizedAddresses: penalties.size,
        trackedAddresses: limiter.byIp.size,
        logSuppressed: throttle.suppressedTotal,
        connectionErrors: counters.connectionErrors,
        storeErrors: counters.storeErrors,
      };
    },
    /** Rooms of the whole deployment (Redis: every process), including rooms held for reconnects. */
    roomCount: () => store.roomCount(),
    close() {
      if (!closed) {
        closed = (async () => {
          if (heartbeat) clearInterval(heartbeat);
          await new Promise((resolve) => {
            io.close(() => resolve()).then(() => httpServer.closeAllConnections?.());
          });
          while (pending.size) await Promise.allSettled([...pending]);
          throttle.close();
          await store.close();
          for (const c of [pubClient, subClient]) {
            if (c) { try { await c.quit(); } catch { c.disconnect(); } }
          }
        })();
      }
      return closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// CLI

const USAGE = `usage: node web/server.mjs [options]
  --host H                    bind address (default 127.0.0.1)
  --port P                    port (default 8080; 0 = any free port)
  --players N                 players per room when join gives none (2..4, default 2)
  --redis URL                 share rooms with other processes through Redis (redis://host:port)
  --allow-origin O[,O...]     web origins allowed besides the server's own ('*' = any); repeatable
  --allow-host NAME[,NAME...] Host names allowed besides IP literals, localhost and allowed origins
  --trust-proxy               client address = last X-Forwarded-For entry (behind a proxy only)
  --max-connections N         open connections per process (default ${LIMITS.maxConnections})
  --max-connections-per-ip N  open connections per client address per process (default ${LIMITS.maxConnectionsPerIp})
  --rate N, --burst N         events per second and burst per connection (default ${LIMITS.ratePerSecond}, ${LIMITS.rateBurst})
  --penalty S                 first rate-limit penalty in seconds, doubling per repeat (default ${LIMITS.penaltyMs / 1000})
  --reconnect-grace S         seconds a started room holds a dropped player's seat (default ${LIMITS.reconnectGraceMs / 1000})
  --max-rooms N               rooms per deployment (default ${LIMITS.maxRooms})
  --proc-timeout S            with --redis: a process whose heartbeat is this old is dead, its seats
                              are released (default 20; heartbeat every min(5, S/4) s)
  --quiet                     no per-client log lines
The first line printed is the server's URL.`;

function parseArgs(argv) {
  const o = { host: '127.0.0.1', port: 8080, roomSize: 2, allowOrigins: [], allowHosts: [] };
  const num = (a, v, lo, hi) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < lo || n > hi) throw new Error(`${a} must be ${lo}..${hi}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--host') o.host = val();
    else if (a === '--port') o.port = Number(val());
    else if (a === '--players') o.roomSize = Number(val());
    else if (a === '--redis') o.redis = val();
    else if (a === '--allow-origin') o.allowOrigins.push(...val().split(',').map((s) => s.trim()).filter(Boolean));
    else if (a === '--allow-host') o.allowHosts.push(...val().split(',').map((s) => s.trim()).filter(Boolean));
    else if (a === '--trust-proxy') o.trustProxy = true;
    else if (a === '--max-connections') o.maxConnections = num(a, val(), 1, 1e7);
    else if (a === '--max-connections-per-ip') o.maxConnectionsPerIp = num(a, val(), 1, 1e7);
    else if (a === '--rate') o.ratePerSecond = num(a, val(), 1, 1e7);
    else if (a === '--burst') o.rateBurst = num(a, val(), 1, 1e7);
    else if (a === '--penalty') o.penaltyMs = num(a, val(), 0, 86400) * 1000;
    else if (a === '--reconnect-grace') o.reconnectGraceMs = Math.round(num(a, val(), 0, 86400) * 1000);
    else if (a === '--max-rooms') o.maxRooms = num(a, val(), 1, 1e7);
    else if (a === '--proc-timeout') o.procDeadMs = Math.round(num(a, val(), 1, 3600) * 1000);
    else if (a === '--quiet') o.quiet = true;
    else if (a === '-h' || a === '--help') o.help = true;
    else throw new Error(`unknown argument: ${a}`);
  }
  if (!isInt(o.port, 0, 65535)) throw new Error('--port must be 0..65535');
  if (!isInt(o.roomSize, 2, 4)) throw new Error('--players must be 2..4');
  if (o.redis !== undefined && !/^rediss?:\/\//.test(o.redis)) throw new Error('--redis needs a redis:// URL');
  return o;
}

const isMain = (() => {
  try {
    return process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
})();

if (isMain) {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`server.mjs: ${e.message}\n${USAGE}`);
    process.exit(2);
  }
  if (opts.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const { quiet, help: _h, ...rest } = opts;
  let srv;
  try {
    // --quiet: no client-triggered lines (joins, drops, refusals); server-level lines stay
    srv = await startServer({ ...rest, ...(quiet ? { logBurst: 0, logPerSecond: 0 } : {}) });
  } catch (e) {
    console.error(`server.mjs: ${e.message}`);
    process.exit(1);
  }
  console.log(srv.url);
  if (opts.redis) console.error(`[server] rooms in Redis at ${opts.redis} (process ${srv.proc})`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    const t = setTimeout(() => process.exit(1), 10000);
    t.unref();
    await srv.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
