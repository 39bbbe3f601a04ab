// Room state of web/server.mjs: membership, sizes, seats and reconnect tokens.
//
//   MemoryStore   one process, no Redis (the default)
//   RedisStore    shared by every server process of a deployment; each operation is one Lua
//                 script, so joins, leaves and seat reclaims are atomic across processes
//
// Both implement the same async API and the same rules:
//   join({sid, proc, room, size, explicit, tokenHash, newTokenHash})
//     -> {ok:false, error} | {ok:true, room, playerIndex, players, ready, readyNow, created, rejoined, evict, seats, version}
//   leave({sid, room, playerIndex, graceMs})
//     -> {left:false} | {left:true, ready, graceMs, state:'live'|'grace'|'deleted', seats, version}
//   seats(room) -> {size, seats, ready, version} | null   (seats[i] = socket id or '')
// `version` grows with every seat change of any room, so a process can tell which of two
// snapshots of a room's seats is newer (they reach it by different paths).
//   penalize(ip, {penaltyMs, maxPenaltyMs, decayMs}) -> ms;  penaltyRemaining(ip) -> ms
//   heartbeat();  reap({graceMs}) -> the seats released because their process died
//   roomCount() -> number;  close()
//
// Seat rules. A join without a token takes the first free seat of the named room (created on
// first join) or of the open auto room of that size (`auto-N-k`). Once every seat is taken the
// room is ready, and it never takes a newcomer again (`room_full`). Each successful join issues
// a reconnect token (only its SHA-256 is stored). When a seated connection leaves a ready room
// its seat is held for `graceMs`: a join with the token within that time reclaims the seat
// (the token is replaced by a new one). A join with the token while the old connection is
// still open takes the seat over (`evict` names the old socket id). Before the room is ready a
// leave frees the seat and its token at once. A room with no connected member is deleted when
// no seat is held in grace; otherwise it expires when the last grace period ends.
import { Redis } from 'ioredis';

export const ACTIVE_SCORE = 1e15; // rooms zset score of a room that has members (ms timestamps are < 1e13)

// ---------------------------------------------------------------------------------------------

export class MemoryStore {
  constructor({ maxRooms = 10000 } = {}) {
    this.kind = 'memory';
    this.maxRooms = maxRooms;
    this.rooms = new Map();   // name -> {name, size, auto, ready, seats:[{sid, token, graceUntil}], expires, timer}
    this.tokens = new Map();  // token hash -> room name
    this.auto = new Map();    // size -> room name
    this.autoSeq = 0;
    this.version = 0;         // bumped on every seat change (any room): orders seat snapshots
    this.penalties = null;    // penalties stay in the server's PenaltyBox in memory mode
  }
  async ready() {}
  _delete(r) {
    for (const s of r.seats) if (s.token) this.tokens.delete(s.token);
    if (r.timer) clearTimeout(r.timer);
    this.rooms.delete(r.name);
    if (this.auto.get(r.size) === r.name) this.auto.delete(r.size);
  }
  _seats(r) { return r.seats.map((s) => s.sid); }
  _occupied(r) { return r.seats.reduce((n, s) => n + (s.sid ? 1 : 0), 0); }
  _persist(r) {
    if (r.timer) { clearTimeout(r.timer); r.timer = null; }
    r.expires = 0;
  }
  async join({ sid, room, size, explicit, tokenHash, newTokenHash }) {
    const now = Date.now();
    if (tokenHash) {
      const name = this.tokens.get(tokenHash);
      const r = name && this.rooms.get(name);
      if (!r || (room && room !== name)) return { ok: false, error: 'bad_token' };
      if (explicit && r.size !== size) return { ok: false, error: 'room_size_mismatch' };
      const idx = r.seats.findIndex((s) => s.token === tokenHash);
      if (idx < 0) return { ok: false, error: 'bad_token' };
      const seat = r.seats[idx];
      if (!seat.sid && seat.graceUntil > 0 && now > seat.graceUntil) return { ok: false, error: 'token_expired' };
      const evict = seat.sid || '';
      this.tokens.delete(tokenHash);
      this.tokens.set(newTokenHash, name);
      r.seats[idx] = { sid, token: newTokenHash, graceUntil: 0 };
      this._persist(r);
      r.version = ++this.version;
      return { ok: true, room: name, playerIndex: idx, players: r.size, ready: r.ready, readyNow: false, created: false, rejoined: true, evict, seats: this._seats(r), version: r.version };
    }
    let r = null;
    let name = room;
    if (room) {
      r = this.rooms.get(room) || null;
      if (r) {
        if (explicit && r.size !== size) return { ok: false, error: 'room_size_mismatch' };
        if (r.ready || this._occupied(r) >= r.size) return { ok: false, error: 'room_full' };
      }
    } else {
      const n = this.auto.get(size);
      r = n ? this.rooms.get(n) || null : null;
      if (r && (r.ready || this._occupied(r) >= r.size)) r = null;
      if (!r) name = `auto-${size}-${++this.autoSeq}`;
    }
    const created = !r;
    if (!r) {
      if (this.rooms.size >= this.maxRooms) return { ok: false, error: 'server_full' };
      r = { name, size, auto: !room, ready: false, seats: Array.from({ length: size }, () => ({ sid: '', token: '', graceUntil: 0 })), expires: 0, timer: null };
      this.rooms.set(name, r);
      if (!room) this.auto.set(size, name);
    }
    const idx = r.seats.findIndex((s) => !s.sid);
    r.seats[idx] = { sid, token: newTokenHash, graceUntil: 0 };
    this.tokens.set(newTokenHash, r.name);
    let readyNow = false;
    if (this._occupied(r) === r.size) {
      r.ready = true;
      readyNow = true;
      if (r.auto && this.auto.get(r.size) === r.name) this.auto.delete(r.size);
    }
    r.version = ++this.version;
    return { ok: true, room: r.name, playerIndex: idx, players: r.size, ready: r.ready, readyNow, created, rejoined: false, evict: '', seats: this._seats(r), version: r.version };
  }
  async leave({ sid, room, playerIndex, graceMs }) {
    const r = this.rooms.get(room);
    if (!r || !r.seats[playerIndex] || r.seats[playerIndex].sid !== sid) return { left: false };
    const now = Date.now();
    const seat = r.seats[playerIndex];
    let grace = 0;
    if (r.ready && graceMs > 0) {
      grace = graceMs;
      seat.sid = '';
      seat.graceUntil = now + graceMs;
    } else {
      if (seat.token) this.tokens.delete(seat.token);
      r.seats[playerIndex] = { sid: '', token: '', graceUntil: 0 };
    }
    let state = 'live';
    if (this._occupied(r) === 0) {
      const maxg = r.ready ? Math.max(...r.seats.map((s) => (s.token ? s.graceUntil : 0))) : 0;
      if (maxg > now) {
        state = 'grace';
        r.expires = maxg + 1000;
        if (r.timer) clearTimeout(r.timer);
        r.timer = setTimeout(() => {
          if (this.rooms.get(r.name) === r && r.expires && Date.now() >= r.expires - 5 && this._occupied(r) === 0) this._delete(r);
        }, r.expires - now);
        r.timer.unref?.();
      } else {
        state = 'deleted';
        this._delete(r);
      }
    }
    r.version = ++this.version;
    return { left: true, ready: r.ready, graceMs: grace, state, seats: this._seats(r), version: r.version };
  }
  async seats(room) {
    const r = this.rooms.get(room);
    return r ? { size: r.size, seats: this._seats(r), ready: r.ready, version: r.version } : null;
  }
  async roomCount() {
    const now = Date.now();
    let n = 0;
    for (const r of this.rooms.values()) if (!r.expires || r.expires > now) n++;
    return n;
  }
  localRoomCount() { return this.rooms.size; }
  async penalize() { return 0; }
  async penaltyRemaining() { return 0; }
  async heartbeat() { return false; }
  async reap() { return []; }
  async close() {
    for (const r of this.rooms.values()) if (r.timer) clearTimeout(r.timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Redis. Keys (prefix P, default "p2p:"):
//   P room:<name>   hash: size, auto, ready, and per seat i: s<i> socket id ('' = vacant),
//                   p<i> process id, t<i> token hash, g<i> grace deadline (ms, Redis clock)
//   P tok:<hash>    string: room name
//   P auto:<size>   string: the open auto room of that size;  P autoseq: counter
//   P version       counter: stamps every seat change (also stored in the room as v)
//   P rooms         zset: room name -> expiry (ms) or ACTIVE_SCORE while it has members
//   P procs         zset: server process id -> last heartbeat (ms)
//   P pseats:<proc> set: the rooms in which that process holds a seat
//   P pen:<ip>      hash: strikes, until   (rate-limit penalties, shared by all processes)
// The scripts build key names from the prefix, so they need one Redis (or a primary with
// replicas), not Redis Cluster.

const LUA_COMMON = `
local P = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ROOMS = P .. 'rooms'
local PROCS = P .. 'procs'
local ACTIVE = ${ACTIVE_SCORE}
local function rkey(n) return P .. 'room:' .. n end
local function tkey(h) return P .. 'tok:' .. h end
local function load(n)
  local flat = redis.call('HGETALL', rkey(n))
  if #flat == 0 then return nil end
  local r = {}
  for i = 1, #flat, 2 do r[flat[i]] = flat[i + 1] end
  r.size = tonumber(r.size)
  return r
end
local function sid(r, i) local s = r['s' .. i]; if s == nil or s == false then return '' end; return s end
local function seats(r) local s = {}; for i = 0, r.size - 1 do s[i + 1] = sid(r, i) end; return s end
local function occupied(r) local n = 0; for i = 0, r.size - 1 do if sid(r, i) ~= '' then n = n + 1 end end; return n end
-- every seat change takes the next number of one counter: processes use it to order snapshots
local function stamp(n)
  local v = redis.call('INCR', P .. 'version')
  redis.call('HSET', rkey(n), 'v', v)
  return v
end
local function vacate(n, r, i)
  local th = r['t' .. i]
  if th and th ~= '' then redis.call('DEL', tkey(th)) end
  redis.call('HDEL', rkey(n), 's' .. i, 'p' .. i, 't' .. i, 'g' .. i)
  r['s' .. i] = nil; r['p' .. i] = nil; r['t' .. i] = nil; r['g' .. i] = nil
end
-- seat i of room n loses its connection: held for graceMs if the room started, else freed;
-- a room left with no connected member expires with its last grace period, or is deleted
local function release(n, r, i, graceMs)
  local ready = r.ready == '1'
  local grace = 0
  if ready and graceMs > 0 then
    grace = graceMs
    redis.call('HSET', rkey(n), 's' .. i, '', 'p' .. i, '', 'g' .. i, now + graceMs)
    r['s' .. i] = ''
    r['p' .. i] = ''
    r['g' .. i] = tostring(now + graceMs)
  else
    vacate(n, r, i)
  end
  local state = 'live'
  if occupied(r) == 0 then
    local maxg = 0
    if ready then
      for j = 0, r.size - 1 do
        local g = tonumber(r['g' .. j] or '0')
        if r['t' .. j] and g > maxg then maxg = g end
      end
    end
    if maxg > now then
      local at = maxg + 1000
      redis.call('PEXPIREAT', rkey(n), at)
      for j = 0, r.size - 1 do
        local th = r['t' .. j]
        if th then redis.call('PEXPIREAT', tkey(th), at) end
      end
      redis.call('ZADD', ROOMS, at, n)
      state = 'grace'
    else
      for j = 0, r.size - 1 do
        local th = r['t' .. j]
        if th then redis.call('DEL', tkey(th)) end
      end
      redis.call('DEL', rkey(n))
      redis.call('ZREM', ROOMS, n)
      if r.auto == '1' and redis.call('GET', P .. 'auto:' .. r.size) == n then redis.call('DEL', P .. 'auto:' .. r.size) end
      state = 'deleted'
    end
  end
  local version
  if state ~= 'deleted' then version = stamp(n) else version = redis.call('INCR', P .. 'version') end
  return {left = true, ready = ready, graceMs = grace, state = state, seats = seats(r), version = version}
end
-- the rooms a process holds seats in (so that its seats can be released if it dies)
local function untrack(pr, n, r)
  if not pr or pr == '' then return end
  if r then
    for j = 0, r.size - 1 do if sid(r, j) ~= '' and r['p' .. j] == pr then return end end
  end
  redis.call('SREM', P .. 'pseats:' .. pr, n)
end
`;

const LUA_JOIN = `${LUA_COMMON}
local me, proc, name = ARGV[2], ARGV[3], ARGV[4]
local size = tonumber(ARGV[5])
local explicit = ARGV[6] == '1'
local tok, newtok = ARGV[7], ARGV[8]
local maxRooms = tonumber(ARGV[9])
local procDeadMs = tonumber(ARGV[10])
local function err(e) return cjson.encode({ok = false, error = e}) end
local function ok(n, r, i, readyNow, created, rejoined, evict)
  return cjson.encode({ok = true, room = n, playerIndex = i, players = r.size, ready = (r.ready == '1'),
    readyNow = readyNow, created = created, rejoined = rejoined, evict = evict, seats = seats(r), version = stamp(n)})
end
-- a seat of a room that is not ready yet, held by a process that stopped sending heartbeats
-- (it crashed), is freed so the room can still fill
local function reapGhosts(n, r)
  if r.ready == '1' then return end
  for i = 0, r.size - 1 do
    if sid(r, i) ~= '' then
      local p = r['p' .. i]
      local hb = p and redis.call('ZSCORE', PROCS, p)
      if not hb or tonumber(hb) < now - procDeadMs then vacate(n, r, i) end
    end
  end
end

redis.call('ZREMRANGEBYSCORE', ROOMS, '-inf', now)

if tok ~= '' then
  local n = redis.call('GET', tkey(tok))
  if not n then return err('bad_token') end
  if name ~= '' and name ~= n then return err('bad_token') end
  local r = load(n)
  if not r then return err('bad_token') end
  if explicit and r.size ~= size then return err('room_size_mismatch') end
  local idx = -1
  for i = 0, r.size - 1 do if r['t' .. i] == tok then idx = i end end
  if idx < 0 then return err('bad_token') end
  local cur = sid(r, idx)
  local g = tonumber(r['g' .. idx] or '0')
  if cur == '' and g > 0 and now > g then return err('token_expired') end
  local oldp = r['p' .. idx]
  redis.call('HSET', rkey(n), 's' .. idx, me, 'p' .. idx, proc, 't' .. idx, newtok, 'g' .. idx, '0')
  r['s' .. idx] = me
  r['p' .. idx] = proc
  redis.call('SADD', P .. 'pseats:' .. proc, n)
  if oldp ~= proc then untrack(oldp, n, r) end
  redis.call('DEL', tkey(tok))
  redis.call('SET', tkey(newtok), n)
  redis.call('PERSIST', rkey(n))
  for i = 0, r.size - 1 do
    local th = r['t' .. i]
    if th and i ~= idx then redis.call('PERSIST', tkey(th)) end
  end
  redis.call('ZADD', ROOMS, ACTIVE, n)
  return ok(n, r, idx, false, false, true, cur)
end

local n, r = name, nil
if name ~= '' then
  r = load(n)
  if r then
    if explicit and r.size ~= size then return err('room_size_mismatch') end
    reapGhosts(n, r)
    if r.ready == '1' or occupied(r) >= r.size then return err('room_full') end
  end
else
  local ak = P .. 'auto:' .. size
  n = redis.call('GET', ak)
  if n then
    r = load(n)
    if r then reapGhosts(n, r) end
    if r and (r.ready == '1' or occupied(r) >= r.size) then r = nil end
  end
  if not r then n = 'auto-' .. size .. '-' .. redis.call('INCR', P .. 'autoseq') end
end
local created = false
if not r then
  created = true
  if redis.call('ZCARD', ROOMS) >= maxRooms then return err('server_full') end
  local auto = '0'
  if name == '' then auto = '1' end
  redis.call('HSET', rkey(n), 'size', size, 'auto', auto, 'ready', '0')
  redis.call('ZADD', ROOMS, ACTIVE, n)
  if auto == '1' then redis.call('SET', P .. 'auto:' .. size, n) end
  r = {size = size, auto = auto, ready = '0'}
end
local idx = -1
for i = 0, r.size - 1 do if sid(r, i) == '' then idx = i; break end end
redis.call('HSET', rkey(n), 's' .. idx, me, 'p' .. idx, proc, 't' .. idx, newtok, 'g' .. idx, '0')
r['s' .. idx] = me
redis.call('SADD', P .. 'pseats:' .. proc, n)
redis.call('SET', tkey(newtok), n)
local readyNow = false
if occupied(r) == r.size then
  redis.call('HSET', rkey(n), 'ready', '1')
  r.ready = '1'
  readyNow = true
  if r.auto == '1' and redis.call('GET', P .. 'auto:' .. r.size) == n then redis.call('DEL', P .. 'auto:' .. r.size) end
end
return ok(n, r, idx, readyNow, created, false, '')
`;

const LUA_LEAVE = `${LUA_COMMON}
local me, n, i = ARGV[2], ARGV[3], tonumber(ARGV[4])
local graceMs = tonumber(ARGV[5])
if redis.call('HGET', rkey(n), 's' .. i) ~= me then return cjson.encode({left = false}) end
local r = load(n)
local pr = r['p' .. i]
local res = release(n, r, i, graceMs)
if res.state == 'deleted' then untrack(pr, n, nil) else untrack(pr, n, r) end
return cjson.encode(res)
`;

// Release every seat held by a process whose heartbeat stopped (it crashed or was killed), as
// if each of its connections had left: run by the live processes on their heartbeat.
const LUA_REAP = `${LUA_COMMON}
local procDeadMs, graceMs, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local dead = redis.call('ZRANGEBYSCORE', PROCS, '-inf', now - procDeadMs, 'LIMIT', 0, limit)
local out = {}
for _, d in ipairs(dead) do
  for _, n in ipairs(redis.call('SMEMBERS', P .. 'pseats:' .. d)) do
    local r = load(n)
    if r then
      for i = 0, r.size - 1 do
        if sid(r, i) ~= '' and r['p' .. i] == d then
          local gone = sid(r, i)
          local res = release(n, r, i, graceMs)
          res.room = n
          res.playerIndex = i
          res.sid = gone
          out[#out + 1] = res
          if res.state == 'deleted' then break end
        end
      end
    end
  end
  redis.call('DEL', P .. 'pseats:' .. d)
  redis.call('ZREM', PROCS, d)
end
if #out == 0 then return '[]' end
return cjson.encode(out)
`;

const LUA_ROOMS = `${LUA_COMMON}
redis.call('ZREMRANGEBYSCORE', ROOMS, '-inf', now)
return redis.call('ZCARD', ROOMS)
`;

const LUA_HEARTBEAT = `${LUA_COMMON}
-- 1 when this process was not listed: its first beat, or it was taken for dead and reaped
return redis.call('ZADD', PROCS, now, ARGV[2])
`;

const LUA_PENALIZE = `${LUA_COMMON}
local k = P .. 'pen:' .. ARGV[2]
local base, max, decay = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local strikes = tonumber(redis.call('HGET', k, 'strikes') or '0') + 1
local ms = math.min(base * 2 ^ (strikes - 1), max)
redis.call('HSET', k, 'strikes', strikes, 'until', now + ms)
redis.call('PEXPIRE', k, ms + decay)
return ms
`;

const LUA_PENALTY = `${LUA_COMMON}
local u = tonumber(redis.call('HGET', P .. 'pen:' .. ARGV[2], 'until') or '0')
if u > now then return u - now end
return 0
`;

export class RedisStore {
  /**
   * @param {string} url       redis://host:port[/db]
   * @param {object} o
   * @param {string} o.proc    this process's id (seats record it; heartbeats keep it alive)
   */
  constructor(url, { prefix = 'p2p:', proc, maxRooms = 10000, procDeadMs = 20000, onError = () => {} } = {}) {
    this.kind = 'redis';
    this.url = url;
    this.prefix = prefix;
    this.proc = proc;
    this.maxRooms = maxRooms;
    this.procDeadMs = procDeadMs;
    const opts = { lazyConnect: true, maxRetriesPerRequest: 3, enableAutoPipelining: false };
    this.client = new Redis(url, opts);
    this.client.on('error', onError);
    this.client.defineCommand('p2pJoin', { numberOfKeys: 0, lua: LUA_JOIN });
    this.client.defineCommand('p2pLeave', { numberOfKeys: 0, lua: LUA_LEAVE });
    this.client.defineCommand('p2pRooms', { numberOfKeys: 0, lua: LUA_ROOMS });
    this.client.defineCommand('p2pHeartbeat', { numberOfKeys: 0, lua: LUA_HEARTBEAT });
    this.client.defineCommand('p2pReap', { numberOfKeys: 0, lua: LUA_REAP });
    this.client.defineCommand('p2pPenalize', { numberOfKeys: 0, lua: LUA_PENALIZE });
    this.client.defineCommand('p2pPenalty', { numberOfKeys: 0, lua: LUA_PENALTY });
  }
  async ready() {
    await this.client.connect();
    await this.client.ping();
    await this.heartbeat();
  }
  /** Returns true when this process had been taken for dead (its seats were released). */
  async heartbeat() {
    const added = Number(await this.client.p2pHeartbeat(this.prefix, this.proc));
    const first = !this.beaten;
    this.beaten = true;
    return added === 1 && !first;
  }
  /** Release the seats of dead processes; returns [{room, playerIndex, sid, graceMs, state, seats, version}]. */
  async reap({ graceMs, limit = 8 }) {
    const out = JSON.parse(await this.client.p2pReap(this.prefix, this.procDeadMs, graceMs, limit));
    return Array.isArray(out) ? out : [];
  }
  async join({ sid, room, size, explicit, tokenHash, newTokenHash }) {
    const raw = await this.client.p2pJoin(this.prefix, sid, this.proc, room || '', size, explicit ? '1' : '0',
      tokenHash || '', newTokenHash, this.maxRooms, this.procDeadMs);
    return JSON.parse(raw);
  }
  async leave({ sid, room, playerIndex, graceMs }) {
    return JSON.parse(await this.client.p2pLeave(this.prefix, sid, room, playerIndex, graceMs));
  }
  async seats(room) {
    const flat = await this.client.hgetall(`${this.prefix}room:${room}`);
    if (!flat || !flat.size) return null;
    const size = Number(flat.size);
    return { size, seats: Array.from({ length: size }, (_, i) => flat[`s${i}`] || ''), ready: flat.ready === '1', version: Number(flat.v || 0) };
  }
  async roomCount() { return Number(await this.client.p2pRooms(this.prefix)); }
  localRoomCount() { return null; }
  async penalize(ip, { penaltyMs, maxPenaltyMs, decayMs }) {
    return Number(await this.client.p2pPenalize(this.prefix, ip, penaltyMs, maxPenaltyMs, decayMs));
  }
  async penaltyRemaining(ip) { return Number(await this.client.p2pPenalty(this.prefix, ip)); }
  async close() {
    try { await this.client.zrem(`${this.prefix}procs`, this.proc); } catch { /* already gone */ }
    try { await this.client.quit(); } catch { this.client.disconnect(); }
  }
}
