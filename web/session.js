// session.js — browser glue around one p2psync SyncEngine:
//   * one RTCDataChannel per remote peer ({ordered:false, maxRetransmits:0}, binaryType
//     'arraybuffer'; for each pair the LOWER player index creates the channel and the offer),
//     signaled through the server's `signal` event;
//   * a Socket.IO socket for signaling and the fallback relay (pyodide_player_action ->
//     pyodide_other_player_action, p2p_state_sync, p2psync_packet);
//   * an env adapter { step(actions), getState() -> JSON text, setState(text),
//     replay?(framesActions, saveFlags) -> (string|null)[], rewards?() } — any method may be async.
//
//   const session = await P2PSyncSession.connect({ lib, socket, env, room, players: 2 });
//   setInterval(async () => { const r = await session.step(localAction); render(r); }, 33);
//
// Per step: engine.advance(now, localAction, botActions, bufferedAmount = max over channels),
// outgoing messages are sent at once on their path (P2P → channel(s), relay → socket.emit), a
// rollback is applied through the adapter (load snapshot, replay, re-save flagged snapshots),
// the pre-step snapshot is saved when the plan asks for it, then the env steps this frame.
// Engine events come out as DOM events ('rollback', 'desync', 'fallback', 'stall', 'episodeEnd',
// 'recovery', 'interrupted', 'disconnected', 'reconnected', 'verified', 'nondeterminism',
// 'error', 'focus'; CustomEvent, detail = the engine's event object) plus the reference console
// lines ([P2P Sync] ..., [P2P Fallback] ..., [Episode] ...).

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());
const isThenable = (v) => v !== null && typeof v === 'object' && typeof v.then === 'function';
// Session-level start-barrier messages (see _startBarrier); never passed to the engine.
const GLUE_HELLO = 0xf0;
const GLUE_HELLO_ACK = 0xf1;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function toHex(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]];
  return s;
}

/** Wait for `event` on a Socket.IO socket (or reject after ms). */
function onceSocket(socket, event, ms, what) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { socket.off(event, h); reject(new Error(`timed out waiting for ${what || event}`)); }, ms);
    const h = (v) => { clearTimeout(t); resolve(v); };
    socket.once(event, h);
  });
}

export class P2PSyncSession extends EventTarget {
  /**
   * Join a room, create the engine, open the DataChannels and resolve when every channel is
   * open (or, after connectTimeoutMs, with the unopened peers reported as failed connections,
   * which puts them on the relay).
   * @param {object} o
   * @param {import('./p2psync.d.ts').P2PSyncLib} o.lib    loaded p2psync module
   * @param {any} o.socket            Socket.IO client socket (connected or connecting)
   * @param {object} o.env            env adapter
   * @param {string} [o.room]         room name (omit: server auto-pairing)
   * @param {number} [o.players=2]    room size 2..4
   * @param {object} [o.config]       extra SyncConfig fields (numPlayers/localPlayerIndex are set here)
   * @param {number} [o.episodeFrames=0]  end the episode after this many frames (0 = never)
   * @param {number} [o.connectTimeoutMs=15000]
   * @param {number} [o.barrierTimeoutMs=6000]  start barrier / P2P validation (see _startBarrier)
   * @param {number} [o.settleRttMs=100]  barrier: probe RTT below which a channel counts as settled
   * @param {number} [o.joinTimeoutMs=60000]  waiting for the room to fill
   * @param {RTCIceServer[]} [o.iceServers=[]]
   * @param {number} [o.statsIntervalMs=3000]  getStats polling (selected candidate pair)
   * @param {(msg:string, level?:string)=>void} [o.log]
   * @returns {Promise<P2PSyncSession>}
   */
  static async connect(o) {
    const s = new P2PSyncSession(o);
    try {
      await s._join(o.room, o.players ?? 2, o.joinTimeoutMs ?? 60000);
      s._startPeers();
      await s._waitChannels(o.connectTimeoutMs ?? 15000);
      await s._startBarrier(o.barrierTimeoutMs ?? 6000, o.settleRttMs ?? 100);
    } catch (e) {
      s.destroy();
      throw e;
    }
    return s;
  }

  constructor({
    lib, socket, env, config = {}, episodeFrames = 0, iceServers = [], statsIntervalMs = 3000,
    log = null, syncLogEveryFrames = 30, logRollbacks = false, isDone = null,
  } = {}) {
    super();
    if (!lib || !lib.SyncEngine) throw new TypeError('P2PSyncSession: lib (loaded p2psync) is required');
    if (!socket) throw new TypeError('P2PSyncSession: socket is required');
    if (!env) throw new TypeError('P2PSyncSession: env adapter is required');
    this.lib = lib;
    this.socket = socket;
    this.env = env;
    this.config = config;
    this.episodeFrames = episodeFrames | 0;
    this.iceServers = iceServers;
    this.statsIntervalMs = statsIntervalMs;
    this.syncLogEveryFrames = syncLogEveryFrames;
    this.logRollbacks = logRollbacks;
    this.isDone = isDone;
    this._log = log || ((m, level) => (level === 'warn' ? console.warn(m) : level === 'error' ? console.error(m) : console.log(m)));

    this.engine = null;
    this.playerIndex = -1;
    this.numPlayers = 0;
    this.room = null;
    /** @type {Map<number, {peer:number, pc:RTCPeerConnection, dc:RTCDataChannel|null, remoteSet:boolean, pending:any[], open:boolean, everOpened:boolean, closed:boolean, failed:boolean, pair:any}>} */
    this.peers = new Map();
    this.impairment = { latencyMs: 0, lossPct: 0 };

    // last plan summary (for pages / panels)
    this.frame = 0;          // next frame to execute
    this.status = 'INIT';
    this.confirmedFrame = -1;
    this.verifiedFrame = -1;
    this.episode = 0;
    this.episodeStart = 0;
    this.endFrame = -1;      // global frame after which the local env terminated (-1: not yet)
    this.ended = false;      // episodeEnd event seen
    this.finalStateHash = null;
    this.episodeSummaryLine = null;
    this.stalled = false;

    this.counters = {
      steps: 0, framesStepped: 0, framesReplayed: 0, rollbacks: 0, stalls: 0, waits: 0,
      p2pPacketsSent: 0, p2pPacketsDelayed: 0, p2pPacketsDroppedByImpair: 0, p2pSendSkipped: 0,
      p2pSendErrors: 0, relayEmits: 0, p2pPacketsReceived: 0, relayMessagesReceived: 0,
      desyncs: 0, envErrors: 0,
    };
    this.rx = Object.create(null);  // ReceiveResult -> count
    this.connectionType = 'unknown';
    this.connectionDetails = null;
    this.events = [];               // recent engine events (bounded)
    this._log2 = { bytes: new Uint8Array(4096), upTo: -1 }; // confirmed action log, by global frame
    this._busy = false;
    this._early = [];               // relay messages received before the engine exists
    this._timers = new Set();
    this._statsTimer = null;
    this._lastSyncLog = -Infinity;
    this._channelWaiters = [];
    this._destroyed = false;

    this._onSignal = (m) => this._handleSignal(m);
    this._onRelayAction = (d) => this._relayIn('pyodide_other_player_action', d);
    this._onRelayState = (d) => this._relayIn('p2p_state_sync', d);
    this._onRelayPacket = (d) => this._relayIn('p2psync_packet', d);
    this._onPeerLeft = (d) => this._log(`[P2P] player ${d && d.playerIndex} left the room (${d && d.reason})`, 'warn');
    socket.on('signal', this._onSignal);
    socket.on('pyodide_other_player_action', this._onRelayAction);
    socket.on('p2p_state_sync', this._onRelayState);
    socket.on('p2psync_packet', this._onRelayPacket);
    socket.on('peer_left', this._onPeerLeft);
  }

  // ------------------------------------------------------------------------------ setup

  async _join(room, players, timeoutMs) {
    const socket = this.socket;
    if (!socket.connected) await onceSocket(socket, 'connect', 15000, 'the Socket.IO connection');
    const ready = onceSocket(socket, 'room_ready', timeoutMs, 'the room to fill');
    ready.catch(() => {});
    const payload = { players };
    if (room) payload.room = room;
    const res = await new Promise((resolve, reject) => {
      socket.timeout(10000).emit('join', payload, (err, r) => (err ? reject(new Error('join: no answer')) : resolve(r)));
    });
    if (!res || !res.ok) throw new Error(`join rejected: ${JSON.stringify(res)}`);
    this.playerIndex = res.playerIndex;
    this.numPlayers = res.players;
    this.room = res.room;
    this.engine = new this.lib.SyncEngine({
      ...this.config,
      numPlayers: this.numPlayers,
      localPlayerIndex: this.playerIndex,
      gameId: this.config.gameId ?? this.room,
    });
    // Replies produced while receiving (PONG, INPUT_RESPONSE, ...) go out at once.
    this.engine.onOutgoing = (m) => this._send(m);
    this.episodeStart = 0;
    this.frame = this.engine.frame;
    for (const [ev, d] of this._early.splice(0)) this._relayIn(ev, d);
    this._log(`[P2P] joined ${this.room} as player ${this.playerIndex}/${this.numPlayers}`);
    this.readyInfo = await ready;
  }

  _startPeers() {
    for (let p = 0; p < this.numPlayers; p++) {
      if (p === this.playerIndex) continue;
      const st = this._peer(p);
      if (this.playerIndex < p) this._offer(st);
    }
    this._statsTimer = setInterval(() => this.pollConnectionType(), this.statsIntervalMs);
  }

  _peer(p) {
    let st = this.peers.get(p);
    if (st) return st;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    st = { peer: p, pc, dc: null, remoteSet: false, pending: [], open: false, everOpened: false, closed: false, failed: false, pair: null, heard: false, heardMe: false, peerSettled: false, rtts: [] };
    this.peers.set(p, st);
    pc.onicecandidate = (ev) => this._signal(p, { type: 'candidate', candidate: ev.candidate ? ev.candidate.toJSON() : null });
    pc.ondatachannel = (ev) => this._setupChannel(st, ev.channel);
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      if (s === 'failed' && !st.failed) {
        st.failed = true;
        this._log(`[P2P] connection to player ${p} failed`, 'warn');
        if (this.engine) this.engine.onConnectionFailed(p, now());
        this._wake();
      }
    };
    return st;
  }

  async _offer(st) {
    this._setupChannel(st, st.pc.createDataChannel('p2psync', { ordered: false, maxRetransmits: 0 }));
    try {
      await st.pc.setLocalDescription(await st.pc.createOffer());
      this._signal(st.peer, { type: 'offer', sdp: st.pc.localDescription.sdp });
    } catch (e) {
      this._log(`[P2P] offer to player ${st.peer} failed: ${e}`, 'error');
    }
  }

  _signal(to, data) {
    this.socket.emit('signal', { to, data }, (res) => {
      if (!res || !res.ok) this._log(`[P2P] signal to ${to} rejected: ${JSON.stringify(res)}`, 'warn');
    });
  }

  async _handleSignal(msg) {
    const from = msg && msg.from, data = msg && msg.data;
    if (!Number.isInteger(from) || !data || this._destroyed) return;
    const st = this._peer(from);
    const pc = st.pc;
    try {
      if (data.type === 'offer' || data.type === 'answer') {
        await pc.setRemoteDescription({ type: data.type, sdp: data.sdp });
        st.remoteSet = true;
        for (const c of st.pending.splice(0)) await pc.addIceCandidate(c);
        if (data.type === 'offer') {
          await pc.setLocalDescription(await pc.createAnswer());
          this._signal(from, { type: 'answer', sdp: pc.localDescription.sdp });
        }
      } else if (data.type === 'candidate') {
        const c = data.candidate || undefined; // null = end of candidates
        if (st.remoteSet) await pc.addIceCandidate(c); else st.pending.push(c);
      }
    } catch (e) {
      this._log(`[P2P] signal from player ${from}: ${e}`, 'warn');
    }
  }

  _setupChannel(st, dc) {
    st.dc = dc;
    dc.binaryType = 'arraybuffer';
    dc.onopen = () => {
      st.open = true;
      st.everOpened = true;
      st.closed = false;
      this._log(`[WebRTC] DataChannel open (player ${st.peer}, ordered=${dc.ordered}, maxRetransmits=${dc.maxRetransmits})`);
      if (this.engine) this.engine.onChannelOpen(st.peer, now());
      this._wake();
      this.pollConnectionType();
    };
    dc.onclose = () => this._channelClosed(st, 'closed');
    dc.onerror = (e) => {
      const msg = e && e.error ? e.error.message : String(e);
      if (!st.closed) this._log(`[WebRTC] DataChannel error (player ${st.peer}): ${msg}`, 'warn');
    };
    dc.onmessage = (ev) => {
      if (!this.engine || !(ev.data instanceof ArrayBuffer)) return;
      const bytes = new Uint8Array(ev.data);
      if (bytes[0] === GLUE_HELLO || bytes[0] === GLUE_HELLO_ACK) { this._onGlue(st, bytes); return; }
      this.counters.p2pPacketsReceived++;
      const r = this.engine.receive(bytes, st.peer, 'p2p', now());
      this.rx[r] = (this.rx[r] || 0) + 1;
    };
  }

  _channelClosed(st, why) {
    if (st.closed) return;
    const wasOpen = st.open;
    st.open = false;
    st.closed = true;
    this._log(`[WebRTC] DataChannel to player ${st.peer} ${why}`, wasOpen ? 'warn' : 'log');
    if (this.engine) this.engine.onChannelClosed(st.peer, now());
    this._wake();
  }

  _wake() {
    for (const w of this._channelWaiters.splice(0)) w();
  }

  async _waitChannels(timeoutMs) {
    const deadline = now() + timeoutMs;
    const settled = () => [...this.peers.values()].every((s) => s.open || s.failed || s.closed);
    while (!settled() && now() < deadline) {
      await new Promise((resolve) => {
        const t = setTimeout(resolve, Math.max(0, Math.min(250, deadline - now())));
        this._channelWaiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    for (const st of this.peers.values()) {
      if (!st.open && !st.failed && !st.closed) {
        st.failed = true;
        this._log(`[P2P] DataChannel to player ${st.peer} not open after ${timeoutMs} ms; using the Socket.IO relay`, 'warn');
        this.engine.onConnectionFailed(st.peer, now());
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
    const t0 = now();
    this._settleRttMs = settleRttMs;
    const open = () => [...this.peers.values()].filter((st) => st.open);
    const settled = (st) => st.rtts.length >= 3 && st.rtts.every((r) => r < settleRttMs);
    const done = () => open().every((st) => st.heard && st.heardMe && st.peerSettled && settled(st));
    const deadline = t0 + timeoutMs;
    while (!done() && now() < deadline && !this._destroyed) {
      for (const st of open()) this._sendHello(st);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, 100);
        this._channelWaiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    this._barrierDone = true;
    for (const st of open()) this._sendHello(st);
    this.barrier = {
      ms: Math.round(now() - t0), complete: done(),
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
    new DataView(b.buffer).setFloat64(2, now(), true);
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
      const rtt = now() - new DataView(bytes.buffer, bytes.byteOffset, 9).getFloat64(1, true);
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

  _send(m) {
    if (m.path === 'p2p') {
      if (m.to === -1) {
        for (const st of this.peers.values()) this._sendP2P(st, m.bytes);
      } else {
        const st = this.peers.get(m.to);
        if (st) this._sendP2P(st, m.bytes);
        else this.counters.p2pSendSkipped++;
      }
    } else {
      this.counters.relayEmits++;
      this.socket.emit(m.event, m.data);
    }
  }

  _sendP2P(st, bytes) {
    const dc = st.dc;
    if (!dc || !st.open || dc.readyState !== 'open') { this.counters.p2pSendSkipped++; return; }
    const { latencyMs, lossPct } = this.impairment;
    if (lossPct > 0 && Math.random() * 100 < lossPct) { this.counters.p2pPacketsDroppedByImpair++; return; }
    if (latencyMs > 0) {
      const copy = bytes.slice();
      this.counters.p2pPacketsDelayed++;
      const t = setTimeout(() => {
        this._timers.delete(t);
        if (dc.readyState !== 'open') { this.counters.p2pSendSkipped++; return; }
        try { dc.send(copy); this.counters.p2pPacketsSent++; } catch { this.counters.p2pSendErrors++; }
      }, latencyMs);
      this._timers.add(t);
      return;
    }
    try { dc.send(bytes); this.counters.p2pPacketsSent++; } catch { this.counters.p2pSendErrors++; }
  }

  // ------------------------------------------------------------------------------ receiving

  _relayIn(event, d) {
    if (!this.engine) { if (this._early.length < 1024) this._early.push([event, d]); return; }
    if (!d || typeof d !== 'object') return;
    this.counters.relayMessagesReceived++;
    const from = d.from;
    const t = now();
    let r;
    if (event === 'pyodide_other_player_action') {
      r = Number.isInteger(d.action) && Number.isInteger(d.frame_number)
        ? this.engine.receiveRelayInput(from, d.frame_number, d.action, t, from)
        : this.engine.receiveRelay(event, d, from, t);
    } else if (event === 'p2p_state_sync') {
      r = this.engine.receiveRelayStateSync(d, from, t);
    } else {
      if (d.bytes == null) r = 'BAD_RELAY_JSON';
      else r = this.engine.receive(d.bytes instanceof ArrayBuffer ? new Uint8Array(d.bytes) : d.bytes, from, 'relay', t);
    }
    this.rx[r] = (this.rx[r] || 0) + 1;
  }

  // Workaround: the engine's receiveRelayInput / receiveRelayJson leave the reply header words of
  // the previous receive() untouched, and the wrapper then hands that receive's replies (e.g. a
  // PONG) to onOutgoing again, once per relay message. Those two calls never produce replies, so
  // zeroing the reply count before them is exact. Harmless once the engine resets it itself.

  // ------------------------------------------------------------------------------ the frame

  /**
   * One frame: what the page's step() calls.
   * @param {number} localAction  0..255
   * @param {ArrayLike<number>} [botActions]
   * @returns {Promise<{status:string, frame:number, episodeFrame:number, actions:number[]|null,
   *   predictedMask:number, rollback:{targetFrame:number, loadFrame:number, count:number}|null,
   *   confirmedFrame:number, verifiedFrame:number}>}
   */
  async step(localAction = 0, botActions = null) {
    if (!this.engine) throw new Error('P2PSyncSession.step: not connected');
    if (this._busy) throw new Error('P2PSyncSession.step: previous step still running');
    this._busy = true;
    try {
      return await this._step(localAction, botActions);
    } finally {
      this._busy = false;
    }
  }

  async _step(localAction, botActions) {
    const engine = this.engine;
    const env = this.env;
    const plan = engine.advance(now(), localAction | 0, botActions, this.bufferedAmount());
    this.counters.steps++;

    // 1. outgoing: now, while the views are valid
    for (const m of plan.outgoing) this._send(m);

    // 2. copy everything else out of WASM memory before any await / engine call
    const status = plan.status;
    const frame = plan.frame;
    const episodeStart = plan.episodeStart;
    const actions = status === 'RUN' ? Array.from(plan.actions) : null;
    const saveSnap = status === 'RUN' && plan.saveSnapshot;
    const predictedMask = plan.predictedMask;
    let rb = null;
    if (plan.rollback) {
      const r = plan.rollback;
      rb = { targetFrame: r.targetFrame, loadFrame: r.loadFrame, count: r.count, actions: [], flags: [] };
      for (let i = 0; i < r.count; i++) { rb.actions.push(Array.from(r.actions(i))); rb.flags.push(r.resnapshot(i)); }
    }
    const events = plan.events;
    this.confirmedFrame = plan.confirmedFrame;
    this.verifiedFrame = plan.verifiedFrame;
    if (plan.episode !== this.episode) {
      this.episode = plan.episode;
      this._log2.upTo = Math.max(this._log2.upTo, episodeStart - 1);
    }
    this.episodeStart = episodeStart;
    if (this.episodeFrames > 0 && this.endFrame < 0) this._plannedEnd = episodeStart + this.episodeFrames - 1;

    // 3. rollback + replay through the adapter
    if (rb) {
      this.counters.rollbacks++;
      const text = engine.snapshotText(rb.loadFrame);
      if (text == null) throw new Error(`rollback: no snapshot of frame ${rb.loadFrame}`);
      await env.setState(text);
      // never step past the episode's terminal frame
      const last = this._terminalFrame();
      let n = rb.count;
      if (last >= 0) n = Math.max(0, Math.min(n, last - rb.loadFrame + 1));
      if (typeof env.replay === 'function') {
        let states = env.replay(rb.actions.slice(0, n), rb.flags.slice(0, n));
        if (isThenable(states)) states = await states;
        for (let i = 0; i < n; i++) if (rb.flags[i] && states && states[i] != null) engine.saveSnapshot(rb.loadFrame + i, states[i]);
      } else {
        for (let i = 0; i < n; i++) {
          if (rb.flags[i]) engine.saveSnapshot(rb.loadFrame + i, await env.getState());
          await env.step(rb.actions[i]);
        }
      }
      this.counters.framesReplayed += n;
      // a rollback at or before the terminal frame makes the engine forget the local end: re-report it
      if (this.endFrame >= 0 && rb.targetFrame <= this.endFrame) engine.endEpisode(this.endFrame, now());
    }

    // 4. this frame
    if (status === 'RUN') {
      const last = this._terminalFrame();
      if (last >= 0 && frame > last) {
        // the engine ran past the end (its local end was reset by a rollback): the env stays put
        engine.endEpisode(last, now());
      } else {
        if (saveSnap) engine.saveSnapshot(frame, await env.getState());
        await env.step(actions);
        this.counters.framesStepped++;
        let done = this.episodeFrames > 0 && frame - episodeStart + 1 >= this.episodeFrames;
        if (!done && this.isDone) done = !!(await this.isDone(env));
        if (done && this.endFrame < 0) {
          this.endFrame = frame;
          engine.endEpisode(frame, now());
        }
      }
      if (this.stalled) this.stalled = false;
    } else if (status === 'STALL') {
      this.counters.stalls++;
      this.stalled = true; // the engine emits the 'stall' event on entering a stall
    } else if (status === 'WAIT') {
      this.counters.waits++;
    }
    this.status = status;
    this.frame = engine.frame;

    // 5. the confirmed action log
    this._pullLog(this.confirmedFrame);

    // 6. events
    for (const ev of events) await this._handleEvent(ev);

    return {
      status, frame, episodeFrame: frame - episodeStart, actions, predictedMask,
      rollback: rb ? { targetFrame: rb.targetFrame, loadFrame: rb.loadFrame, count: rb.count } : null,
      confirmedFrame: this.confirmedFrame, verifiedFrame: this.verifiedFrame,
    };
  }

  _terminalFrame() {
    if (this.endFrame >= 0) return this.endFrame;
    return this._plannedEnd ?? -1;
  }

  async _handleEvent(ev) {
    if (this.events.length >= 200) this.events.shift();
    this.events.push(ev);
    switch (ev.type) {
      case 'hashBroadcast': {
        const bucket = Math.floor(ev.frame / this.syncLogEveryFrames);
        if (this.syncLogEveryFrames > 0 && bucket > this._lastSyncLog) {
          this._lastSyncLog = bucket;
          this._log(`[P2P Sync] Player ${ev.player} broadcast at frame ${ev.frame}`);
        }
        break;
      }
      case 'fallback':
        this._log(`[P2P Fallback] P2P to player ${ev.peer} unusable (${ev.reason}) at frame ${ev.frame}` +
          `${ev.latencyMs != null ? `, latency ${Math.round(ev.latencyMs)} ms` : ''}; inputs now go over the Socket.IO relay`, 'warn');
        break;
      case 'recovery':
        this._log(`[P2P Fallback] P2P to player ${ev.peer} recovered at frame ${ev.frame}`);
        break;
      case 'desync':
        this.counters.desyncs++;
        this._log(`[P2P Sync] DESYNC at frame ${ev.frame} with player ${ev.peer}: local ${ev.localHash} remote ${ev.remoteHash}`, 'error');
        break;
      case 'rollback':
        if (this.logRollbacks) {
          this._log(`[P2P] ROLLBACK: player=${ev.playerIndex} frame=${ev.frame} depth=${ev.rollbackFrames} (predicted=${ev.predictedAction} actual=${ev.actualAction})`);
        }
        break;
      case 'error':
        this._log(`[P2P] engine error: ${JSON.stringify(ev)}`, 'error');
        break;
      case 'episodeEnd': {
        this.ended = true;
        try {
          this.finalStateHash = this.engine.hashState(await this.env.getState());
        } catch (e) {
          this.finalStateHash = null;
        }
        let rewards = {};
        try {
          if (typeof this.env.rewards === 'function') {
            rewards = this.env.rewards();
            if (isThenable(rewards)) rewards = await rewards;
          }
        } catch { rewards = {}; }
        this.episodeSummaryLine = this.engine.episodeSummary(rewards);
        this._log(this.episodeSummaryLine);
        ev = { ...ev, summary: this.episodeSummaryLine, finalStateHash: this.finalStateHash };
        break;
      }
      default:
        break;
    }
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

  _pullLog(confirmed) {
    const L = this._log2;
    if (confirmed <= L.upTo) return;
    const n = this.engine.numActors;
    const bytes = this.engine.actionLog(L.upTo + 1, confirmed);
    if (!bytes.length) return;
    const need = (confirmed + 1) * n;
    if (need > L.bytes.length) {
      let cap = L.bytes.length;
      while (cap < need) cap *= 2;
      const b = new Uint8Array(cap);
      b.set(L.bytes);
      L.bytes = b;
    }
    L.bytes.set(bytes, (L.upTo + 1) * n);
    L.upTo += bytes.length / n;
  }

  /** Newest frame of the confirmed action log (all frames up to it are final). */
  get loggedFrame() { return this._log2.upTo; }

  /** Confirmed executed actions of frames [from, to] (clamped to the confirmed log) as Uint8Array. */
  actionLogBytes(from = 0, to = this._log2.upTo) {
    const n = this.engine.numActors;
    to = Math.min(to, this._log2.upTo);
    if (to < from) return new Uint8Array(0);
    return this._log2.bytes.slice(from * n, (to + 1) * n);
  }

  /** Confirmed executed actions of frames [from, to]: one array of actions (players then bots) per frame. */
  actionLog(from = 0, to = this._log2.upTo) {
    const n = this.engine.numActors;
    const b = this.actionLogBytes(from, to);
    const out = [];
    for (let i = 0; i < b.length; i += n) out.push(Array.from(b.subarray(i, i + n)));
    return out;
  }

  /** Same as actionLog, as one hex string (2 hex digits per actor per frame). */
  actionLogHex(from = 0, to = this._log2.upTo) { return toHex(this.actionLogBytes(from, to)); }

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
      impairment: { ...this.impairment },
      channels: [...this.peers.values()].map((s) => ({
        peer: s.peer, state: s.dc ? s.dc.readyState : 'none', everOpened: s.everOpened, failed: s.failed,
        connectionState: s.pc.connectionState, selectedPair: s.pair,
      })),
      connectionType: this.connectionType,
      counters: { ...this.counters },
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

  /** Close every DataChannel (the "Cut P2P" button): the engine falls back to the relay. */
  closeP2P() {
    for (const st of this.peers.values()) {
      if (st.dc && st.dc.readyState !== 'closed') {
        try { st.dc.close(); } catch { /* ignore */ }
      }
      this._channelClosed(st, 'closed locally (Cut P2P)');
    }
  }

  /** Stop timers, close channels and peer connections, detach socket handlers, free the engine. */
  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    clearInterval(this._statsTimer);
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    const s = this.socket;
    s.off('signal', this._onSignal);
    s.off('pyodide_other_player_action', this._onRelayAction);
    s.off('p2p_state_sync', this._onRelayState);
    s.off('p2psync_packet', this._onRelayPacket);
    s.off('peer_left', this._onPeerLeft);
    for (const st of this.peers.values()) {
      st.closed = true;
      try { if (st.dc) st.dc.close(); } catch { /* ignore */ }
      try { st.pc.close(); } catch { /* ignore */ }
    }
    this._wake();
    if (this.engine) { this.engine.delete(); this.engine = null; }
  }
}

export default P2PSyncSession;
