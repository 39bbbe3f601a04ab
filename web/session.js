// session.js — browser glue around one p2psync participant (web/peer.js SessionPeer):
//   * one RTCPeerConnection + RTCDataChannel per remote peer ({ordered:false, maxRetransmits:0},
//     binaryType 'arraybuffer'; for each pair the LOWER player index creates the channel and the
//     offer), from a full RTCConfiguration (rtcConfig); ICE restarts and channel re-opens after an
//     outage (see "WebRTC" below);
//   * a transport for pairing, signaling and the fallback relay: p2psync's server protocol over a
//     Socket.IO socket (web/transport_p2psync.js: join / signal, pyodide_player_action ->
//     pyodide_other_player_action, p2p_state_sync, p2psync_packet) or mug's (web/transport_mug.js);
//   * an env adapter (web/driver.js): { step(actions, info) -> {terminated, truncated, rewards},
//     getState() -> JSON text, setState(text), reset?(), replay?(...), rewards?() } — any method
//     may be async.
//
//   const session = await P2PSyncSession.connect({ lib, socket, env, room, players: 2 });
//   const session = await P2PSyncSession.connect({ lib, transport: new MugTransport(socket), env });
//   const loop = startFrameLoop({ session, fps: 30, action: () => localAction, onFrame: render });
//   (web/frame_loop.js: one step per frame by deadline, applying step()'s pacingMs — time sync's
//   sub-frame correction; a plain setInterval loop works too, corrected by occasional WAITs)
//
// Per step the SessionPeer does what every participant does (the simulator runs the same code):
// engine.advance → outgoing messages sent at once on their path (P2P → channel(s), relay →
// socket.emit) → the plan's ordered requests run against the env (driver.js) → engine events.
// Engine events come out as DOM events ('rollback', 'desync', 'fallback', 'stall', 'stallEnd',
// 'episodeEnd', 'terminal', 'recovery', 'interrupted', 'disconnected', 'reconnected', 'verified',
// 'nondeterminism', 'error', 'focus'; CustomEvent, detail = the event object) plus the reference
// console lines ([P2P Sync] ..., [P2P Fallback] ..., [Episode] ...).
//
// Reload / rejoin (issue 16): every `joined` carries a single-use reconnect token, kept in
// `tokenStore` (default: the tab's sessionStorage, which survives a reload) under the server and
// the room. connect() joins with a stored token; when the server answers `rejoined` the seat is
// this page's again: the SessionPeer is created with `rejoin: true` (its engine asks a live peer
// for the state and catches up), there is no start barrier, and THIS page offers a new
// RTCPeerConnection + DataChannel to every peer. The other pages, on `peer_rejoined`, drop their
// connection to that player (engine.onChannelClosed if it was still open) and answer the offer.
// Signals carry the sender's page nonce (`session`) and the nonce it believes the receiver has
// (`toSession`): signals of the page that reloaded, or meant for it (an ICE restart of the old
// connection still in flight), are dropped, and a new page's offer that arrives before
// `peer_rejoined` is recognised by its nonce. The token is forgotten when the session ends
// normally (every episode ended, or finish()), so a later visit joins afresh.
//
// Testing hooks: `clock` ({now, setTimeout, clearTimeout, setInterval, clearInterval}) and
// `RTCPeerConnection` replace the browser's, so node tests run sessions in virtual time over
// fake channels (tests/node/fakes.mjs).

import { SessionPeer } from './peer.js';
import { P2PSyncServerTransport } from './transport_p2psync.js';

const realClock = Object.freeze({
  now: () => (typeof performance !== 'undefined' ? performance.now() : Date.now()),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (t) => clearInterval(t),
});
// Sessions not yet destroyed in this realm: a stored token that one of them holds in the same store
// is not taken (two sessions in one tab share the tab's sessionStorage).
const liveSessions = new Set();
let sessionStorageStore = null; // one wrapper per realm (= per tab), so that sessions can compare stores
// A join rejected for one of these reasons with a stored token is retried without it.
const STALE_TOKEN = new Set(['bad_token', 'token_expired', 'room_size_mismatch']);

/** The default tokenStore: the tab's sessionStorage (kept across a reload, private to the tab), or
 * a new in-memory Map when there is none (Node, storage disabled: nothing survives a reload there
 * anyway, and sessions of one process must not take each other's seats; pass a shared store to
 * rejoin in Node). */
export function defaultTokenStore() {
  try {
    const ss = globalThis.sessionStorage;
    if (ss && typeof ss.getItem === 'function') {
      if (sessionStorageStore) return sessionStorageStore;
      const probe = 'p2psync.probe';
      ss.setItem(probe, '1');
      ss.removeItem(probe);
      sessionStorageStore = { get: (k) => ss.getItem(k), set: (k, v) => ss.setItem(k, v), delete: (k) => ss.removeItem(k) };
      return sessionStorageStore;
    }
  } catch { /* storage disabled (privacy settings, sandboxed frame) */ }
  return new Map();
}

function randomNonce() {
  const b = new Uint8Array(9);
  if (globalThis.crypto && typeof globalThis.crypto.getRandomValues === 'function') globalThis.crypto.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = (Math.random() * 256) | 0;
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// Session-level start-barrier messages (see _startBarrier); never passed to the engine.
const GLUE_HELLO = 0xf0;
const GLUE_HELLO_ACK = 0xf1;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function toHex(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]];
  return s;
}

export class P2PSyncSession extends EventTarget {
  /**
   * Join a room, create the engine, open the DataChannels and resolve when every channel is
   * open (or, after connectTimeoutMs, with the unopened peers reported as failed connections,
   * which puts them on the relay).
   * @param {object} o
   * @param {import('./p2psync.d.ts').P2PSyncLib} o.lib    loaded p2psync module
   * @param {any} [o.socket]          Socket.IO client socket (connected or connecting): p2psync's
   *                                  server protocol (web/transport_p2psync.js)
   * @param {object} [o.transport]    or a transport (signaling + relay): P2PSyncServerTransport,
   *                                  MugTransport (web/transport_mug.js), ...
   * @param {object} o.env            env adapter (web/driver.js)
   * @param {string} [o.room]         room name (omit: server auto-pairing)
   * @param {number} [o.players=2]    room size 2..4
   * @param {object} [o.config]       extra SyncConfig fields (numPlayers/localPlayerIndex are set here)
   * @param {number} [o.episodeFrames=0]  truncate each episode after this many frames (0 = never;
   *                                  the same as config.maxEpisodeFrames)
   * @param {(env:object)=>boolean|Promise<boolean>} [o.isDone]  asked after every step of the env
   *                                  (replays included): true ends the episode at that frame
   * @param {number} [o.episodes=Infinity]  episodes to play; each next one starts by itself
   * @param {boolean} [o.autoNextEpisode=true]  false: the page calls nextEpisode()
   * @param {'episode'|'session'|'none'|number} [o.keepData='episode']  research rows kept in memory
   * @param {boolean} [o.trackVisibility=true]  wire document visibilitychange to setFocus()
   * @param {number} [o.connectTimeoutMs=15000]
   * @param {number} [o.barrierTimeoutMs=6000]  start barrier / P2P validation (see _startBarrier)
   * @param {number} [o.settleRttMs=100]  barrier: probe RTT below which a channel counts as settled
   * @param {number} [o.joinTimeoutMs=60000]  waiting for the room to fill
   * @param {RTCIceServer[]} [o.iceServers=[]]
   * @param {RTCConfiguration} [o.rtcConfig]  a full RTCConfiguration (TURN servers, iceTransportPolicy);
   *                                  the transport's (e.g. mug's turn_config) is used when absent
   * @param {number} [o.statsIntervalMs=3000]  getStats polling (selected candidate pair)
   * @param {number} [o.iceRestartGraceMs=2000]  ICE 'disconnected' this long → ICE restart ('failed':
   *                                  at once); later attempts back off (x2, at most 15 s)
   * @param {number} [o.maxIceRestarts=10]  ICE restarts per outage before staying on the relay
   * @param {{get(key:string):string|null|undefined, set(key:string, value:string):void, delete(key:string):void}|false} [o.tokenStore]
   *                                  where the reconnect token is kept between page loads (key: server
   *                                  and room); default the tab's sessionStorage, else an in-memory
   *                                  Map; false: never rejoin. Used with p2psync's server protocol.
   * @param {(msg:string, level?:string)=>void} [o.log]
   * @returns {Promise<P2PSyncSession>}  a rejoining page (session.rejoined) resolves once it has
   *                                  its seat back and its offers are out: the DataChannels open in
   *                                  the background and its engine catches up over whatever path works
   */
  static async connect(o) {
    const s = new P2PSyncSession(o);
    try {
      await s._join(o.room, o.players ?? 2, o.joinTimeoutMs ?? 60000);
      s._startPeers();
      if (s.rejoined) {
        // the room started long ago: no start barrier; the engine (status JOINING) asks a peer for
        // the state at once, over the relay until a channel is open
        s._barrierDone = true;
        s.barrier = { ms: 0, complete: false, skipped: 'rejoin', rttsMs: {} };
        s._waitChannels(o.connectTimeoutMs ?? 15000).catch((e) => s._log(`[P2P] ${e}`, 'warn'));
      } else {
        await s._waitChannels(o.connectTimeoutMs ?? 15000);
        await s._startBarrier(o.barrierTimeoutMs ?? 6000, o.settleRttMs ?? 100);
      }
    } catch (e) {
      s.destroy();
      throw e;
    }
    return s;
  }

  constructor({
    lib, socket = null, transport = null, env, config = {}, episodeFrames = 0, iceServers = [], rtcConfig = null, statsIntervalMs = 3000,
    log = null, syncLogEveryFrames = 30, logRollbacks = false, isDone = null, episodes = Infinity,
    autoNextEpisode = true, resetEnv = null, clock = realClock, RTCPeerConnection: RTC = null,
    keepData = 'episode', trackVisibility = true, iceRestartGraceMs = 2000, maxIceRestarts = 10,
    tokenStore = undefined,
  } = {}) {
    super();
    if (!lib || !lib.SyncEngine) throw new TypeError('P2PSyncSession: lib (loaded p2psync) is required');
    if (!socket && !transport) throw new TypeError('P2PSyncSession: socket (or transport) is required');
    if (!env) throw new TypeError('P2PSyncSession: env adapter is required');
    this.lib = lib;
    this.socket = socket;
    this.env = isDone ? withIsDone(env, isDone) : env;
    this.config = episodeFrames > 0 ? { maxEpisodeFrames: episodeFrames | 0, ...config } : config;
    this.iceServers = iceServers;
    this.rtcConfig = rtcConfig;
    this.iceRestartGraceMs = Math.max(0, Number(iceRestartGraceMs) || 0);
    this.maxIceRestarts = Math.max(0, maxIceRestarts | 0);
    this.statsIntervalMs = statsIntervalMs;
    this.syncLogEveryFrames = syncLogEveryFrames;
    this.logRollbacks = logRollbacks;
    this.episodes = episodes;
    this.autoNextEpisode = autoNextEpisode;
    this.resetEnv = resetEnv;
    this.keepData = keepData;
    this.trackVisibility = trackVisibility;
    this.clock = clock;
    this._RTC = RTC || globalThis.RTCPeerConnection;
    this._log = log || ((m, level) => (level === 'warn' ? console.warn(m) : level === 'error' ? console.error(m) : console.log(m)));

    /** @type {SessionPeer|null} the participant (engine, env, per-frame logic) */
    this.peer = null;
    this.playerIndex = -1;
    this.numPlayers = 0;
    this.room = null;
    /** @type {Map<number, {peer:number, pc:RTCPeerConnection, dc:RTCDataChannel|null, channels:Set<RTCDataChannel>, remoteSet:boolean, pending:any[], open:boolean, everOpened:boolean, closed:boolean, failed:boolean, cut:boolean, lost:boolean, iceRestarts:number, iceRestartsTotal:number, reopens:number, pair:any}>} */
    this.peers = new Map();
    this.impairment = { latencyMs: 0, lossPct: 0 };
    this.connectionType = 'unknown';
    this.connectionDetails = null;
    this.events = [];               // recent engine events (bounded)
    // peersRenewed: connections dropped because the player's page was replaced (rejoin)
    this.glueCounters = { p2pPacketsDelayed: 0, p2pPacketsDroppedByImpair: 0, p2pSendErrors: 0, peersRenewed: 0 };
    this._busy = false;
    this._early = [];               // relay messages received before the engine exists
    this._timers = new Set();
    this._statsTimer = null;
    this._channelWaiters = [];
    this._destroyed = false;
    /** this page's identity in signals (a reloaded page has a new one) */
    this.nonce = randomNonce();
    /** true when connect() reclaimed the seat with a stored reconnect token (a reloaded page) */
    this.rejoined = false;
    this._retiredNonces = new Map();  // peer -> Set of nonces of that seat's earlier pages
    this._renewedEarly = new Map();   // peer -> connections renewed by a new nonce before peer_rejoined
    this.tokenStore = tokenStore === undefined ? defaultTokenStore() : tokenStore || null;
    this._tokenKey = null;
    this._tokenDone = false;
    liveSessions.add(this);

    this.transport = transport || new P2PSyncServerTransport(socket, { clock, log: this._log });
    if ('session' in this.transport) this.transport.session = this.nonce;
    this.transport.on({
      signal: (from, data) => this._handleSignal(from, data),
      relay: (event, data, from) => this._relayIn(event, data, from),
      peerLeft: (index, reason) => this._log(`[P2P] player ${index} left the room (${reason})`, 'warn'),
      peerRejoined: (index, id, nonce) => this._onPeerRejoined(index, nonce),
      socketRejoined: () => this._emit('relayRejoined', { type: 'relayRejoined' }),
      joined: (d) => this._storeToken(d.token),
      seatReclaimed: (d) => this._onSeatReclaimed(d),
    });
  }

  _now() { return this.clock.now(); }

  // ------------------------------------------------------------------------------ the participant

  /** Lifecycle state: 'connecting' | 'playing' | 'ending' | 'finished' | 'closed' (README: Episodes). */
  get state() {
    if (this._destroyed) return 'closed';
    if (!this.peer) return 'connecting';
    if (this.peer.finished) return 'finished';
    return this.peer.status === 'ENDED' ? 'ending' : 'playing';
  }

  /** The engine (web/p2psync.js SyncEngine) of this participant. */
  get engine() { return this.peer ? this.peer.engine : null; }
  get frame() { return this.peer ? this.peer.frame : 0; }
  get status() { return this.peer ? this.peer.status : 'INIT'; }
  get confirmedFrame() { return this.peer ? this.peer.confirmedFrame : -1; }
  get verifiedFrame() { return this.peer ? this.peer.verifiedFrame : -1; }
  get episode() { return this.peer ? this.peer.episode : 0; }
  get episodeStart() { return this.peer ? this.peer.episodeStart : 0; }
  get ended() { return this.peer ? this.peer.ended : false; }
  get stalled() { return this.peer ? this.peer.stalled : false; }
  get finished() { return this.peer ? this.peer.finished : false; }
  get finalStateHash() { return this.peer ? this.peer.finalStateHash : null; }
  get episodeSummaryLine() { return this.peer ? this.peer.episodeSummaryLine : null; }
  get episodeResults() { return this.peer ? this.peer.episodeResults : []; }
  get counters() { return this.peer ? { ...this.peer.counters, ...this.glueCounters } : { ...this.glueCounters }; }
  get rx() { return this.peer ? this.peer.rx : {}; }

  // ------------------------------------------------------------------------------ reconnect token

  /** Whether this session keeps reconnect tokens (a tokenStore, and a transport that sends them). */
  get _usesTokens() { return !!this.tokenStore && 'token' in this.transport; }

  _readToken() {
    if (!this._usesTokens || !this._tokenKey) return null;
    let v = null;
    try { v = this.tokenStore.get(this._tokenKey); } catch { return null; }
    if (typeof v !== 'string' || !v) return null;
    // another live session of this tab (same store) holds that seat
    for (const s of liveSessions) if (s !== this && s.tokenStore === this.tokenStore && s.transport && s.transport.token === v) return null;
    return v;
  }

  _storeToken(token) {
    if (!this._usesTokens || !this._tokenKey || this._tokenDone || typeof token !== 'string' || !token) return;
    try { this.tokenStore.set(this._tokenKey, token); } catch (e) { this._log(`[P2P] cannot store the reconnect token: ${e}`, 'warn'); }
  }

  /** Forget the stored reconnect token (if it is still this session's, or `token`), so that a later
   * page load joins afresh instead of reclaiming this seat. Done by itself when every episode has
   * ended and by finish(); a page whose participant leaves for good may call it before destroy(). */
  forgetToken(token = this.transport.token) {
    this._tokenDone = true;
    if (!this._usesTokens || !this._tokenKey) return;
    try {
      const cur = this.tokenStore.get(this._tokenKey);
      if (cur != null && (!token || cur === token)) this.tokenStore.delete(this._tokenKey);
    } catch { /* storage gone */ }
  }

  // ------------------------------------------------------------------------------ setup

  async _join(room, players, timeoutMs) {
    if (this._usesTokens) {
      const server = typeof this.transport.serverKey === 'string' ? this.transport.serverKey : '';
      this._tokenKey = `p2psync.token|${server}|${room || `auto:${players}`}`;
    }
    const stored = this._readToken();
    if (stored) this.transport.token = stored;
    let res;
    try {
      res = await this.transport.join({ room, players, timeoutMs });
    } catch (e) {
      if (!stored || !STALE_TOKEN.has(e && e.code)) throw e;
      // an old token (its grace period is over, the room is gone): join as a new player
      this._log(`[P2P] stored reconnect token not accepted (${e.code}); joining afresh`, 'warn');
      this.forgetToken(stored);
      this._tokenDone = false;
      this.transport.token = null;
      res = await this.transport.join({ room, players, timeoutMs });
    }
    this.rejoined = !!res.rejoined;
    this._storeToken(res.token);
    if (this._destroyed) throw new Error('P2PSyncSession: destroyed while joining');
    this.playerIndex = res.playerIndex;
    this.numPlayers = res.numPlayers;
    this.room = res.room;
    this.joinInfo = res;
    if (!this.rtcConfig && res.rtcConfig) this.rtcConfig = res.rtcConfig;
    const config = { ...this.config, numPlayers: this.numPlayers, localPlayerIndex: this.playerIndex, gameId: this.config.gameId ?? res.gameId ?? this.room };
    if (res.playerIds && !this.config.playerIds) config.playerIds = res.playerIds;
    this.peer = new SessionPeer({
      lib: this.lib,
      config,
      env: this.env,
      // a reclaimed seat: the engine starts in JOINING and gets the state from a live peer
      rejoin: this.rejoined,
      transport: {
        sendP2P: (to, bytes) => this._sendP2PTo(to, bytes),
        emitRelay: (event, data, to) => this.transport.emitRelay(event, data, to),
        bufferedAmount: () => this.bufferedAmount(),
      },
      now: () => this._now(),
      onEvent: (ev) => this._onEngineEvent(ev),
      log: this._log,
      syncLogEveryFrames: this.syncLogEveryFrames,
      logRollbacks: this.logRollbacks,
      episodes: this.episodes,
      autoNextEpisode: this.autoNextEpisode,
      resetEnv: this.resetEnv,
      keepData: this.keepData,
      onRow: (row) => this._emit('frame', row),
      // wall clock for the research data's timestamp column
      clockOrigin: this.clock === realClock && typeof performance !== 'undefined' && performance.timeOrigin
        ? performance.timeOrigin : 0,
    });
    if (this.trackVisibility && typeof document !== 'undefined' && typeof document.addEventListener === 'function') {
      this._onVisibility = () => this.setFocus(!document.hidden);
      document.addEventListener('visibilitychange', this._onVisibility);
      if (document.hidden) this.setFocus(false);
    }
    for (const [ev, d, from] of this._early.splice(0)) this._relayIn(ev, d, from);
    this._log(`[P2P] ${this.rejoined ? 'rejoined' : 'joined'} ${this.room} as player ${this.playerIndex}/${this.numPlayers}`);
    this.readyInfo = res.ready ?? null;
  }

  _startPeers() {
    for (let p = 0; p < this.numPlayers; p++) {
      if (p === this.playerIndex) continue;
      const st = this._peer(p);
      // the lower index offers; a rejoining page offers to everyone (the others wait for it)
      if (this.rejoined || this.playerIndex < p) this._offer(st);
    }
    this._statsTimer = this.clock.setInterval(() => this.pollConnectionType(), this.statsIntervalMs);
  }

  // ------------------------------------------------------------------------------ WebRTC
  // One RTCPeerConnection per remote peer, created with the full RTCConfiguration (rtcConfig:
  // TURN servers, iceTransportPolicy, ...; else {iceServers}). The lower player index makes the
  // first offer and the first channel. The glue only reports connectivity facts to the engine
  // (channel open / closed, connection failed); the engine decides the path (fallback, recovery).
  //   * ICE 'disconnected' / 'failed' (or connectionState 'failed'): engine.onConnectionFailed, then
  //     ICE restarts (createOffer({iceRestart: true})) after iceRestartGraceMs ('failed': at once),
  //     backing off (x2, at most 15 s) up to maxIceRestarts per outage. The lower index restarts;
  //     the higher one too, one grace period later, if the lower one has not (colliding offers:
  //     the lower index keeps its own, the higher one rolls back — "perfect negotiation").
  //   * ICE back ('connected' / 'completed'): engine.onChannelOpen when the channel survived; a
  //     channel that closed during the outage is re-opened by the lower index on the same
  //     connection. The engine's fallbackRecovery then returns the pair to P2P once its pings are
  //     healthy for long enough.
  //   * closeP2P() cuts every channel (the "Cut P2P" button); restoreP2P() opens new ones. A channel
  //     the PEER closed while the path was up is a deliberate cut: it is not re-opened from here.
  //   * A player that rejoined (its page reloaded): its old connection is dead. The rejoined page
  //     offers a NEW RTCPeerConnection + DataChannel to everyone; the others, on `peer_rejoined`
  //     (or on an offer from that seat carrying a new page nonce, whichever comes first), retire
  //     the old connection — its timers (ICE restarts) stop, its handlers are detached,
  //     engine.onChannelClosed if it was still open — and answer on a fresh one. The rejoined
  //     page never offers to someone who also offers, so the offers cannot collide; signals of,
  //     or meant for, the page that reloaded are dropped by their nonces.

  _rtcConfiguration() {
    return { iceServers: this.iceServers, ...(this.rtcConfig || {}) };
  }

  _peer(p) {
    let st = this.peers.get(p);
    if (st) return st;
    const pc = new this._RTC(this._rtcConfiguration());
    st = {
      peer: p, pc, dc: null, channels: new Set(), remoteSet: false, pending: [], open: false, everOpened: false,
      closed: false, failed: false, cut: false, lost: false, closedWhileLost: false, makingOffer: false,
      ignoredOffer: false, iceRestarts: 0, iceRestartsTotal: 0, reopens: 0, restartTimer: null, gaveUp: false,
      pair: null, heard: false, heardMe: false, peerSettled: false, rtts: [],
      remoteNonce: null, retired: false,
    };
    this.peers.set(p, st);
    pc.onicecandidate = (ev) => this._signal(p, { type: 'candidate', candidate: ev.candidate ? ev.candidate.toJSON() : null });
    pc.ondatachannel = (ev) => this._setupChannel(st, ev.channel);
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      if (s === 'failed') this._connectivityLost(st, 'connection failed');
      else if (s === 'connected') this._connectivityBack(st);
    };
    pc.oniceconnectionstatechange = () => {
      const s = pc.iceConnectionState;
      if (s === 'disconnected' || s === 'failed') this._connectivityLost(st, `ICE ${s}`);
      else if (s === 'connected' || s === 'completed') this._connectivityBack(st);
    };
    return st;
  }

  async _offer(st) {
    this._openChannel(st);
    await this._negotiate(st);
  }

  /** A new offer to the peer (options: {iceRestart: true} for an ICE restart). */
  async _negotiate(st, options = undefined) {
    const pc = st.pc;
    st.makingOffer = true;
    try {
      const offer = await pc.createOffer(options);
      if (this._destroyed || st.retired || pc.connectionState === 'closed') return;
      await pc.setLocalDescription(offer);
      if (st.retired) return;
      this._signal(st.peer, { type: 'offer', sdp: pc.localDescription.sdp });
    } catch (e) {
      this._log(`[P2P] offer to player ${st.peer} failed: ${e}`, 'error');
    } finally {
      st.makingOffer = false;
    }
  }

  _signal(to, data) {
    // who sends (this page) and to which page of that seat (unknown before its first signal)
    const st = this.peers.get(to);
    const out = { ...data, session: this.nonce };
    if (st && st.remoteNonce) out.toSession = st.remoteNonce;
    this.transport.sendSignal(to, out);
  }

  async _handleSignal(from, data) {
    if (!Number.isInteger(from) || !data || this._destroyed) return;
    if (from === this.playerIndex || from < 0 || (this.numPlayers && from >= this.numPlayers)) return;
    const nonce = typeof data.session === 'string' ? data.session : null;
    // meant for an earlier page at this seat (e.g. an ICE restart of the connection to the page
    // this one replaced), or sent by a page of that seat that has since been replaced
    if (typeof data.toSession === 'string' && data.toSession !== this.nonce) return;
    if (nonce && this._retiredNonces.get(from)?.has(nonce)) return;
    let st = this.peers.get(from);
    if (st && nonce && st.remoteNonce && st.remoteNonce !== nonce) {
      // a new page at that seat (it reloaded and rejoined) whose signal came before peer_rejoined
      this._log(`[WebRTC] player ${from} is a new page (its offer came before peer_rejoined): new connection`);
      this._retirePeer(st, 'replaced by the rejoined page');
      this._renewedEarly.set(from, (this._renewedEarly.get(from) ?? 0) + 1);
      st = null;
    }
    if (!st) st = this._peer(from);
    if (nonce && !st.remoteNonce) st.remoteNonce = nonce;
    const pc = st.pc;
    try {
      if (data.type === 'offer') {
        const state = pc.signalingState ?? 'stable';
        const collision = st.makingOffer || state !== 'stable';
        // colliding offers (both sides restarting ICE): the lower index keeps its own
        st.ignoredOffer = collision && this.playerIndex < from;
        if (st.ignoredOffer) return;
        if (collision && state === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
        await pc.setRemoteDescription({ type: 'offer', sdp: data.sdp });
        st.remoteSet = true;
        for (const c of st.pending.splice(0)) await pc.addIceCandidate(c);
        await pc.setLocalDescription(await pc.createAnswer());
        this._signal(from, { type: 'answer', sdp: pc.localDescription.sdp });
      } else if (data.type === 'answer') {
        if ((pc.signalingState ?? 'have-local-offer') !== 'have-local-offer') return; // answer to a rolled-back offer
        await pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
        st.remoteSet = true;
        for (const c of st.pending.splice(0)) await pc.addIceCandidate(c);
      } else if (data.type === 'candidate') {
        const c = data.candidate || undefined; // null = end of candidates
        if (st.remoteSet) await pc.addIceCandidate(c); else st.pending.push(c);
      }
    } catch (e) {
      if (!(data.type === 'candidate' && st.ignoredOffer)) this._log(`[P2P] signal from player ${from}: ${e}`, 'warn');
    }
  }

  /** The path to the peer is gone (ICE disconnected/failed): the engine falls back; ICE restarts. */
  _connectivityLost(st, why) {
    if (this._destroyed || st.retired || st.pc.connectionState === 'closed') return;
    if (!st.lost) {
      st.lost = true;
      st.iceRestarts = 0;
      st.gaveUp = false;
      this._log(`[WebRTC] connection to player ${st.peer} lost (${why})`, 'warn');
      if (!st.failed) {
        st.failed = true;
        if (this.engine) this.engine.onConnectionFailed(st.peer, this._now());
        if (this.peer) this.peer.poll();
      }
      this._wake();
    }
    // the lower index restarts first; the other one after one more grace period
    const polite = this.playerIndex > st.peer ? this.iceRestartGraceMs : 0;
    this._scheduleIceRestart(st, (/failed/.test(why) ? 0 : this.iceRestartGraceMs) + polite);
  }

  /** ICE is connected again (or a packet arrived over the channel): a surviving channel is usable
   * again; a dead one is re-opened. */
  _connectivityBack(st) {
    if (!st.lost || this._destroyed || st.retired) return;
    st.lost = false;
    if (st.restartTimer !== null) { this.clock.clearTimeout(st.restartTimer); this._timers.delete(st.restartTimer); st.restartTimer = null; }
    this._log(`[WebRTC] connection to player ${st.peer} restored${st.iceRestarts ? ` after ${st.iceRestarts} ICE restart(s)` : ''}`);
    if (st.dc && st.dc.readyState === 'open' && !st.cut) {
      st.failed = false;
      st.open = true;
      st.closed = false;
      if (this.engine) this.engine.onChannelOpen(st.peer, this._now());
      this._wake();
      this.pollConnectionType();
    } else if (st.closedWhileLost && !st.cut && this.playerIndex < st.peer) {
      this._openChannel(st);
    }
  }

  /** A player reclaimed its seat (its page reloaded): the connection to its old page is dead; a
   * fresh one waits for the new page's offer. */
  _onPeerRejoined(index, nonce = null) {
    if (this._destroyed || !Number.isInteger(index) || index === this.playerIndex || index < 0 || (this.numPlayers && index >= this.numPlayers)) return;
    const early = this._renewedEarly.get(index) ?? 0;
    if (early > 0) {
      // its new page's offer came first: that connection is already the new one
      this._renewedEarly.set(index, early - 1);
      this._log(`[P2P] player ${index} rejoined the room`);
      this._emit('peerRejoined', { type: 'peerRejoined', peer: index });
      return;
    }
    const cur = this.peers.get(index);
    if (nonce && cur && cur.remoteNonce === nonce) {
      // the same page: only its Socket.IO connection came back (the relay works again); its
      // DataChannel is not touched
      this._log(`[P2P] player ${index} is back on the server (its Socket.IO connection reconnected)`);
      this._emit('peerRelayBack', { type: 'peerRelayBack', peer: index });
      return;
    }
    this._log(`[P2P] player ${index} rejoined the room`);
    this._emit('peerRejoined', { type: 'peerRejoined', peer: index });
    const old = this.peers.get(index);
    if (old) this._retirePeer(old, 'player rejoined (new page)');
    if (this.peer) this._peer(index); // answers the rejoined page's offer
  }

  /** Drops the connection to a page that is gone: timers, handlers, channels, the pc; the engine
   * hears that the channel closed (if it still counted it open). Its signals are ignored from now on. */
  _retirePeer(st, why) {
    if (st.retired) return;
    st.retired = true;
    this.glueCounters.peersRenewed++;
    if (this.peers.get(st.peer) === st) this.peers.delete(st.peer);
    if (st.remoteNonce) {
      const set = this._retiredNonces.get(st.peer) || new Set();
      set.add(st.remoteNonce);
      this._retiredNonces.set(st.peer, set);
    }
    if (st.restartTimer !== null) { this.clock.clearTimeout(st.restartTimer); this._timers.delete(st.restartTimer); st.restartTimer = null; }
    const pc = st.pc;
    pc.onicecandidate = pc.ondatachannel = pc.onconnectionstatechange = pc.oniceconnectionstatechange = null;
    for (const dc of st.channels) dc.onopen = dc.onclose = dc.onmessage = dc.onerror = null;
    const wasOpen = st.open;
    st.open = false;
    if (!st.closed) {
      st.closed = true;
      this._log(`[WebRTC] connection to player ${st.peer} dropped (${why})`, wasOpen ? 'warn' : 'log');
      if (this.engine && wasOpen) this.engine.onChannelClosed(st.peer, this._now());
    }
    for (const dc of st.channels) { try { dc.close(); } catch { /* ignore */ } }
    st.channels.clear();
    try { pc.close(); } catch { /* ignore */ }
    if (this.peer) this.peer.poll();
    this._wake();
  }

  /** Another connection took this seat with its token (this page was reloaded elsewhere, or the
   * tab was duplicated): the server closes this one; this session stops. */
  _onSeatReclaimed(d) {
    if (this._destroyed) return;
    this._log(`[P2P] seat ${d.playerIndex ?? this.playerIndex} of ${d.room ?? this.room} was reclaimed by another connection; closing this session`, 'warn');
    this._emit('seatReclaimed', { type: 'seatReclaimed', room: d.room ?? this.room, playerIndex: d.playerIndex ?? this.playerIndex });
    // the token this session holds is spent; a newer one in the store belongs to the new owner
    this._tokenDone = true;
    this.destroy();
  }

  _scheduleIceRestart(st, delayMs) {
    if (st.restartTimer !== null || this._destroyed || st.retired) return;
    if (st.iceRestarts >= this.maxIceRestarts) {
      if (!st.gaveUp) this._log(`[WebRTC] no ICE restart left for player ${st.peer} (${this.maxIceRestarts} tried); staying on the relay`, 'warn');
      st.gaveUp = true;
      return;
    }
    const t = this.clock.setTimeout(() => {
      this._timers.delete(t);
      st.restartTimer = null;
      if (!st.lost || this._destroyed || st.retired || st.pc.connectionState === 'closed') return;
      st.iceRestarts++;
      st.iceRestartsTotal++;
      this._log(`[WebRTC] ICE restart ${st.iceRestarts}/${this.maxIceRestarts} towards player ${st.peer}`);
      this._negotiate(st, { iceRestart: true });
      this._scheduleIceRestart(st, Math.min(15000, this.iceRestartGraceMs * 2 ** st.iceRestarts));
    }, Math.max(0, delayMs));
    st.restartTimer = t;
    this._timers.add(t);
  }

  /** A new DataChannel to the peer on the existing connection. */
  _openChannel(st) {
    if (st.everOpened) st.reopens++;
    this._setupChannel(st, st.pc.createDataChannel('p2psync', { ordered: false, maxRetransmits: 0 }));
  }

  _setupChannel(st, dc) {
    // the newest channel carries what this side sends; every channel of the peer is read
    st.dc = dc;
    st.channels.add(dc);
    dc.binaryType = 'arraybuffer';
    dc.onopen = () => {
      if (this._destroyed || st.retired) return;
      if (st.dc !== dc && st.dc && st.dc.readyState === 'open') return; // a newer channel is already in use
      st.dc = dc;
      st.open = true;
      st.everOpened = true;
      st.closed = false;
      st.closedWhileLost = false;
      st.failed = false;
      st.cut = false;
      this._log(`[WebRTC] DataChannel open (player ${st.peer}, ordered=${dc.ordered}, maxRetransmits=${dc.maxRetransmits})`);
      if (this.engine) this.engine.onChannelOpen(st.peer, this._now());
      this._wake();
      this.pollConnectionType();
    };
    dc.onclose = () => {
      if (st.retired) return;
      st.channels.delete(dc);
      if (st.dc === dc) this._channelClosed(st, 'closed');
    };
    dc.onerror = (e) => {
      const msg = e && e.error ? e.error.message : String(e);
      if (!st.closed && st.dc === dc) this._log(`[WebRTC] DataChannel error (player ${st.peer}): ${msg}`, 'warn');
    };
    dc.onmessage = (ev) => {
      if (!this.peer || st.retired || !(ev.data instanceof ArrayBuffer)) return;
      // a packet over the channel proves the path works, whatever ICE reports (its 'connected'
      // can lag by seconds after a restart)
      if (st.lost && dc.readyState === 'open') this._connectivityBack(st);
      const bytes = new Uint8Array(ev.data);
      if (bytes[0] === GLUE_HELLO || bytes[0] === GLUE_HELLO_ACK) { this._onGlue(st, bytes); return; }
      this.peer.receiveP2P(st.peer, bytes);
    };
  }

  _channelClosed(st, why) {
    if (st.closed) return;
    const wasOpen = st.open;
    st.open = false;
    st.closed = true;
    st.closedWhileLost = st.lost;
    this._log(`[WebRTC] DataChannel to player ${st.peer} ${why}`, wasOpen ? 'warn' : 'log');
    if (this.engine) this.engine.onChannelClosed(st.peer, this._now());
    if (this.peer) this.peer.poll();
    this._wake();
  }

  _wake() {
    for (const w of this._channelWaiters.splice(0)) w();
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const t = this.clock.setTimeout(resolve, ms);
      this._channelWaiters.push(() => { this.clock.clearTimeout(t); resolve(); });
    });
  }

  async _waitChannels(timeoutMs) {
    const deadline = this._now() + timeoutMs;
    const settled = () => [...this.peers.values()].every((s) => s.open || s.failed || s.closed);
    while (!settled() && this._now() < deadline && !this._destroyed) await this._sleep(Math.max(0, Math.min(250, deadline - this._now())));
    if (this._destroyed || !this.engine) return;
    for (const st of this.peers.values()) {
      if (!st.open && !st.failed && !st.closed) {
        st.failed = true;
        this._log(`[P2P] DataChannel to player ${st.peer} not open after ${timeoutMs} ms; using the Socket.IO relay`, 'warn');
        this.engine.onConnectionFailed(st.peer, this._now());
      }
    }
  }

  /**
   * Start barrier (the reference's P2P validation / ready gate). Over every open channel each
   * side sends a HELLO probe [0xF0, flags, f64 time] every 100 ms and echoes the other side's
   * probes at once [0xF1, f64 time]; flags: 1 = "I hear you", 2 = "my last 3 probe RTTs to you
   * were below settleRttMs". The barrier ends when, for every open channel, both sides hear each
   * other and both are settled — i.e. the channel AND both pages' main threads are responsive
   * (right after page load they often are not, and the engine's very first PING samples would
   * then report seconds of RTT and trigger a latency fallback). All players then take frame 0
   * within about one one-way delay. Probes never reach the engine (0xF0/0xF1 are not p2psync
   * message types). Peers on the relay are not waited for (the engine's EPISODE_READY gate
   * covers them). After timeoutMs the game starts anyway.
   */
  async _startBarrier(timeoutMs, settleRttMs = 100) {
    const t0 = this._now();
    this._settleRttMs = settleRttMs;
    const open = () => [...this.peers.values()].filter((st) => st.open);
    const settled = (st) => st.rtts.length >= 3 && st.rtts.every((r) => r < settleRttMs);
    const done = () => open().every((st) => st.heard && st.heardMe && st.peerSettled && settled(st));
    const deadline = t0 + timeoutMs;
    while (!done() && this._now() < deadline && !this._destroyed) {
      for (const st of open()) this._sendHello(st);
      await this._sleep(100);
    }
    this._barrierDone = true;
    for (const st of open()) this._sendHello(st);
    this.barrier = {
      ms: Math.round(this._now() - t0), complete: done(),
      rttsMs: Object.fromEntries(open().map((st) => [st.peer, st.rtts.map((r) => Math.round(r * 10) / 10)])),
    };
    if (!this.barrier.complete) this._log(`[P2P] start barrier incomplete after ${timeoutMs} ms (probe RTTs ${JSON.stringify(this.barrier.rttsMs)}); starting anyway`, 'warn');
    else this._log(`[P2P] P2P validation successful after ${this.barrier.ms} ms (probe RTTs ${JSON.stringify(this.barrier.rttsMs)})`);
  }

  _sendHello(st) {
    const settled = st.rtts.length >= 3 && st.rtts.every((r) => r < (this._settleRttMs ?? 100));
    const b = new Uint8Array(10);
    b[0] = GLUE_HELLO;
    b[1] = (st.heard ? 1 : 0) | (settled || this._barrierDone ? 2 : 0);
    new DataView(b.buffer).setFloat64(2, this._now(), true);
    try { if (st.dc && st.dc.readyState === 'open') st.dc.send(b); } catch { /* closing */ }
  }

  _onGlue(st, bytes) {
    if (bytes[0] === GLUE_HELLO && bytes.length === 10) {
      const flags = bytes[1];
      st.heard = true;
      if (flags & 1) st.heardMe = true;
      if (flags & 2) st.peerSettled = true;
      const ack = new Uint8Array(9);
      ack[0] = GLUE_HELLO_ACK;
      ack.set(bytes.subarray(2, 10), 1);
      try { if (st.dc && st.dc.readyState === 'open') st.dc.send(ack); } catch { /* closing */ }
      // already started: tell a peer still in its barrier that we hear it and are settled
      if (this._barrierDone && (!(flags & 1) || !(flags & 2))) this._sendHello(st);
      this._wake();
    } else if (bytes[0] === GLUE_HELLO_ACK && bytes.length === 9) {
      const rtt = this._now() - new DataView(bytes.buffer, bytes.byteOffset, 9).getFloat64(1, true);
      if (Number.isFinite(rtt) && rtt >= 0) {
        st.rtts.push(rtt);
        if (st.rtts.length > 3) st.rtts.shift();
      }
      this._wake();
    }
  }

  // ------------------------------------------------------------------------------ sending

  /** Largest bufferedAmount over the open channels. */
  bufferedAmount() {
    let m = 0;
    for (const st of this.peers.values()) if (st.dc && st.open) m = Math.max(m, st.dc.bufferedAmount);
    return m;
  }

  /** The SessionPeer's P2P path: to = -1 every peer. False when no open channel took it. */
  _sendP2PTo(to, bytes) {
    if (to === -1) {
      let any = false;
      for (const st of this.peers.values()) any = this._sendP2P(st, bytes) || any;
      return any;
    }
    const st = this.peers.get(to);
    return st ? this._sendP2P(st, bytes) : false;
  }

  _sendP2P(st, bytes) {
    const dc = st.dc;
    if (!dc || !st.open || dc.readyState !== 'open') return false;
    const { latencyMs, lossPct } = this.impairment;
    const c = this.glueCounters;
    if (lossPct > 0 && Math.random() * 100 < lossPct) { c.p2pPacketsDroppedByImpair++; return true; }
    if (latencyMs > 0) {
      const copy = bytes.slice();
      c.p2pPacketsDelayed++;
      const t = this.clock.setTimeout(() => {
        this._timers.delete(t);
        if (dc.readyState !== 'open') return;
        try { dc.send(copy); } catch { c.p2pSendErrors++; }
      }, latencyMs);
      this._timers.add(t);
      return true;
    }
    try { dc.send(bytes); return true; } catch { c.p2pSendErrors++; return false; }
  }

  // ------------------------------------------------------------------------------ receiving

  _relayIn(event, d, from = -1) {
    if (!this.peer) { if (this._early.length < 1024) this._early.push([event, d, from]); return; }
    if (!d || typeof d !== 'object') return;
    this.peer.receiveRelay(event, d, from);
  }

  // ------------------------------------------------------------------------------ the frame

  /**
   * One frame: what the page's step() calls (at most one at a time).
   * @param {number} localAction  0..255
   * @param {ArrayLike<number>} [botActions]
   * @returns {Promise<import('./p2psync.d.ts').StepResult>}
   */
  async step(localAction = 0, botActions = null) {
    if (!this.peer || this._destroyed) throw new Error('P2PSyncSession.step: not connected');
    if (this._busy) throw new Error('P2PSyncSession.step: previous step still running');
    this._busy = true;
    try {
      return await this.peer.step(localAction, botActions);
    } finally {
      this._busy = false;
    }
  }

  /**
   * The page's focus (visibilitychange; wired automatically unless trackVisibility is false).
   * FOCUS_STATE goes to every peer on both paths at once; the local inputs chosen from now on
   * carry the state, so every peer's research data records it on the same frames.
   */
  setFocus(focused) {
    if (this.peer) this.peer.setFocus(focused);
  }

  /** Handles what arrived while the page is not stepping (engine events such as a peer's focus
   * change). Receiving already does this; a page may call it from its own timer. */
  poll() {
    if (this.peer) this.peer.poll();
  }

  /** Research data (web/research_data.js): one episode as CSV text or JSON. */
  exportEpisodeData(options = {}) { return this.peer.exportEpisodeData(options); }
  /** Research data of every kept episode. */
  exportSessionData(options = {}) { return this.peer.exportSessionData(options); }

  /**
   * After the last episode: keeps servicing the network (advance at the frame rate, so END/READY
   * re-sends and answers go out) until every episode has ended and lingerMs passed, or timeoutMs,
   * then closes the channels and frees the engine. Resolves with {finished, episodes}.
   */
  async finish({ lingerMs = 1500, timeoutMs = 10000, frameMs = 1000 / 30 } = {}) {
    this.forgetToken();
    const t0 = this._now();
    let endedAt = this.finished ? t0 : null;
    while (!this._destroyed && this.peer) {
      const t = this._now();
      if (endedAt === null && this.finished) endedAt = t;
      if ((endedAt !== null && t - endedAt >= lingerMs) || t - t0 >= timeoutMs) break;
      if (!this._busy) {
        this._busy = true;
        try { await this.peer.step(0); } finally { this._busy = false; }
      }
      await new Promise((resolve) => this.clock.setTimeout(resolve, frameMs));
    }
    const result = { finished: this.finished, episodes: this.episodeResults.length };
    this.destroy();
    return result;
  }

  /** Starts the next episode (with autoNextEpisode: false). */
  nextEpisode(options = {}) {
    if (!this.peer) throw new Error('P2PSyncSession.nextEpisode: not connected');
    return this.peer.nextEpisode(options);
  }

  _onEngineEvent(ev) {
    // the session ended normally: a later page load must not reclaim this seat
    if (ev.type === 'episodeEnd' && this.finished && !this._tokenDone) this.forgetToken();
    if (this.events.length >= 200) this.events.shift();
    this.events.push(ev);
    this._emit(ev.type, ev);
  }

  _emit(type, detail) {
    try {
      this.dispatchEvent(new CustomEvent(type, { detail }));
    } catch (e) {
      this._log(`[P2P] '${type}' listener threw: ${e && e.stack || e}`, 'error');
    }
  }

  // ------------------------------------------------------------------------------ action log

  /** Newest frame of the confirmed action log (all frames up to it are final). */
  get loggedFrame() { return this.peer ? this.peer.loggedUpTo : -1; }

  /** Confirmed executed actions of frames [from, to] (clamped to the confirmed log) as Uint8Array. */
  actionLogBytes(from = 0, to = this.loggedFrame) { return this.peer.actionLogBytes(from, to); }

  /** Confirmed executed actions of frames [from, to]: one array of actions (players then bots) per frame. */
  actionLog(from = 0, to = this.loggedFrame) {
    const n = this.engine.numActors;
    const b = this.actionLogBytes(from, to);
    const out = [];
    for (let i = 0; i < b.length; i += n) out.push(Array.from(b.subarray(i, i + n)));
    return out;
  }

  /** Same as actionLog, as one hex string (2 hex digits per actor per frame). */
  actionLogHex(from = 0, to = this.loggedFrame) { return toHex(this.actionLogBytes(from, to)); }

  /** Hash of the stored snapshot of `frame` (its pre-step state), or null if not kept. */
  stateHashAt(frame) {
    const v = this.engine.snapshot(frame);
    return v ? this.engine.hashState(v.slice()) : null;
  }

  // ------------------------------------------------------------------------------ metrics

  /** Reference-compatible metrics (window.game.p2pMetrics field names), plus connectionDetails. */
  get p2pMetrics() {
    const m = this.engine ? this.engine.p2pMetrics : {
      inputsReceivedViaP2P: 0, inputsReceivedViaSocketIO: 0, inputsSentViaP2P: 0, inputsSentViaSocketIO: 0,
      p2pFallbackTriggered: false, p2pFallbackFrame: null, connectionType: this.connectionType,
    };
    m.connectionDetails = this.connectionDetails;
    return m;
  }

  /** The engine's session export plus a `transport` section describing this glue. */
  exportSessionMetrics() {
    const m = this.engine.exportSessionMetrics();
    m.transport = {
      room: this.room,
      playerIndex: this.playerIndex,
      rejoined: this.rejoined,
      impairment: { ...this.impairment },
      channels: [...this.peers.values()].map((s) => ({
        peer: s.peer, state: s.dc ? s.dc.readyState : 'none', everOpened: s.everOpened, failed: s.failed,
        connectionState: s.pc.connectionState, iceConnectionState: s.pc.iceConnectionState ?? null,
        iceRestarts: s.iceRestartsTotal, reopens: s.reopens, cut: s.cut, selectedPair: s.pair,
      })),
      connectionType: this.connectionType,
      counters: this.counters,
      receiveResults: { ...this.rx },
      episodeSummary: this.episodeSummaryLine,
      finalStateHash: this.finalStateHash,
      startBarrier: this.barrier || null,
    };
    return m;
  }

  /** Poll getStats for the selected candidate pair of each peer → engine.setConnectionType. */
  async pollConnectionType() {
    if (!this.engine || this._destroyed) return this.connectionType;
    const details = {};
    let type = 'unknown';
    let anyDirect = false, anyRelay = false;
    for (const st of this.peers.values()) {
      if (st.pc.connectionState === 'closed') continue;
      try {
        const stats = await st.pc.getStats();
        let pair = null;
        stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
        if (!pair) stats.forEach((s) => { if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
        if (!pair) continue;
        const l = stats.get(pair.localCandidateId), r = stats.get(pair.remoteCandidateId);
        const info = {
          local: l && { address: l.address, port: l.port, protocol: l.protocol, type: l.candidateType },
          remote: r && { address: r.address, port: r.port, protocol: r.protocol, type: r.candidateType },
          currentRoundTripTime: pair.currentRoundTripTime ?? null,
        };
        st.pair = info;
        details[st.peer] = info;
        if ((l && l.candidateType === 'relay') || (r && r.candidateType === 'relay')) anyRelay = true;
        else anyDirect = true;
      } catch { /* closed meanwhile */ }
    }
    if (anyRelay) type = 'relay';
    else if (anyDirect) type = 'direct';
    this.connectionType = type;
    this.connectionDetails = Object.keys(details).length ? details : this.connectionDetails;
    if (this.engine) this.engine.setConnectionType(type);
    return type;
  }

  // ------------------------------------------------------------------------------ knobs

  /** Network impairment applied to P2P sends (a demo/test knob): added latency and random loss. */
  impair({ latencyMs, lossPct } = {}) {
    if (latencyMs !== undefined) this.impairment.latencyMs = Math.max(0, Number(latencyMs) || 0);
    if (lossPct !== undefined) this.impairment.lossPct = Math.min(100, Math.max(0, Number(lossPct) || 0));
    return { ...this.impairment };
  }

  /** Close every DataChannel (the "Cut P2P" button): the engine falls back to the relay. They
   * stay closed (no automatic re-open) until restoreP2P(). */
  closeP2P() {
    for (const st of this.peers.values()) {
      st.cut = true;
      for (const dc of [...st.channels]) {
        if (dc.readyState !== 'closed') {
          try { dc.close(); } catch { /* ignore */ }
        }
      }
      this._channelClosed(st, 'closed locally (Cut P2P)');
    }
  }

  /** Open a new DataChannel to every peer whose channel is not open (after closeP2P(), or after the
   * peer cut it), on the existing connection. When it opens the engine is told; with
   * config.fallbackRecovery it returns the pair to P2P once the path is healthy for long enough. */
  restoreP2P() {
    for (const st of this.peers.values()) {
      st.cut = false;
      if (st.open || this._destroyed || st.pc.connectionState === 'closed') continue;
      this._log(`[WebRTC] re-opening the DataChannel to player ${st.peer}`);
      this._openChannel(st);
    }
  }

  /** Stop timers, close channels and peer connections, detach socket handlers, free the engine.
   * The stored reconnect token is kept (this is what a reload looks like): call forgetToken()
   * first when the participant leaves for good. */
  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    liveSessions.delete(this);
    this.clock.clearInterval(this._statsTimer);
    for (const t of this._timers) this.clock.clearTimeout(t);
    this._timers.clear();
    this.transport.close();
    if (this._onVisibility) document.removeEventListener('visibilitychange', this._onVisibility);
    for (const st of this.peers.values()) {
      st.closed = true;
      for (const dc of [...st.channels]) {
        try { dc.close(); } catch { /* ignore */ }
      }
      try { st.pc.close(); } catch { /* ignore */ }
    }
    this._wake();
    // the participant's engine is freed; its research data and counters stay readable
    if (this.peer) this.peer.destroy();
  }
}

/** The env with isDone(env) asked after every step: true ends the episode at that frame. */
function withIsDone(env, isDone) {
  const isThenable = (v) => v !== null && typeof v === 'object' && typeof v.then === 'function';
  const merge = (r, done) => {
    if (!done) return r;
    if (r && typeof r === 'object') return { ...r, terminated: true };
    return { terminated: true };
  };
  // (no replay: a batched replay cannot ask isDone between frames, so they are stepped one by one)
  const wrapped = {
    step(actions, info) {
      const r = env.step(actions, info);
      if (isThenable(r)) return r.then((x) => Promise.resolve(isDone(env)).then((d) => merge(x, d)));
      const d = isDone(env);
      return isThenable(d) ? d.then((dd) => merge(r, dd)) : merge(r, d);
    },
    getState: () => env.getState(),
    setState: (state) => env.setState(state),
  };
  if (typeof env.reset === 'function') wrapped.reset = (...a) => env.reset(...a);
  if (typeof env.rewards === 'function') wrapped.rewards = () => env.rewards();
  return wrapped;
}

export default P2PSyncSession;
