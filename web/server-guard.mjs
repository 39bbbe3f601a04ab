// Connection-level defences of web/server.mjs: origin and Host checks (cross-site pages and DNS
// rebinding), client addresses, per-address and global connection caps, the rate-limit penalty
// box, and a log that escapes what clients choose and is throttled across all connections.
// Everything here is bounded: maps are keyed by address and capped in size.
import net from 'node:net';

// ---------------------------------------------------------------------------------------------
// log escaping and throttling

/**
 * Make a client-chosen value safe for one log line: at most `max` characters, and every
 * character outside printable ASCII (newlines, ANSI escapes, other control and non-ASCII
 * characters) and the backslash written as an escape, so a value can neither forge a line
 * nor restyle the terminal.
 */
export function escapeLog(v, max = 64) {
  let s = typeof v === 'string' ? v : String(v);
  const cut = s.length > max;
  if (cut) s = s.slice(0, max);
  s = s.replace(/[^\x20-\x5b\x5d-\x7e]/g, (c) => {
    const n = c.charCodeAt(0);
    if (c === '\\') return '\\\\';
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
  return cut ? `${s}…` : s;
}

/**
 * One token bucket for every client-triggered log line of the process (not per connection,
 * so opening more connections does not buy more lines). Suppressed lines are counted and
 * reported in one summary line once the budget allows.
 */
export class LogThrottle {
  constructor(log, { burst = 200, perSecond = 20 } = {}) {
    this.log = log;
    this.burst = burst;
    this.perSecond = perSecond;
    this.tokens = burst;
    this.last = Date.now();
    this.suppressed = 0;        // since the last summary
    this.suppressedTotal = 0;
    this.timer = setInterval(() => this.flush(), 5000);
    this.timer.unref?.();
  }
  _refill() {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
  }
  /** Log `msg` if the budget allows; returns whether it was written. */
  line(msg) {
    this._refill();
    if (this.tokens < 1) {
      this.suppressed++;
      this.suppressedTotal++;
      return false;
    }
    if (this.suppressed > 0) {
      if (this.tokens < 2) { this.suppressed++; this.suppressedTotal++; return false; }
      this.tokens -= 1;
      this.log(`[server] log throttled: ${this.suppressed} line(s) suppressed`);
      this.suppressed = 0;
    }
    this.tokens -= 1;
    this.log(msg);
    return true;
  }
  flush() {
    if (this.suppressed === 0) return;
    this._refill();
    if (this.tokens < 1) return;
    this.tokens -= 1;
    this.log(`[server] log throttled: ${this.suppressed} line(s) suppressed`);
    this.suppressed = 0;
  }
  close() { clearInterval(this.timer); }
}

// ---------------------------------------------------------------------------------------------
// origin and Host

/** Parse a Host header ("name", "name:port", "[v6]:port"); null when malformed. */
export function parseHost(h) {
  if (typeof h !== 'string' || h.length === 0 || h.length > 300) return null;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s/]+)(?::(\d{1,5}))?$/.exec(h.trim());
  if (!m) return null;
  const hostname = m[1].toLowerCase();
  return { hostname, bare: hostname.replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : null };
}

/** Normalize an origin ("https://Lab.example.org:443/" -> "https://lab.example.org"); null if invalid. */
export function normalizeOrigin(o) {
  if (o === '*') return '*';
  try {
    const u = new URL(o);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    return u.origin;
  } catch {
    return null;
  }
}

/**
 * The origin and Host policy.
 *  - Host: an IP literal, `localhost` (or `*.localhost`), a name from `allowHosts`, or the host
 *    name of an allowed origin. A DNS-rebinding page reaches the server under the attacker's
 *    name, which is none of these.
 *  - Origin: absent (non-browser clients; browsers omit it on same-origin GETs), the server's
 *    own origin (the Origin's host:port equals the Host header), or one from `allowOrigins`
 *    (`'*'` allows any, which turns the check off).
 */
export function makeOriginPolicy({ allowOrigins = [], allowHosts = [] } = {}) {
  const origins = new Set();
  let anyOrigin = false;
  const hostnames = new Set();
  for (const o of allowOrigins) {
    const n = normalizeOrigin(o);
    if (!n) throw new Error(`bad allowed origin: ${o}`);
    if (n === '*') { anyOrigin = true; continue; }
    origins.add(n);
    hostnames.add(new URL(n).hostname);
  }
  for (const h of allowHosts) {
    const p = parseHost(h);
    if (!p) throw new Error(`bad allowed host: ${h}`);
    hostnames.add(p.hostname);
  }
  function hostAllowed(hostHeader) {
    const h = parseHost(hostHeader);
    if (!h) return false;
    if (net.isIP(h.bare)) return true;
    if (h.hostname === 'localhost' || h.hostname.endsWith('.localhost')) return true;
    return hostnames.has(h.hostname);
  }
  function originAllowed(origin, hostHeader) {
    if (origin === undefined) return true;
    if (anyOrigin) return true;
    if (typeof origin !== 'string') return false;
    const n = normalizeOrigin(origin);
    if (!n || n === '*') return false; // includes the opaque origin "null"
    if (origins.has(n)) return true;
    const u = new URL(n);
    const h = parseHost(hostHeader);
    if (!h) return false;
    const defaultPort = u.protocol === 'https:' ? 443 : 80;
    const hostAuthority = h.port === null || h.port === defaultPort ? h.hostname : `${h.hostname}:${h.port}`;
    return u.host === hostAuthority;
  }
  /** null when the request passes, else the refusal reason. */
  function check(req) {
    if (!hostAllowed(req.headers.host)) return 'host';
    if (!originAllowed(req.headers.origin, req.headers.host)) return 'origin';
    return null;
  }
  return { hostAllowed, originAllowed, check, origins: [...origins], anyOrigin, hostnames: [...hostnames] };
}

// ---------------------------------------------------------------------------------------------
// client addresses

function expandV6(a) {
  // returns 8 groups (numbers) or null
  let s = a;
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  let tail = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const b = v4[1].split('.').map(Number);
    tail = [(b[0] << 8) | b[1], (b[2] << 8) | b[3]];
    s = s.slice(0, -v4[1].length) + '0:0';
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = 8 - head.length - rest.length;
  if (halves.length === 1 && fill !== 0) return null;
  if (fill < 0) return null;
  const g = [...head, ...new Array(halves.length === 2 ? fill : 0).fill('0'), ...rest].map((x) => parseInt(x, 16));
  if (g.length !== 8 || g.some((x) => !(x >= 0 && x <= 0xffff))) return null;
  if (tail.length) { g[6] = tail[0]; g[7] = tail[1]; }
  return g;
}

/**
 * The key that caps and penalties count by: an IPv4 address, or the /64 prefix of an IPv6
 * address (one subscriber usually holds a whole /64, so counting single v6 addresses would
 * give an attacker 2^64 fresh identities). IPv4-mapped IPv6 addresses count as IPv4.
 */
export function ipKey(addr) {
  if (typeof addr !== 'string' || addr.length === 0) return 'unknown';
  if (addr.startsWith('::ffff:') && net.isIPv4(addr.slice(7))) return addr.slice(7);
  if (net.isIPv4(addr)) return addr;
  if (net.isIPv6(addr)) {
    const g = expandV6(addr);
    if (!g) return addr.toLowerCase();
    return `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
  }
  return 'unknown';
}

/**
 * The client's address. With `trustProxy`, the last X-Forwarded-For entry (the one the proxy
 * in front of this server appended) is used; a client cannot shorten or replace it, only
 * prepend entries, which are ignored. Without `trustProxy` the header is ignored.
 */
export function clientIp(req, trustProxy) {
  if (trustProxy) {
    const xff = req.headers['x-forwarded-for'];
    const v = Array.isArray(xff) ? xff[xff.length - 1] : xff;
    if (typeof v === 'string' && v.length <= 2048) {
      const last = v.split(',').pop().trim();
      if (net.isIP(last)) return ipKey(last);
    }
  }
  return ipKey(req.socket?.remoteAddress);
}

// ---------------------------------------------------------------------------------------------
// connection caps

/**
 * Global and per-address connection caps, counted from the moment a handshake is allowed
 * (a reservation) until the engine.io connection closes. A reservation whose handshake never
 * completes is returned after `reservationMs`.
 */
export class ConnectionLimiter {
  constructor({ maxConnections, maxConnectionsPerIp, reservationMs = 10000 }) {
    this.maxConnections = maxConnections;
    this.maxPerIp = maxConnectionsPerIp;
    this.reservationMs = reservationMs;
    this.byIp = new Map();  // ip -> count (open + reserved); an entry exists only while > 0
    this.total = 0;
    this.reservations = new WeakMap(); // req -> {ip, timer}
  }
  _add(ip, d) {
    const n = (this.byIp.get(ip) || 0) + d;
    if (n <= 0) this.byIp.delete(ip); else this.byIp.set(ip, n);
    this.total += d;
  }
  /** Try to reserve a slot for `req` from `ip`: null when reserved, else the refusal reason. */
  reserve(req, ip) {
    if (this.total >= this.maxConnections) return 'server_full';
    if ((this.byIp.get(ip) || 0) >= this.maxPerIp) return 'ip_full';
    this._add(ip, 1);
    const timer = setTimeout(() => {
      if (this.reservations.get(req)?.timer === timer) { this.reservations.delete(req); this._add(ip, -1); }
    }, this.reservationMs);
    timer.unref?.();
    this.reservations.set(req, { ip, timer });
    return null;
  }
  /** Give back a reservation that will not be used (e.g. a later check refused it). */
  release(req) {
    const r = this.reservations.get(req);
    if (!r) return;
    clearTimeout(r.timer);
    this.reservations.delete(req);
    this._add(r.ip, -1);
  }
  /** The handshake completed: the reservation becomes an open connection until `onClose`. */
  attach(req, ip, engineSocket) {
    const r = this.reservations.get(req);
    if (r) { clearTimeout(r.timer); this.reservations.delete(req); } else this._add(ip, 1);
    engineSocket.once('close', () => this._add(ip, -1));
  }
  count(ip) { return this.byIp.get(ip) || 0; }
}

/**
 * Penalties for addresses whose clients stayed rate-limited: each offence closes the offending
 * connection and refuses new connections from the address for `penaltyMs`, doubling with every
 * repeat offence up to `maxPenaltyMs`; an address forgets its offences `decayMs` after its last
 * penalty ended. The map keeps at most `maxEntries` addresses (the oldest are forgotten first).
 */
export class PenaltyBox {
  constructor({ penaltyMs = 10000, maxPenaltyMs = 300000, decayMs = 600000, maxEntries = 10000 } = {}) {
    Object.assign(this, { penaltyMs, maxPenaltyMs, decayMs, maxEntries });
    this.map = new Map(); // ip -> {strikes, until}
  }
  _get(ip, now) {
    const e = this.map.get(ip);
    if (e && now > e.until + this.decayMs) { this.map.delete(ip); return null; }
    return e || null;
  }
  /** Record an offence; returns the penalty in ms. */
  penalize(ip, now = Date.now()) {
    const e = this._get(ip, now) || { strikes: 0, until: 0 };
    e.strikes++;
    const ms = Math.min(this.penaltyMs * 2 ** (e.strikes - 1), this.maxPenaltyMs);
    e.until = now + ms;
    this.map.delete(ip);
    this.map.set(ip, e);
    while (this.map.size > this.maxEntries) this.map.delete(this.map.keys().next().value);
    return ms;
  }
  /** Record a penalty decided elsewhere (another process) so later checks stay local. */
  note(ip, remainingMs, now = Date.now()) {
    const e = this._get(ip, now) || { strikes: 0, until: 0 };
    e.until = Math.max(e.until, now + remainingMs);
    this.map.delete(ip);
    this.map.set(ip, e);
    while (this.map.size > this.maxEntries) this.map.delete(this.map.keys().next().value);
  }
  /** Remaining penalty for `ip` in ms (0 = none). */
  remaining(ip, now = Date.now()) {
    const e = this._get(ip, now);
    return e && e.until > now ? e.until - now : 0;
  }
  get size() { return this.map.size; }
}
