// p2psync local server: static files + Socket.IO room pairing, WebRTC signaling relay,
// and the fallback input relay (reference event names).
//
//   import { startServer } from './web/server.mjs';
//   const srv = await startServer({ port: 0 });   // -> { url, port, io, close(), stats() }
//
//   node web/server.mjs [--host H] [--port P] [--players N]
//
// Trust rule: the server never trusts identity fields sent by a client. Every relayed event
// carries `from` = the sender's server-assigned playerIndex, and routing uses only the sender's
// server-side room membership (a client can only reach the room it joined). A client-supplied
// `player_id` / `sender_id` is accepted when it is a non-numeric string (an opaque subject id),
// but when it is numeric (a number, or a string of decimal digits) it must equal the sender's
// playerIndex, else the event is dropped ("identity_mismatch"). A `room` field, if present in a
// relayed payload, must name the sender's own room ("cross_room"); `game_id` is opaque and never
// used for routing.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Server } from 'socket.io';

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
});

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
function checkRoomField(p, room) {
  if (p.room !== undefined && p.room !== room.name) drop('cross_room');
}
function checkOptId(v, reason) {
  if (v === undefined || v === null) return;
  if (typeof v === 'number' ? !Number.isFinite(v) : typeof v !== 'string' || v.length > LIMITS.maxIdLength) drop(reason);
}

// ---------------------------------------------------------------------------------------------
// static files

function makeStaticHandler(root, { crossOriginIsolation }) {
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
 * @returns {Promise<{url:string, port:number, host:string, io:import('socket.io').Server,
 *           httpServer:import('node:http').Server, stats:()=>object, close:()=>Promise<void>}>}
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
} = {}) {
  if (!isInt(roomSize, LIMITS.minPlayers, LIMITS.maxPlayers)) throw new RangeError(`roomSize must be 2..4, got ${roomSize}`);
  log = typeof log === 'function' ? log : () => {};

  const httpServer = http.createServer(makeStaticHandler(path.resolve(staticRoot), { crossOriginIsolation }));
  const io = new Server(httpServer, {
    maxHttpBufferSize: LIMITS.maxHttpBufferSize,
    serveClient: true,
    cors: { origin: false },
    pingInterval: 10000,
    pingTimeout: 8000,
  });

  /** @type {Map<string, {name:string, size:number, auto:boolean, members:(import('socket.io').Socket|null)[], ready:boolean}>} */
  const rooms = new Map();
  const openAuto = new Map(); // size -> room
  let autoSeq = 0;

  const counters = {
    drops: Object.create(null),        // reason -> n
    dropsByEvent: Object.create(null), // event -> n
    relayed: Object.create(null),      // event -> n
    disconnects: Object.create(null),  // socket.io disconnect reason -> n
    connectionErrors: 0,
    connections: 0,
    roomsCreated: 0,
    roomsReady: 0,
  };
  const bump = (obj, k) => { obj[k] = (obj[k] || 0) + 1; };

  io.engine.on('connection_error', (err) => {
    counters.connectionErrors++;
    log(`[server] connection_error: ${err.code} ${err.message}`);
  });

  function recordDrop(socket, event, reason) {
    bump(counters.drops, reason);
    bump(counters.dropsByEvent, String(event).slice(0, 64));
    const st = socket.data.p2p;
    st.drops++;
    // Throttle the log for a misbehaving client: first 20 drops, then every 1000th.
    if (st.drops <= 20 || st.drops % 1000 === 0) {
      log(`[server] drop ${String(event).slice(0, 64)} from ${socket.id}: ${reason}${st.drops > 20 ? ` (${st.drops} drops so far)` : ''}`);
    }
  }

  const roomKey = (room) => `room:${room.name}`;
  const occupied = (room) => room.members.filter(Boolean).length;
  const peerList = (room) =>
    room.members.map((s, i) => (s ? { playerIndex: i, id: s.id } : null)).filter(Boolean);

  function memberOf(socket) {
    const st = socket.data.p2p;
    if (!st.room) drop('not_in_room');
    const room = rooms.get(st.room);
    if (!room || room.members[st.playerIndex] !== socket) drop('not_in_room');
    return room;
  }
  function targetOf(room, socket, to, allowBroadcast) {
    if (allowBroadcast && to === -1) return null;
    if (!Number.isInteger(to) || to < 0 || to >= room.size) drop('bad_target');
    if (to === socket.data.p2p.playerIndex) drop('bad_target');
    const t = room.members[to];
    if (!t) drop('no_such_peer');
    return t;
  }

  // ---- event handlers: (socket, payload) -> ack value; throw Drop to reject -------------------

  const handlers = {
    join(socket, p) {
      if (p === undefined || p === null) p = {};
      if (!isPlainObject(p)) drop('bad_payload');
      const st = socket.data.p2p;
      if (st.room) drop('already_joined');
      const explicitSize = p.players !== undefined;
      const players = explicitSize ? p.players : roomSize;
      if (!isInt(players, LIMITS.minPlayers, LIMITS.maxPlayers)) drop('bad_players');
      let room;
      if (p.room !== undefined && p.room !== null) {
        if (typeof p.room !== 'string' || !ROOM_RE.test(p.room) || p.room.startsWith('auto-')) drop('bad_room');
        room = rooms.get(p.room);
        if (room) {
          if (explicitSize && room.size !== players) drop('room_size_mismatch');
          if (room.ready || occupied(room) >= room.size) drop('room_full');
        } else {
          room = { name: p.room, size: players, auto: false, members: new Array(players).fill(null), ready: false };
          rooms.set(room.name, room);
          counters.roomsCreated++;
        }
      } else {
        room = openAuto.get(players);
        if (!room || room.ready || occupied(room) >= room.size || !rooms.has(room.name)) {
          room = { name: `auto-${players}-${++autoSeq}`, size: players, auto: true, members: new Array(players).fill(null), ready: false };
          rooms.set(room.name, room);
          openAuto.set(players, room);
          counters.roomsCreated++;
        }
      }
      const playerIndex = room.members.indexOf(null);
      room.members[playerIndex] = socket;
      st.room = room.name;
      st.playerIndex = playerIndex;
      socket.join(roomKey(room));
      const joined = { room: room.name, playerIndex, players: room.size };
      socket.emit('joined', joined);
      log(`[server] ${socket.id} joined ${room.name} as player ${playerIndex}/${room.size}`);
      if (occupied(room) === room.size) {
        room.ready = true;
        counters.roomsReady++;
        if (room.auto && openAuto.get(room.size) === room) openAuto.delete(room.size);
        io.to(roomKey(room)).emit('room_ready', { room: room.name, players: room.size, peers: peerList(room) });
        log(`[server] room ${room.name} ready (${room.size} players)`);
      }
      return { ok: true, ...joined };
    },

    signal(socket, p) {
      const room = memberOf(socket);
      if (!isPlainObject(p)) drop('bad_payload');
      const target = targetOf(room, socket, p.to, false);
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
      target.emit('signal', { from: socket.data.p2p.playerIndex, data: d });
      bump(counters.relayed, 'signal');
      return { ok: true };
    },

    pyodide_player_action(socket, p) {
      const room = memberOf(socket);
      if (!isPlainObject(p)) drop('bad_payload');
      checkRoomField(p, room);
      if (hasBinary(p)) drop('unexpected_binary');
      const idx = socket.data.p2p.playerIndex;
      checkIdentity(p.player_id, idx, 'player_id');
      if (p.action === undefined) drop('bad_action');
      if (!isInt(p.frame_number, 0, LIMITS.maxFrame)) drop('bad_frame');
      if (p.timestamp !== undefined && (typeof p.timestamp !== 'number' || !Number.isFinite(p.timestamp))) drop('bad_timestamp');
      checkOptId(p.game_id, 'bad_game_id');
      if (p.sync_epoch !== undefined && !isInt(p.sync_epoch, 0, LIMITS.maxFrame)) drop('bad_sync_epoch');
      socket.to(roomKey(room)).emit('pyodide_other_player_action', { ...p, from: idx });
      bump(counters.relayed, 'pyodide_player_action');
      return { ok: true };
    },

    p2p_state_sync(socket, p) {
      const room = memberOf(socket);
      if (!isPlainObject(p)) drop('bad_payload');
      checkRoomField(p, room);
      if (hasBinary(p)) drop('unexpected_binary');
      const idx = socket.data.p2p.playerIndex;
      checkIdentity(p.sender_id, idx, 'sender_id');
      checkOptId(p.game_id, 'bad_game_id');
      if (!isInt(p.frame_number, 0, LIMITS.maxFrame)) drop('bad_frame');
      const h = p.state_hash;
      const hashOk = (typeof h === 'string' && h.length > 0 && h.length <= LIMITS.maxHashLength) ||
        (typeof h === 'number' && Number.isInteger(h) && h >= 0);
      if (!hashOk) drop('bad_state_hash');
      if (p.action_counts !== undefined && p.action_counts !== null && !isPlainObject(p.action_counts)) drop('bad_action_counts');
      socket.to(roomKey(room)).emit('p2p_state_sync', { ...p, from: idx });
      bump(counters.relayed, 'p2p_state_sync');
      return { ok: true };
    },

    p2psync_packet(socket, p) {
      const room = memberOf(socket);
      if (!isPlainObject(p)) drop('bad_payload');
      const target = targetOf(room, socket, p.to, true);
      const bytes = toBuffer(p.bytes);
      if (!bytes || bytes.length === 0) drop('bad_bytes');
      if (bytes.length > LIMITS.maxPacketBytes) drop('oversized');
      const out = { from: socket.data.p2p.playerIndex, bytes };
      if (target) target.emit('p2psync_packet', out);
      else socket.to(roomKey(room)).emit('p2psync_packet', out);
      bump(counters.relayed, 'p2psync_packet');
      return { ok: true };
    },
  };

  function dispatch(socket, event, args) {
    let ack = null;
    if (args.length && typeof args[args.length - 1] === 'function') ack = args.pop();
    const reply = (v) => { if (ack) { try { ack(v); } catch { /* ignore */ } } };
    try {
      const st = socket.data.p2p;
      // token bucket
      const now = Date.now();
      st.tokens = Math.min(rateBurst, st.tokens + ((now - st.last) / 1000) * ratePerSecond);
      st.last = now;
      if (st.tokens < 1) drop('rate_limited');
      st.tokens -= 1;
      if (typeof event !== 'string' || !Object.hasOwn(handlers, event)) drop('unknown_event');
      if (args.length > 1) drop('extra_args');
      if (measure(args) > maxEventBytes) drop('oversized');
      reply(handlers[event](socket, args[0]));
    } catch (e) {
      const reason = e instanceof Drop ? e.reason : e instanceof RangeError ? 'too_deep' : 'handler_error';
      if (!(e instanceof Drop) && reason === 'handler_error') log(`[server] handler error on ${event}: ${e && e.stack}`);
      recordDrop(socket, event, reason);
      reply({ ok: false, error: reason });
    }
  }

  function leave(socket, why) {
    const st = socket.data.p2p;
    if (!st.room) return;
    const room = rooms.get(st.room);
    const idx = st.playerIndex;
    st.room = null;
    st.playerIndex = -1;
    if (!room || room.members[idx] !== socket) return;
    room.members[idx] = null;
    socket.leave(roomKey(room));
    io.to(roomKey(room)).emit('peer_left', { playerIndex: idx, room: room.name, reason: why });
    log(`[server] ${socket.id} (player ${idx}) left ${room.name}: ${why}`);
    if (occupied(room) === 0) {
      rooms.delete(room.name);
      if (openAuto.get(room.size) === room) openAuto.delete(room.size);
    }
  }

  io.on('connection', (socket) => {
    counters.connections++;
    socket.data.p2p = { room: null, playerIndex: -1, tokens: rateBurst, last: Date.now(), drops: 0 };
    socket.onAny((event, ...args) => dispatch(socket, event, args));
    socket.on('disconnect', (reason) => {
      bump(counters.disconnects, reason);
      leave(socket, reason);
    });
  });

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
    stats() {
      return {
        connected: io.of('/').sockets.size,
        connections: counters.connections,
        rooms: rooms.size,
        roomsCreated: counters.roomsCreated,
        roomsReady: counters.roomsReady,
        drops: { ...counters.drops },
        dropsTotal: Object.values(counters.drops).reduce((a, b) => a + b, 0),
        dropsByEvent: { ...counters.dropsByEvent },
        relayed: { ...counters.relayed },
        disconnects: { ...counters.disconnects },
        connectionErrors: counters.connectionErrors,
      };
    },
    close() {
      if (!closed) {
        closed = new Promise((resolve) => {
          io.close(() => resolve()).then(() => httpServer.closeAllConnections?.());
        });
      }
      return closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// CLI

function parseArgs(argv) {
  const o = { host: '127.0.0.1', port: 8080, roomSize: 2 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--host') o.host = val();
    else if (a === '--port') o.port = Number(val());
    else if (a === '--players') o.roomSize = Number(val());
    else if (a === '-h' || a === '--help') o.help = true;
    else throw new Error(`unknown argument: ${a}`);
  }
  if (!isInt(o.port, 0, 65535)) throw new Error('--port must be 0..65535');
  if (!isInt(o.roomSize, 2, 4)) throw new Error('--players must be 2..4');
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
    console.error(`server.mjs: ${e.message}\nusage: node web/server.mjs [--host H] [--port P] [--players N]`);
    process.exit(2);
  }
  if (opts.help) {
    console.log('usage: node web/server.mjs [--host H] [--port P] [--players N]');
    process.exit(0);
  }
  const srv = await startServer(opts);
  console.log(srv.url);
  const stop = async () => { await srv.close(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
