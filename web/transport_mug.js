// transport_mug.js — the session's signaling and relay over mug's server protocol, as mug's
// Flask-SocketIO server (github chasemcd/mug: mug/server/app.py, pyodide_game_coordinator.py)
// speaks it today, unchanged. The transport interface is described in transport_p2psync.js.
//
//   const transport = new MugTransport(window.socket);   // early: at scene activation
//   // ... mug's page emits join_game; the server pairs the players ...
//   const session = await P2PSyncSession.connect({ lib, transport, env, config });
//
// What it maps (mug event → session):
//   pyodide_player_assigned {player_id, game_id, game_seed, num_players}   this player's id, the game
//   pyodide_game_ready {game_id, players, player_subjects, turn_config, scene_metadata}
//       → join() resolves: numPlayers = players.length; engine player index = position of the id in
//         players.slice().sort() (JS default sort, i.e. on the ids' string forms): the same index
//         mug's binary protocol puts in its INPUT packets (playerIdToIndex). config.playerIds = that
//         sorted list, every id with its JSON type (0 stays a number, "agent_left" a string), so
//         every relayed player_id / sender_id is exactly what mug's server has as a key.
//         turn_config {username, credential, force_relay} → rtcConfig (TURN URLs: options.turnUrls,
//         default mug's; force_relay → iceTransportPolicy 'relay').
//   webrtc_signal {game_id, target_player_id, type, payload} ⇄ {type, from_player_id, game_id, payload}
//       type 'offer' / 'answer' (payload {type, sdp}), 'ice-candidate' (payload RTCIceCandidateInit;
//       the end-of-candidates null is not sent, as mug does not). The server derives from_player_id
//       from the sending socket, so it is the only sender identity mug's server vouches for.
//   pyodide_player_action {game_id, player_id, action, frame_number, timestamp}
//       → pyodide_other_player_action {player_id, action, frame_number, timestamp (server seconds)}.
//       The server keeps only these four fields, so the engine's optional `"focused": false` travels
//       inside `action`: action + 256 (actions are 0..255, see below), decoded back here.
//   p2p_state_sync {game_id, sender_id, frame_number, state_hash, action_counts}: forwarded unchanged.
//   p2psync_packet {to, bytes} (the engine's binary control packets on the relay: EPISODE_END/READY,
//       FOCUS_STATE, INPUT_REQUEST/RESPONSE, STATE_HASH...): mug's server drops unknown events, so they
//       ride inside webrtc_signal with type 'p2psync' and the bytes as the (binary) payload: mug's
//       server relays any type to the target, untouched, with the server-set from_player_id.
//   p2p_game_ended {game_id, reason, disconnected_player_id} → peerLeft(index, reason).
// Nothing else is sent to the server. Actions: mug's P2P codec carries one byte per action and so
// does p2psync; an action outside 0..255 is refused where it enters (web/mug/adapter.js), never
// truncated.

/** mug's four TURN URLs (webrtc_manager.js): used with turn_config's username/credential. */
export const MUG_TURN_URLS = Object.freeze([
  'turn:a.relay.metered.ca:80',
  'turn:a.relay.metered.ca:80?transport=tcp',
  'turn:a.relay.metered.ca:443',
  'turns:a.relay.metered.ca:443?transport=tcp',
]);

/** The webrtc_signal type that carries p2psync's binary control packets. */
export const PACKET_SIGNAL_TYPE = 'p2psync';
/** Added to a relayed action when the sender's page was hidden as it chose it (the focus bit). */
export const UNFOCUSED_ACTION_OFFSET = 256;

/** The engine player index order mug uses for its binary protocol: JS default sort of the ids. */
export function mugSortedIds(players) {
  return players.slice().sort();
}

/** Whether two mug player ids name the same player (mug's server tries the value, then str/int). */
export function sameId(a, b) {
  return a === b || String(a) === String(b);
}

/** An RTCConfiguration from mug's turn_config ({username, credential, force_relay} or null). */
export function rtcConfigFromTurn(turnConfig, { turnUrls = MUG_TURN_URLS, iceServers = [] } = {}) {
  if (!turnConfig || !turnConfig.username || !turnConfig.credential) return null;
  return {
    iceServers: [
      ...iceServers,
      ...turnUrls.map((urls) => ({ urls, username: turnConfig.username, credential: turnConfig.credential })),
    ],
    iceTransportPolicy: turnConfig.force_relay ? 'relay' : 'all',
  };
}

export class MugTransport {
  /**
   * Starts listening at once: create it before mug's page emits join_game (the assignment may
   * arrive before P2PSyncSession.connect() is called; it is kept).
   * @param {any} socket  mug's Socket.IO client socket (window.socket)
   * @param {object} [o]
   * @param {object} [o.clock]  {setTimeout, clearTimeout}
   * @param {(msg: string, level?: string) => void} [o.log]
   * @param {string[]} [o.turnUrls]  TURN URLs used with turn_config's credentials (default mug's)
   * @param {RTCIceServer[]} [o.iceServers]  extra ICE servers put before the TURN servers
   */
  constructor(socket, { clock = globalThis, log = () => {}, turnUrls = MUG_TURN_URLS, iceServers = [] } = {}) {
    if (!socket) throw new TypeError('MugTransport: socket is required');
    this.socket = socket;
    this.clock = clock;
    this.log = log;
    this.turnUrls = turnUrls;
    this.iceServers = iceServers;
    this.kind = 'mug';
    this.assigned = null;       // pyodide_player_assigned payload
    this.ready = null;          // pyodide_game_ready payload (of our game)
    this.started = null;        // start_game payload
    this.ids = null;            // engine index -> mug player id (sorted)
    this.index = -1;
    this.counters = { relayIn: 0, relayOut: 0, packetsIn: 0, packetsOut: 0, signalsIn: 0, signalsOut: 0, ignored: 0 };
    this._h = {};
    this._listeners = [];
    this._waiters = [];
    this._closed = false;
    this._early = [];           // game events that came before the game was known
    this._listen('pyodide_player_assigned', (d) => this._onAssigned(d));
    this._listen('pyodide_game_ready', (d) => this._onReady(d));
    this._listen('start_game', (d) => { if (d && this.assigned && d.game_id === this.assigned.game_id) this.started = d; });
    this._listen('webrtc_signal', (d) => this._game(d, () => this._onSignal(d)));
    this._listen('pyodide_other_player_action', (d) => this._game(d, () => this._onAction(d), false));
    this._listen('p2p_state_sync', (d) => this._game(d, () => this._onStateSync(d)));
    this._listen('p2p_game_ended', (d) => this._game(d, () => this._onGameEnded(d)));
  }

  _listen(event, fn) {
    this.socket.on(event, fn);
    this._listeners.push([event, fn]);
  }

  /** Runs fn for an event of our game (held until the game is known; pyodide_other_player_action
   * carries no game_id: it is taken as ours once we are in one). */
  _game(d, fn, hasGameId = true) {
    if (!d || typeof d !== 'object' || this._closed) return;
    if (!this.ids) {
      if (this._early.length < 1024) this._early.push([d, fn, hasGameId]);
      return;
    }
    if (hasGameId && d.game_id !== this.ready.game_id) { this.counters.ignored++; return; }
    fn();
  }

  _onAssigned(d) {
    if (!d || typeof d !== 'object' || d.player_id === undefined || d.player_id === null || typeof d.game_id !== 'string') return;
    this.assigned = d;
    this.ready = null;
    this.ids = null;
    this._early.length = 0;
  }

  _onReady(d) {
    if (!d || !this.assigned || d.game_id !== this.assigned.game_id || !Array.isArray(d.players)) return;
    const ids = mugSortedIds(d.players);
    const me = this.assigned.player_id;
    const index = ids.findIndex((x) => x === me);
    if (index < 0) {
      this.log(`[mug] pyodide_game_ready: my id ${JSON.stringify(me)} is not in players ${JSON.stringify(d.players)}`, 'error');
      return;
    }
    this.ready = d;
    this.ids = ids;
    this.index = index;
    for (const w of this._waiters.splice(0)) w();
    for (const [ev, fn, hasGameId] of this._early.splice(0)) this._game(ev, fn, hasGameId);
  }

  /** Engine index of a mug player id (exact value first, then its string form), or -1. */
  indexOf(id) {
    if (!this.ids) return -1;
    const i = this.ids.findIndex((x) => x === id);
    return i >= 0 ? i : this.ids.findIndex((x) => String(x) === String(id));
  }

  on(handlers) {
    this._h = handlers;
  }

  /**
   * Resolves once mug's server has paired this player (pyodide_player_assigned, then
   * pyodide_game_ready for that game). mug's server decides the room and its size: `room` is
   * ignored, `players` is checked against the game's.
   */
  async join({ players, timeoutMs = 60000 } = {}) {
    if (!this.ids) {
      await new Promise((resolve, reject) => {
        const t = this.clock.setTimeout(() => {
          this._waiters = this._waiters.filter((w) => w !== done);
          reject(new Error(`mug: no pyodide_game_ready within ${timeoutMs} ms (${this.assigned ? `assigned ${JSON.stringify(this.assigned.player_id)} in game ${this.assigned.game_id}` : 'no pyodide_player_assigned'})`));
        }, timeoutMs);
        const done = () => { this.clock.clearTimeout(t); resolve(); };
        this._waiters.push(done);
      });
    }
    const n = this.ids.length;
    if (players !== undefined && players !== null && players !== n) {
      this.log(`[mug] the game has ${n} players (mug's scene decides), not ${players}`, 'warn');
    }
    const a = this.assigned, r = this.ready;
    return {
      playerIndex: this.index,
      numPlayers: n,
      room: r.game_id,
      gameId: r.game_id,
      playerIds: this.ids.slice(),
      rtcConfig: rtcConfigFromTurn(r.turn_config, { turnUrls: this.turnUrls, iceServers: this.iceServers }),
      ready: r,
      mug: {
        myPlayerId: a.player_id,
        gameId: r.game_id,
        gameSeed: a.game_seed,
        numPlayers: a.num_players,
        players: r.players.slice(),
        playerSubjects: r.player_subjects ?? null,
        sceneMetadata: r.scene_metadata ?? null,
        turnConfig: r.turn_config ?? null,
      },
    };
  }

  // ---------------------------------------------------------------------------- out

  _emitSignal(toIndex, type, payload) {
    const target = this.ids && this.ids[toIndex];
    if (target === undefined || toIndex === this.index) return false;
    this.socket.emit('webrtc_signal', { game_id: this.ready.game_id, target_player_id: target, type, payload });
    return true;
  }

  sendSignal(to, data) {
    if (!this.ids || !data) return;
    let ok = false;
    if (data.type === 'offer' || data.type === 'answer') {
      ok = this._emitSignal(to, data.type, { type: data.type, sdp: data.sdp });
    } else if (data.type === 'candidate') {
      if (!data.candidate) return; // end of candidates: mug never sends it
      ok = this._emitSignal(to, 'ice-candidate', data.candidate);
    }
    if (ok) this.counters.signalsOut++;
  }

  emitRelay(event, data, to = -1) {
    if (!this.ids || !data) return;
    if (event === 'pyodide_player_action') {
      const action = data.focused === false ? data.action + UNFOCUSED_ACTION_OFFSET : data.action;
      this.socket.emit('pyodide_player_action', {
        game_id: this.ready.game_id, player_id: data.player_id, action, frame_number: data.frame_number, timestamp: data.timestamp,
      });
      this.counters.relayOut++;
    } else if (event === 'p2p_state_sync') {
      this.socket.emit('p2p_state_sync', data);
      this.counters.relayOut++;
    } else if (event === 'p2psync_packet') {
      const target = Number.isInteger(data.to) ? data.to : to;
      for (let p = 0; p < this.ids.length; p++) {
        if (p === this.index || (target >= 0 && p !== target)) continue;
        if (this._emitSignal(p, PACKET_SIGNAL_TYPE, data.bytes)) this.counters.packetsOut++;
      }
    } else {
      this.log(`[mug] relay event ${event} has no mug equivalent: not sent`, 'warn');
    }
  }

  // ---------------------------------------------------------------------------- in

  _onSignal(d) {
    const from = this.indexOf(d.from_player_id);
    if (from < 0 || from === this.index) { this.counters.ignored++; return; }
    const p = d.payload;
    if (d.type === 'offer' || d.type === 'answer') {
      if (!p || typeof p.sdp !== 'string') { this.counters.ignored++; return; }
      this.counters.signalsIn++;
      this._h.signal?.(from, { type: d.type, sdp: p.sdp });
    } else if (d.type === 'ice-candidate') {
      if (!p || typeof p !== 'object') { this.counters.ignored++; return; }
      this.counters.signalsIn++;
      this._h.signal?.(from, { type: 'candidate', candidate: p });
    } else if (d.type === PACKET_SIGNAL_TYPE) {
      if (p == null || typeof p !== 'object') { this.counters.ignored++; return; }
      this.counters.packetsIn++;
      this._h.relay?.('p2psync_packet', { bytes: p }, from);
    } else {
      this.counters.ignored++;
    }
  }

  _onAction(d) {
    // mug's server relays the sender's own player_id (it sets no `from`): the session maps it
    const from = this.indexOf(d.player_id);
    if (from < 0 || from === this.index) { this.counters.ignored++; return; }
    const out = { player_id: d.player_id, action: d.action, frame_number: d.frame_number, timestamp: d.timestamp };
    if (Number.isInteger(d.action) && d.action >= UNFOCUSED_ACTION_OFFSET && d.action < 2 * UNFOCUSED_ACTION_OFFSET) {
      out.action = d.action - UNFOCUSED_ACTION_OFFSET;
      out.focused = false;
    }
    this.counters.relayIn++;
    this._h.relay?.('pyodide_other_player_action', out, -1);
  }

  _onStateSync(d) {
    const from = this.indexOf(d.sender_id);
    if (from < 0 || from === this.index) { this.counters.ignored++; return; }
    this.counters.relayIn++;
    this._h.relay?.('p2p_state_sync', d, -1);
  }

  _onGameEnded(d) {
    const i = this.indexOf(d.disconnected_player_id);
    this._h.peerLeft?.(i, d.reason ?? 'p2p_game_ended');
  }

  close() {
    this._closed = true;
    for (const [ev, fn] of this._listeners) this.socket.off(ev, fn);
    this._listeners = [];
    this._waiters.length = 0;
  }
}

export default MugTransport;
