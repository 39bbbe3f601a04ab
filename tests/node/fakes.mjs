// Fakes for running P2PSyncSession in Node, in virtual time: a clock, a lossy link, an
// RTCPeerConnection / RTCDataChannel pair and a Socket.IO client/server pair that speaks the
// p2psync server's protocol (web/server.mjs: join/joined/room_ready, signal, the relays with the
// server-set `from`). The real server and real WebRTC are exercised by tests/node/server*.test.mjs
// and tests/browser/.
//
//   const world = new FakeWorld({ seed: 1, latencyMs: 150, jitterMs: 60, loss: 0.3 });
//   const socket = world.socket();                    // one per page
//   P2PSyncSession.connect({ ..., socket, clock: world.clock, RTCPeerConnection: world.RTCPeerConnection });
//   await world.run(() => done(), 120000);            // virtual ms
//
// Reloads (issue 16): world.page() gives a page its own socket and RTCPeerConnection class, so that
// page.crash() can make that page vanish as a reloading tab does (its connections go silent, the
// peers' ICE reports 'disconnected' later, the socket drops). The server issues reconnect tokens
// and takes `join {token}` as web/server.mjs does (joined {rejoined: true}, peer_rejoined to the
// others, room_ready again, seat_reclaimed to a connection still open).
import { createRng } from '../../web/netsim.js';

const flush = () => new Promise((resolve) => setImmediate(resolve));

/** Timers in virtual time. run()/advance() execute them in (time, insertion) order. */
export class VirtualClock {
  constructor(startMs = 0) {
    this.t = startMs;
    this.seq = 0;
    this.timers = new Map(); // id -> {at, seq, fn, every}
    this.nextId = 1;
  }
  now() { return this.t; }
  setTimeout(fn, ms = 0) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), seq: this.seq++, fn, every: 0 });
    return id;
  }
  setInterval(fn, ms) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + ms, seq: this.seq++, fn, every: Math.max(1, ms) });
    return id;
  }
  clearTimeout(id) { this.timers.delete(id); }
  clearInterval(id) { this.timers.delete(id); }
  _next() {
    let best = null, bestId = 0;
    for (const [id, t] of this.timers) if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) { best = t; bestId = id; }
    return best ? [bestId, best] : null;
  }
  /** Runs timers until pred() holds or `ms` of virtual time passed. Returns pred(). */
  async run(pred, ms) {
    const end = this.t + ms;
    await flush();
    while (!pred()) {
      const n = this._next();
      if (!n || n[1].at > end) { this.t = end; break; }
      const [id, timer] = n;
      this.t = timer.at;
      if (timer.every) { timer.at += timer.every; timer.seq = this.seq++; } else this.timers.delete(id);
      try { timer.fn(); } catch (e) { this.errors = (this.errors || []).concat(e); }
      await flush();
    }
    return pred();
  }
  advance(ms) { return this.run(() => false, ms); }
}

/** One direction of a link: latency ± jitter/2, random loss, seeded. Unordered. */
class Link {
  constructor(world, { latencyMs, jitterMs, loss }, seed) {
    this.world = world;
    this.latencyMs = latencyMs;
    this.jitterMs = jitterMs;
    this.loss = loss;
    this.rng = createRng(seed);
  }
  deliver(fn) {
    const lost = this.rng() < this.loss;
    const d = Math.max(0, this.latencyMs + (this.rng() - 0.5) * this.jitterMs);
    if (!lost && !this.world.cut) this.world.clock.setTimeout(() => { if (!this.world.cut) fn(); }, d);
    return !lost;
  }
}

/**
 * The world: a clock, the P2P link profile, the fake server, and the RTCPeerConnection class the
 * sessions construct. `cut = true` drops every P2P packet (the channels stay open).
 */
export class FakeWorld {
  constructor({ seed = 1, latencyMs = 20, jitterMs = 0, loss = 0, relayExtraMs = 20 } = {}) {
    this.clock = new VirtualClock();
    this.seed = seed;
    this.profile = { latencyMs, jitterMs, loss };
    this.relayExtraMs = relayExtraMs;
    this.cut = false;
    this.server = new FakeRelayServer(this);
    this._pcs = new Map();
    this._links = 0;
    const world = this;
    this.RTCPeerConnection = class extends FakeRTCPeerConnection {
      constructor(cfg) { super(world, cfg); }
    };
  }
  link() { return new Link(this, this.profile, `${this.seed}#${this._links++}`); }
  /** A Socket.IO-like client socket connected to the fake server. */
  socket() { return this.server.connect(); }
  /**
   * One page load: its socket, its own RTCPeerConnection class (pcs: what it created) and crash():
   * the tab is gone without a goodbye — its channels stop carrying anything and never close on
   * the other side, whose ICE goes 'disconnected' after iceTimeoutMs; with socketGone the socket
   * drops (the server sends peer_left), else the server has not noticed yet (a rejoin then
   * evicts it with seat_reclaimed).
   */
  page() {
    const world = this;
    const pcs = [];
    const RTC = class extends FakeRTCPeerConnection {
      constructor(cfg) { super(world, cfg); pcs.push(this); }
    };
    const socket = this.socket();
    return {
      socket, RTCPeerConnection: RTC, pcs,
      crash: ({ iceTimeoutMs = 3000, socketGone = true } = {}) => {
        for (const pc of pcs) {
          pc.dead = true;
          for (const dc of pc.channels) dc.dead = true;
          const r = pc.remote;
          if (r && !r.dead && r.connectionState !== 'closed') {
            world.clock.setTimeout(() => {
              if (r.dead || r.connectionState === 'closed') return;
              r.iceConnectionState = 'disconnected';
              if (r.oniceconnectionstatechange) r.oniceconnectionstatechange();
            }, iceTimeoutMs);
          }
        }
        if (socketGone) socket.disconnect();
        else socket.silent = true;
      },
    };
  }
}

// ------------------------------------------------------------------------------------ WebRTC

class FakeDataChannel {
  constructor(pc, label, opts) {
    this.pc = pc;
    this.label = label;
    this.ordered = opts?.ordered ?? true;
    this.maxRetransmits = opts?.maxRetransmits ?? null;
    this.readyState = 'connecting';
    this.binaryType = 'blob';
    this.bufferedAmount = 0;
    this.onopen = this.onclose = this.onmessage = this.onerror = null;
    this.remote = null;
    this.out = null; // Link
    this.dead = false; // its page crashed: nothing goes in or out, the far end is not told
  }
  _open() {
    if (this.readyState !== 'connecting') return;
    this.readyState = 'open';
    if (this.onopen) this.onopen({});
  }
  send(data) {
    if (this.readyState !== 'open') throw new Error('InvalidStateError: channel not open');
    const b = data instanceof Uint8Array ? data : new Uint8Array(data);
    const copy = b.slice().buffer;
    const remote = this.remote;
    if (this.dead || !remote || remote.dead) return;
    this.out.deliver(() => {
      if (!remote.dead && remote.readyState === 'open' && remote.onmessage) remote.onmessage({ data: copy });
    });
  }
  close() {
    for (const ch of this.dead || (this.remote && this.remote.dead) ? [this] : [this, this.remote]) {
      if (!ch || ch.readyState === 'closed') continue;
      ch.readyState = 'closed';
      const c = ch;
      this.pc.world.clock.setTimeout(() => { if (c.onclose) c.onclose({}); }, 0);
    }
  }
}

let pcIds = 0;
class FakeRTCPeerConnection {
  constructor(world, cfg) {
    this.world = world;
    this.cfg = cfg;
    this.id = `pc${++pcIds}`;
    world._pcs.set(this.id, this);
    this.localDescription = null;
    this.remoteDescription = null;
    this.signalingState = 'stable';
    this.connectionState = 'new';
    this.iceConnectionState = 'new';
    this.onicecandidate = this.ondatachannel = this.onconnectionstatechange = this.oniceconnectionstatechange = null;
    this.channels = [];
    this.remote = null;
    this.dead = false;
    this.offers = [];   // createOffer options, in order (ICE restarts: {iceRestart: true})
    this.remoteOffers = 0;
  }
  createDataChannel(label, opts) {
    const dc = new FakeDataChannel(this, label, opts);
    this.channels.push(dc);
    return dc;
  }
  async createOffer(options) { this.offers.push(options || {}); return { type: 'offer', sdp: this.id }; }
  async createAnswer() { return { type: 'answer', sdp: this.id }; }
  async setLocalDescription(d) {
    if (d && d.type === 'rollback') { this.localDescription = null; this.signalingState = 'stable'; return; }
    this.localDescription = d;
    this.signalingState = d.type === 'offer' ? 'have-local-offer' : 'stable';
    const clock = this.world.clock;
    clock.setTimeout(() => {
      if (this.onicecandidate) this.onicecandidate({ candidate: { toJSON: () => ({ candidate: `candidate:${this.id}`, sdpMid: '0' }) } });
      if (this.onicecandidate) this.onicecandidate({ candidate: null });
    }, 1);
    this._maybeConnect();
  }
  async setRemoteDescription(d) {
    if (d.type === 'offer') this.remoteOffers++;
    this.remoteDescription = d;
    this.signalingState = d.type === 'offer' ? 'have-remote-offer' : 'stable';
    this.remote = this.world._pcs.get(d.sdp) || null;
    this._maybeConnect();
  }
  async addIceCandidate() {}
  _maybeConnect() {
    // connect once the answerer has both descriptions: the offerer's channels get their twins
    if (!(this.localDescription && this.remoteDescription && this.localDescription.type === 'answer' && this.remote)) return;
    const a = this.remote, b = this;
    const clock = this.world.clock;
    clock.setTimeout(() => {
      if (a.dead || b.dead || a.connectionState === 'closed' || b.connectionState === 'closed') return;
      for (const dcA of a.channels) {
        if (dcA.remote) continue; // already connected (a renegotiation)
        const dcB = new FakeDataChannel(b, dcA.label, { ordered: dcA.ordered, maxRetransmits: dcA.maxRetransmits });
        b.channels.push(dcB);
        dcA.remote = dcB; dcB.remote = dcA;
        dcA.out = this.world.link(); dcB.out = this.world.link();
        if (b.ondatachannel) b.ondatachannel({ channel: dcB });
        for (const pc of [a, b]) {
          pc.connectionState = 'connected'; if (pc.onconnectionstatechange) pc.onconnectionstatechange();
          pc.iceConnectionState = 'connected'; if (pc.oniceconnectionstatechange) pc.oniceconnectionstatechange();
        }
        dcA._open(); dcB._open();
      }
    }, this.world.profile.latencyMs);
  }
  async getStats() {
    const m = new Map();
    if (this.connectionState !== 'connected') return m;
    m.set('t', { type: 'transport', selectedCandidatePairId: 'p' });
    m.set('p', { type: 'candidate-pair', localCandidateId: 'l', remoteCandidateId: 'r', nominated: true, state: 'succeeded', currentRoundTripTime: 2 * this.world.profile.latencyMs / 1000 });
    m.set('l', { type: 'local-candidate', address: '198.18.0.1', port: 1, protocol: 'udp', candidateType: 'host' });
    m.set('r', { type: 'remote-candidate', address: '198.18.0.2', port: 2, protocol: 'udp', candidateType: 'host' });
    return m;
  }
  close() {
    this.connectionState = 'closed';
    this.signalingState = 'closed';
    for (const dc of this.channels) dc.close();
  }
}

// ------------------------------------------------------------------------------------ Socket.IO

class FakeSocket {
  constructor(server, id) {
    this.server = server;
    this.id = id;
    this.connected = true;
    this.handlers = new Map();
    this.player = null; // {room, index}
  }
  on(ev, fn) { (this.handlers.get(ev) || this.handlers.set(ev, []).get(ev)).push({ fn, once: false }); return this; }
  once(ev, fn) { (this.handlers.get(ev) || this.handlers.set(ev, []).get(ev)).push({ fn, once: true }); return this; }
  off(ev, fn) {
    const l = this.handlers.get(ev);
    if (l) this.handlers.set(ev, l.filter((h) => h.fn !== fn));
    return this;
  }
  /** client -> server (delivered after the relay latency) */
  emit(ev, payload, ack) {
    const s = this.server;
    if (!this.connected || this.silent) return this;
    s.world.clock.setTimeout(() => s.handle(this, ev, payload, ack), s.oneWay());
    return this;
  }
  /** server -> client */
  _deliver(ev, payload) {
    if (!this.connected || this.silent) return;
    const l = this.handlers.get(ev);
    if (!l) return;
    for (const h of l.slice()) {
      if (h.once) this.off(ev, h.fn);
      h.fn(payload);
    }
  }
  disconnect() {
    if (!this.connected) return;
    this.connected = false;
    this.server.leave(this);
  }
  close() { this.disconnect(); }
  /** The connection drops (a network blip, a frozen tab): the server sees a disconnect, and the
   * client's 'disconnect' handlers run. The socket object stays, as Socket.IO's client does. */
  drop() {
    if (!this.connected) return;
    this.disconnect();
    this.player = null;
    this._local('disconnect', 'transport close');
  }
  /** Socket.IO's client reconnected: a new connection (a new id) that is in no room yet. */
  reconnect() {
    if (this.connected) return;
    this.connected = true;
    this.id = `s${this.server.nextId++}`;
    this._local('connect');
  }
  _local(ev, payload) {
    for (const h of (this.handlers.get(ev) || []).slice()) {
      if (h.once) this.off(ev, h.fn);
      h.fn(payload);
    }
  }
}

/** A relay server with web/server.mjs's protocol (the subset sessions use), in virtual time. */
export class FakeRelayServer {
  constructor(world) {
    this.world = world;
    this.rooms = new Map();
    this.nextId = 1;
    this.log = [];
    this.tokens = new Map();    // token -> {room, index}: single-use, one per seat
    this.nextToken = 1;
    this.rejoins = 0;
    /** extra delay of peer_rejoined, on its own path (as another server process's adapter could) */
    this.peerRejoinedDelayMs = 0;
  }
  _token(room, index) {
    for (const [t, v] of this.tokens) if (v.room === room && v.index === index) this.tokens.delete(t);
    const token = `tok${this.world.seed}-${this.nextToken++}`;
    this.tokens.set(token, { room, index });
    return token;
  }
  oneWay() { return (this.world.profile.latencyMs + this.world.relayExtraMs) / 2; }
  connect() { return new FakeSocket(this, `s${this.nextId++}`); }
  send(sock, ev, payload) {
    // ordered per socket: a strictly increasing delivery time
    const at = Math.max(this.world.clock.now() + this.oneWay(), (sock._lastAt ?? 0) + 0.001);
    sock._lastAt = at;
    this.world.clock.setTimeout(() => sock._deliver(ev, payload), at - this.world.clock.now());
  }
  handle(sock, ev, d, ack) {
    const reply = (v) => { if (typeof ack === 'function') this.world.clock.setTimeout(() => ack(v), this.oneWay()); };
    if (ev === 'join') {
      if (sock.player) { reply({ ok: false, error: 'already_joined' }); return; }
      if (d && d.token != null) { this.rejoin(sock, d, reply); return; }
      const name = (d && d.room) || 'auto';
      const size = (d && d.players) || 2;
      let room = this.rooms.get(name);
      if (!room) { room = { name, size, members: [], started: false }; this.rooms.set(name, room); }
      if (room.members.length >= room.size) { reply({ ok: false, error: 'room_full' }); return; }
      const index = room.members.length;
      room.members.push(sock);
      sock.player = { room, index };
      const joined = { room: room.name, playerIndex: index, players: room.size, token: this._token(room, index) };
      this.send(sock, 'joined', joined);
      reply({ ok: true, ...joined });
      if (room.members.length === room.size) {
        room.started = true;
        for (const m of room.members) this.send(m, 'room_ready', { room: room.name, players: room.size });
      }
      return;
    }
    const p = sock.player;
    if (!p) { reply({ ok: false, error: 'not_joined' }); return; }
    const others = p.room.members.filter((m) => m !== sock && m.connected);
    if (ev === 'signal') {
      const target = p.room.members[d.to];
      if (!target) { reply({ ok: false, error: 'no_target' }); return; }
      this.send(target, 'signal', { from: p.index, data: d.data });
      reply({ ok: true });
    } else if (ev === 'pyodide_player_action') {
      for (const m of others) this.send(m, 'pyodide_other_player_action', { ...d, from: p.index });
    } else if (ev === 'p2p_state_sync') {
      for (const m of others) this.send(m, 'p2p_state_sync', { ...d, from: p.index });
    } else if (ev === 'p2psync_packet') {
      const out = { from: p.index, bytes: d.bytes };
      if (Number.isInteger(d.to) && d.to >= 0) { const t = p.room.members[d.to]; if (t) this.send(t, 'p2psync_packet', out); }
      else for (const m of others) this.send(m, 'p2psync_packet', out);
    } else {
      this.log.push(`drop ${ev}`);
    }
  }
  /** join {token}: the seat the token was issued for, with a new token (web/server.mjs's rules). */
  rejoin(sock, d, reply) {
    const t = this.tokens.get(d.token);
    if (!t || (d.room && d.room !== t.room.name)) { reply({ ok: false, error: 'bad_token' }); return; }
    this.tokens.delete(d.token);
    const { room, index } = t;
    const old = room.members[index];
    room.members[index] = sock;
    sock.player = { room, index };
    this.rejoins++;
    const joined = { room: room.name, playerIndex: index, players: room.size, token: this._token(room, index), rejoined: true };
    this.send(sock, 'joined', joined);
    reply({ ok: true, ...joined });
    const msg = { room: room.name, playerIndex: index, id: sock.id };
    if (typeof d.session === 'string') msg.session = d.session;
    for (const m of room.members) {
      if (m === sock || !m.connected) continue;
      if (this.peerRejoinedDelayMs > 0) {
        this.world.clock.setTimeout(() => m._deliver('peer_rejoined', msg), this.oneWay() + this.peerRejoinedDelayMs);
      } else {
        this.send(m, 'peer_rejoined', msg);
      }
    }
    if (room.started) this.send(sock, 'room_ready', { room: room.name, players: room.size });
    if (old && old !== sock && old.connected) {
      old.player = null;
      this.send(old, 'seat_reclaimed', { room: room.name, playerIndex: index });
      // then the server closes that connection (after what it was sent)
      this.world.clock.setTimeout(() => { old.connected = false; }, old._lastAt - this.world.clock.now() + 0.001);
    }
  }
  leave(sock) {
    const p = sock.player;
    if (!p) return;
    for (const m of p.room.members) if (m !== sock) this.send(m, 'peer_left', { playerIndex: p.index, room: p.room.name, reason: 'disconnect' });
  }
}
