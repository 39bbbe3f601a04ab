// transport_p2psync.js — the session's signaling and relay over p2psync's own server protocol
// (web/server.mjs): join/joined/room_ready, signal {to, data} → {from, data}, the relays with the
// server-set `from` (pyodide_player_action → pyodide_other_player_action, p2p_state_sync,
// p2psync_packet), peer_left / peer_rejoined, reconnect tokens.
//
// A transport (see also transport_mug.js) is what P2PSyncSession needs from a server:
//   join({room, players, timeoutMs}) → Promise<{playerIndex, numPlayers, room, playerIds?, gameId?,
//        rtcConfig?, token?, rejoined?}>    pairing; resolves once the room is full (a rejoin, which
//                                         reclaims a seat of a started room: at once); a rejected
//                                         join throws an Error whose `code` is the server's reason
//   token                                (this transport) the reconnect token sent with the next join
//   sendSignal(toIndex, data)            data: {type: 'offer'|'answer'|'candidate', sdp?, candidate?}
//   emitRelay(event, data, to)           an engine relay message (web/p2psync.js outgoing, path 'relay')
//   on(handlers)                         {signal(fromIndex, data), relay(event, data, fromIndex),
//                                         peerLeft(index, reason), peerRejoined(index, id, session),
//                                         joined({room, playerIndex, players, token, rejoined?}),
//                                         seatReclaimed({room, playerIndex})}
//   close()                              detaches from the socket

const onceSocket = (clock, socket, event, ms, what) => new Promise((resolve, reject) => {
  const t = clock.setTimeout(() => { socket.off(event, h); reject(new Error(`timed out waiting for ${what || event}`)); }, ms);
  const h = (v) => { clock.clearTimeout(t); resolve(v); };
  socket.once(event, h);
});

export class P2PSyncServerTransport {
  /**
   * @param {any} socket  a Socket.IO client socket (connected or connecting)
   * @param {object} [o]
   * @param {object} [o.clock]   {setTimeout, clearTimeout} (tests: virtual time)
   * @param {(msg: string, level?: string) => void} [o.log]
   * @param {string} [o.token]   a reconnect token from an earlier join: reclaims that seat
   */
  constructor(socket, { clock = globalThis, log = () => {}, token = null } = {}) {
    if (!socket) throw new TypeError('P2PSyncServerTransport: socket is required');
    this.socket = socket;
    this.clock = clock;
    this.log = log;
    this.token = token;
    this.kind = 'p2psync';
    this._h = {};
    this._listeners = [];
    /** the page's nonce, sent with every join (the server forwards it in peer_rejoined) */
    this.session = null;
    this._joined = null;   // {room, players} once joined: a Socket.IO reconnect joins again
    this._lost = false;    // the socket dropped after the join
    this.socketRejoins = 0;
  }

  /** Which server this socket talks to (the Socket.IO manager's URI and namespace): part of the
   * key a session stores its reconnect token under. '' when the socket does not say. */
  get serverKey() {
    const uri = this.socket.io && typeof this.socket.io.uri === 'string' ? this.socket.io.uri : '';
    const nsp = typeof this.socket.nsp === 'string' && this.socket.nsp !== '/' ? this.socket.nsp : '';
    return uri + nsp;
  }

  _listen(event, fn) {
    this.socket.on(event, fn);
    this._listeners.push([event, fn]);
  }

  on(handlers) {
    this._h = handlers;
    this._listen('signal', (m) => {
      if (m && Number.isInteger(m.from) && m.data) this._h.signal?.(m.from, m.data);
    });
    const relay = (event) => (d) => {
      if (d && typeof d === 'object') this._h.relay?.(event, d, Number.isInteger(d.from) ? d.from : -1);
    };
    for (const ev of ['pyodide_other_player_action', 'p2p_state_sync', 'p2psync_packet']) this._listen(ev, relay(ev));
    this._listen('peer_left', (d) => this._h.peerLeft?.(d && d.playerIndex, d && d.reason));
    this._listen('peer_rejoined', (d) => this._h.peerRejoined?.(d && d.playerIndex, d && d.id, d && typeof d.session === 'string' ? d.session : null));
    // every `joined` carries a new single-use reconnect token
    this._listen('joined', (d) => {
      if (!d || typeof d.token !== 'string') return;
      this.token = d.token;
      this._h.joined?.(d);
    });
    // another connection (a reloaded or duplicated tab) took this seat with its token; the server
    // closes this connection
    this._listen('seat_reclaimed', (d) => this._h.seatReclaimed?.(d || {}));
    // The Socket.IO connection dropped and came back (a frozen tab, a network blip): the server
    // sees a new connection, not in any room, and holds the seat for its token. Join again with
    // the token (and the same page nonce: the others keep their DataChannels to this page).
    this._listen('disconnect', (reason) => {
      if (!this._joined || this._lost) return;
      this._lost = true;
      this.log(`[P2P] Socket.IO connection lost (${reason}); the seat is held for this page's token`, 'warn');
    });
    this._listen('connect', () => {
      if (!this._joined || !this._lost) return;
      this._lost = false;
      this._rejoinSocket();
    });
  }

  _joinPayload(room, players) {
    const payload = { players };
    if (room) payload.room = room;
    if (this.token) payload.token = this.token;
    if (this.session) payload.session = this.session;
    return payload;
  }

  _rejoinSocket() {
    const { room, players } = this._joined;
    if (!this.token) { this.log('[P2P] Socket.IO reconnected, but there is no reconnect token: the relay stays down', 'error'); return; }
    this.socket.emit('join', this._joinPayload(room, players), (res) => {
      if (res && res.ok) {
        this.token = res.token ?? this.token;
        this.socketRejoins++;
        this.log(`[P2P] Socket.IO reconnected: back in ${res.room} as player ${res.playerIndex}`);
        this._h.socketRejoined?.(res);
      } else {
        this.log(`[P2P] Socket.IO reconnected, but the seat was not given back (${res && res.error}): the relay stays down`, 'error');
        this._h.socketRejoinFailed?.(res && res.error);
      }
    });
  }

  async join({ room, players = 2, timeoutMs = 60000 } = {}) {
    const socket = this.socket;
    if (!socket.connected) await onceSocket(this.clock, socket, 'connect', 15000, 'the Socket.IO connection');
    const ready = onceSocket(this.clock, socket, 'room_ready', timeoutMs, 'the room to fill');
    ready.catch(() => {});
    const payload = this._joinPayload(room, players);
    const res = await new Promise((resolve, reject) => {
      const t = this.clock.setTimeout(() => reject(new Error('join: no answer')), 10000);
      socket.emit('join', payload, (r) => { this.clock.clearTimeout(t); resolve(r); });
    });
    if (!res || !res.ok) {
      const e = new Error(`join rejected: ${JSON.stringify(res)}`);
      e.code = (res && res.error) || 'no_answer';
      throw e;
    }
    this.token = res.token ?? this.token;
    this._joined = { room: res.room, players: res.players };
    // a reclaimed seat joins a room that is already full: room_ready will not come again
    const info = res.rejoined ? null : await ready;
    return { playerIndex: res.playerIndex, numPlayers: res.players, room: res.room, token: this.token, rejoined: !!res.rejoined, ready: info };
  }

  sendSignal(to, data) {
    this.socket.emit('signal', { to, data }, (res) => {
      if (!res || !res.ok) this.log(`[P2P] signal to ${to} rejected: ${JSON.stringify(res)}`, 'warn');
    });
  }

  emitRelay(event, data) {
    this.socket.emit(event, data);
  }

  close() {
    for (const [ev, fn] of this._listeners) this.socket.off(ev, fn);
    this._listeners = [];
  }
}

export default P2PSyncServerTransport;
