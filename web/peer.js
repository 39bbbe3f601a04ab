// peer.js — one participant's per-frame logic, shared by the browser session (session.js) and the
// simulator (sim_session.js): they differ only in the transport that moves bytes (a real
// RTCDataChannel and Socket.IO socket, or the network simulator) and in the clock.
//
//   const peer = new SessionPeer({ lib, config, env, transport, now });
//   const r = await peer.step(localAction, botActions);   // sync when the env is sync
//   peer.receiveP2P(fromIndex, bytes);  peer.receiveRelay(event, data, fromIndex);
//
// A step: engine.advance(now, action, bots, transport.bufferedAmount()) → send plan.outgoing on
// its path → run the plan against the env (driver.js) → engine events → confirmed action log.
// What a frame does (rollback, replay, snapshots, the episode's end, stalls) is the engine's
// decision; nothing here decides it.
//
// transport: { sendP2P(to, bytes) (to = -1: every peer), emitRelay(event, data, to),
//              bufferedAmount() -> number }
// Events: every engine event goes to onEvent(ev) after the peer's own bookkeeping (counters,
// the final state hash and episode summary on episodeEnd).

import { runPlan } from './driver.js';
import { ResearchData } from './research_data.js';

const isThenable = (v) => v !== null && typeof v === 'object' && typeof v.then === 'function';
/** fn(value), or a Promise of it when value is a Promise. */
const then = (v, fn) => (isThenable(v) ? v.then(fn) : fn(v));

/** Growable byte log of confirmed actions. */
export class ByteLog {
  constructor() { this.buf = new Uint8Array(4096); this.length = 0; }
  append(bytes) {
    if (this.length + bytes.length > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.length + bytes.length) cap *= 2;
      const nb = new Uint8Array(cap);
      nb.set(this.buf.subarray(0, this.length));
      this.buf = nb;
    }
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }
  view(n = this.length) { return this.buf.subarray(0, Math.min(n, this.length)); }
}

export class SessionPeer {
  /**
   * @param {object} o
   * @param {object} o.lib        loaded p2psync module
   * @param {object} o.config     SyncConfig (numPlayers, localPlayerIndex, ...)
   * @param {object} o.env        env adapter (driver.js)
   * @param {object} o.transport  {sendP2P, emitRelay, bufferedAmount}
   * @param {() => number} o.now  clock (ms)
   * @param {(ev: object) => void} [o.onEvent]
   * @param {(msg: string, level?: string) => void} [o.log]
   * @param {object} [o.driver]   runPlan options (onStep, batchReplay)
   * @param {number} [o.syncLogEveryFrames=30]  "[P2P Sync] ... broadcast" log lines at most once per N frames
   * @param {boolean} [o.logRollbacks=false]
   * @param {number} [o.episodes=Infinity]  episodes to play; after each synced end the next one
   *   starts by itself (engine.resetEpisode + env.reset) until this many have ended
   * @param {boolean} [o.autoNextEpisode=true]  false: the page starts each next episode (nextEpisode())
   * @param {(env: object, episode: number) => any} [o.resetEnv]  how to reset the env for an
   *   episode (default env.reset())
   * @param {'episode'|'session'|'none'|number} [o.keepData='episode']  research rows kept in
   *   memory (web/research_data.js)
   * @param {(row: object) => void} [o.onRow]  every research row (one per confirmed frame)
   * @param {number} [o.clockOrigin=0]  ms added to now() for the wall-clock `timestamp` column
   * @param {boolean} [o.rejoin=false]  this page reloaded mid-session: its engine asks a live peer
   *   for the state (plan status JOINING until it is loaded), then goes on in the same episode
   * @param {boolean} [o.shareRowsOnRejoin=true]  when a peer rejoins, send it the research rows
   *   it lost with the state (the transfer's attachment)
   */
  constructor({
    lib, config, env, transport, now, onEvent = null, log = null, driver = {}, syncLogEveryFrames = 30,
    logRollbacks = false, episodes = Infinity, autoNextEpisode = true, resetEnv = null, keepData = 'episode',
    onRow = null, clockOrigin = 0, rejoin = false, shareRowsOnRejoin = true,
  }) {
    this.lib = lib;
    this.env = env;
    this.transport = transport;
    this.now = now;
    this.onEvent = onEvent;
    this.log = log || (() => {});
    this.driverOptions = driver;
    this.episodes = episodes;
    this.autoNextEpisode = autoNextEpisode;
    this.resetEnv = resetEnv || ((e) => (typeof e.reset === 'function' ? e.reset() : undefined));
    this.episodesCompleted = 0;
    this.episodeResults = [];      // per ended episode: {episode, frame, episodeFrame, truncated, finalStateHash, rewards}
    this.finished = false;         // every configured episode has ended
    this.syncLogEveryFrames = syncLogEveryFrames;
    this.logRollbacks = logRollbacks;
    this.shareRowsOnRejoin = shareRowsOnRejoin;
    this.engine = new lib.SyncEngine(rejoin ? { ...config, rejoin: true } : config);
    this.logFrom = 0;                // the first frame of the action log this page confirmed itself
    this.index = config.localPlayerIndex;
    this.numPlayers = config.numPlayers ?? 2;
    this.playerIds = Array.isArray(config.playerIds) ? config.playerIds.slice() : null;
    this.numActors = this.engine.numActors;

    // the last plan, for pages and panels
    this.frame = this.engine.frame;
    this.status = 'INIT';
    this.confirmedFrame = -1;
    this.verifiedFrame = -1;
    this.episode = 0;
    this.episodeStart = 0;
    this.ended = false;
    this.finalStateHash = null;
    this.episodeSummaryLine = null;
    this.stalled = false;

    this.counters = {
      steps: 0, framesStepped: 0, framesReplayed: 0, rollbacks: 0, stalls: 0, waits: 0,
      p2pPacketsSent: 0, p2pSendSkipped: 0, relayEmits: 0, p2pPacketsReceived: 0, relayMessagesReceived: 0,
      desyncs: 0,
    };
    this.rx = Object.create(null);   // `${path}:${ReceiveResult}` -> count
    this.rollbackDepths = [];        // misprediction rollbacks (engine 'rollback' events)
    this.log2 = new ByteLog();       // confirmed action log, from frame 0 of the session
    this.loggedUpTo = -1;
    this.logGap = null;
    this._lastSyncLog = -Infinity;
    this._events = [];
    this._inStep = false;

    this.data = new ResearchData({
      numPlayers: this.numPlayers, numBots: config.numBots ?? 0, playerIds: this.playerIds, keep: keepData, clockOrigin,
    });
    this.onRow = onRow;
    this.engine.onOutgoing = (m) => this._send(m);
    this.engine.onEvent = (ev) => this._events.push(ev);
    this.engine.onRow = (r) => {
      const row = this.data.add(r);
      if (this.onRow) this.onRow(row);
    };
  }

  // ------------------------------------------------------------------------------------ a frame

  /** One tick: what the page's step() calls. Sync when the env is sync, else a Promise. */
  step(localAction = 0, botActions = null) {
    if (this._inStep) throw new Error('SessionPeer.step: the previous step is still running');
    this._inStep = true;
    let plan;
    try {
      plan = this.engine.advance(this.now(), localAction | 0, botActions, this.transport.bufferedAmount());
      this.counters.steps++;
      for (const m of plan.outgoing) this._send(m);
    } catch (e) {
      this._inStep = false;
      throw e;
    }
    const head = {
      status: plan.status, episode: plan.episode, episodeStart: plan.episodeStart,
      rollback: plan.rollback ? { ...plan.rollback } : null, pacingMs: plan.pacingMs, inputDelay: plan.inputDelay,
    };
    let ran;
    try {
      ran = runPlan(this.engine, plan, this.env, this.driverOptions);
    } catch (e) {
      this._inStep = false;
      throw e;
    }
    if (isThenable(ran)) {
      return ran.then((r) => this._afterPlan(head, r), (e) => { this._inStep = false; throw e; });
    }
    return this._afterPlan(head, ran);
  }

  _afterPlan(head, ran) {
    const c = this.counters;
    if (head.rollback) c.rollbacks++;
    c.framesReplayed += ran.replayed;
    c.framesStepped += ran.steps - ran.replayed;
    if (head.status === 'STALL') c.stalls++;
    else if (head.status === 'WAIT') c.waits++;
    this.stalled = head.status === 'STALL';
    this.status = head.status;
    const H = this.engine._H; // re-read after the plan: the steps moved the confirmed frame
    this.frame = this.engine.frame;
    this.confirmedFrame = H[this.lib.layout.plan.words.confirmedFrame];
    this.verifiedFrame = H[this.lib.layout.plan.words.verifiedFrame];
    if (head.episode !== this.episode) {
      this.episode = head.episode;
      this.ended = false;
    }
    this.episodeStart = head.episodeStart;
    this._pullLog();
    const cur = ran.frames.length ? ran.frames[ran.frames.length - 1] : null;
    const result = {
      status: head.status,
      frame: cur ? cur.frame : this.frame,
      episode: head.episode,
      episodeFrame: cur ? cur.episodeFrame : this.frame - head.episodeStart,
      actions: cur ? cur.actions : null,
      predictedMask: cur ? cur.predictedMask : 0,
      stepResult: cur ? cur.result : null,
      frames: ran.frames,
      rollback: head.rollback,
      confirmedFrame: this.confirmedFrame,
      verifiedFrame: this.verifiedFrame,
      // time sync: stretch (> 0) or shrink the interval before the next step by this much
      pacingMs: head.pacingMs,
      inputDelay: head.inputDelay,
    };
    return then(this._drainEvents(), () => {
      this._inStep = false;
      return result;
    });
  }

  // Handles queued engine events in order; the episodeEnd bookkeeping may need the env (async).
  _drainEvents() {
    while (this._events.length) {
      const ev = this._events.shift();
      if (ev.type === 'episodeEnd') {
        return then(this._onEpisodeEnd(ev), (e2) => {
          this._emit(e2);
          const next = !this.finished && this.autoNextEpisode ? this.nextEpisode() : undefined;
          return then(next, () => this._drainEvents());
        });
      }
      this._bookkeep(ev);
      this.data.note(ev);
      this._emit(ev);
    }
    return undefined;
  }

  _onEpisodeEnd(ev) {
    this.ended = true;
    ev = { ...ev, missingPeers: this._missing ?? [] };
    this._missing = null;
    this.data.note(ev);
    const state = this.env.getState();
    return then(state, (s) => {
      try { this.finalStateHash = this.engine.hashState(s); } catch { this.finalStateHash = null; }
      let rewards = {};
      try { rewards = typeof this.env.rewards === 'function' ? this.env.rewards() : {}; } catch { rewards = {}; }
      return then(rewards, (rw) => {
        this.episodeSummaryLine = this.engine.episodeSummary(rw || {});
        this.log(this.episodeSummaryLine);
        this.episodesCompleted++;
        if (this.episodesCompleted >= this.episodes) this.finished = true;
        this.episodeResults.push({
          episode: ev.episode, frame: ev.frame, episodeFrame: ev.episodeFrame, truncated: ev.truncated,
          reason: ev.reason, missingPeers: ev.missingPeers, finalStateHash: this.finalStateHash, rewards: rw,
        });
        return { ...ev, summary: this.episodeSummaryLine, finalStateHash: this.finalStateHash, rewards: rw };
      });
    });
  }

  _bookkeep(ev) {
    switch (ev.type) {
      case 'rollback':
        this.rollbackDepths.push(ev.rollbackFrames);
        if (this.logRollbacks) {
          this.log(`[P2P] ROLLBACK: player=${ev.playerIndex} frame=${ev.frame} depth=${ev.rollbackFrames} (predicted=${ev.predictedAction} actual=${ev.actualAction})`);
        }
        break;
      case 'hashBroadcast': {
        const bucket = this.syncLogEveryFrames > 0 ? Math.floor(ev.frame / this.syncLogEveryFrames) : Infinity;
        if (bucket > this._lastSyncLog) {
          this._lastSyncLog = bucket;
          this.log(`[P2P Sync] Player ${this.index} broadcast at frame ${ev.frame}`);
        }
        break;
      }
      case 'desync':
        this.counters.desyncs++;
        this.log(`[P2P Sync] DESYNC at frame ${ev.frame} with player ${ev.peer}: local ${ev.localHash} remote ${ev.remoteHash}`, 'error');
        break;
      case 'fallback':
        this.log(`[P2P Fallback] P2P to player ${ev.peer} unusable (${ev.reason}) at frame ${ev.frame}` +
          `${ev.latencyMs != null ? `, latency ${Math.round(ev.latencyMs)} ms` : ''}; inputs now go over the Socket.IO relay`, 'warn');
        break;
      case 'recovery':
        this.log(`[P2P Fallback] P2P to player ${ev.peer} recovered at frame ${ev.frame}`);
        break;
      case 'error':
        this.log(`[P2P] engine error: ${JSON.stringify(ev)}`, 'error');
        break;
      case 'stateRequest':
        // A peer (re)joining asks for the state: it gets the research rows it lost with it.
        if (ev.reason === 'rejoin' && this.shareRowsOnRejoin) {
          let text = null;
          try { text = JSON.stringify(this.data.exportForTransfer()); } catch { text = null; }
          this.engine.serveState(ev.peer, text, this.now());
        }
        this.log(`[P2P] player ${ev.peer} asks for the state (${ev.reason})`);
        break;
      case 'stateLoaded':
        if (ev.reason === 'rejoin') {
          // the action log restarts at the loaded frame; the rows before it come from the peer
          this.logFrom = ev.frame;
          this.log2 = new ByteLog();
          this.log2.append(new Uint8Array(ev.frame * this.numActors));
          this.loggedUpTo = ev.frame - 1;
          this.logGap = null;
          this.episode = ev.episode;
          this.episodesCompleted = Math.max(this.episodesCompleted, ev.episode);
          let att = null;
          try {
            const bytes = this.engine.transferAttachment();
            att = bytes.length ? JSON.parse(new TextDecoder().decode(bytes)) : null;
          } catch { att = null; }
          const got = this.data.importTransfer(att, { episode: ev.episode, beforeFrame: ev.frame, fromPeer: ev.peer });
          this.log(`[P2P] rejoined: state of frame ${ev.frame} (episode ${ev.episode}) from player ${ev.peer}; ${got} research rows recovered`);
        } else {
          this.log(`[P2P Sync] RESYNC: loaded player ${ev.peer}'s state of frame ${ev.frame}`, 'warn');
        }
        break;
      case 'rejoin':
      case 'resync':
        if (ev.type === 'rejoin' && ev.peer !== this.index) {
          this.log(`[P2P] player ${ev.peer} rejoined after ${Math.round(ev.downMs)} ms (its last input: frame ${ev.lastInputFrame})`, 'warn');
        }
        break;
      case 'endTimeout': {
        const missing = [];
        for (let p = 0; p < this.numPlayers; p++) if ((ev.peers >> p) & 1) missing.push(p);
        this._missing = missing;
        ev.missingPeers = missing;
        this.log(`[Episode] episode ${ev.episode}: no END from player(s) ${missing.join(', ')} within the end timeout; ending it`, 'warn');
        break;
      }
      default:
        break;
    }
  }

  _emit(ev) {
    if (!this.onEvent) return;
    try {
      this.onEvent(ev);
    } catch (e) {
      this.log(`[P2P] '${ev.type}' listener threw: ${(e && e.stack) || e}`, 'error');
    }
  }

  /** Starts the next episode: the engine's (refused until the end is synced) and the env's. */
  nextEpisode(options = {}) {
    if (this.finished) throw new Error('SessionPeer.nextEpisode: every episode has ended');
    this.engine.resetEpisode(options);
    this.frame = this.engine.frame;
    this.episode = this.engine._plan.episode;
    this.episodeStart = this.engine._plan.episodeStart;
    this.ended = false;
    return this.resetEnv(this.env, this.episode);
  }

  /** The local page's focus (wire it to visibilitychange): FOCUS_STATE goes to every peer at once. */
  setFocus(focused) {
    if (!this.engine) return;
    this.engine.setFocus(!!focused, this.now());
    if (!this._inStep) this._drainEvents();
  }

  /** Exports of the research data (web/research_data.js). Default: the newest kept episode. */
  exportEpisodeData({ episode, format = 'csv' } = {}) {
    const kept = this.data.keptEpisodes;
    const e = episode ?? (kept.length ? kept[kept.length - 1] : this.episode);
    return this.data.exportEpisode(e, { format });
  }
  exportSessionData({ format = 'csv' } = {}) { return this.data.exportSession({ format }); }

  /** Handles engine events produced while not stepping (e.g. on receive). */
  poll() {
    if (this._inStep || !this.engine) return undefined;
    return this._drainEvents();
  }

  // ------------------------------------------------------------------------------------ sending

  _send(m) {
    if (m.path === 'p2p') {
      if (this.transport.sendP2P(m.to, m.bytes) === false) this.counters.p2pSendSkipped++;
      else this.counters.p2pPacketsSent++;
    } else {
      this.counters.relayEmits++;
      this.transport.emitRelay(m.event, m.data, m.to);
    }
  }

  // ------------------------------------------------------------------------------------ receiving

  _count(key, r) {
    const k = `${key}:${r}`;
    this.rx[k] = (this.rx[k] || 0) + 1;
    return r;
  }

  /** A binary packet from player `from` on the DataChannel. */
  receiveP2P(from, bytes) {
    this.counters.p2pPacketsReceived++;
    const r = this._count('p2p', this.engine.receive(bytes, from, 'p2p', this.now()));
    if (!this._inStep) this._drainEvents();
    return r;
  }

  /** Index of a relay player id (as config.playerIds, or the index itself), or -1. */
  indexOf(playerId) {
    if (this.playerIds) {
      const i = this.playerIds.findIndex((x) => x === playerId);
      if (i >= 0) return i;
      return this.playerIds.findIndex((x) => String(x) === String(playerId));
    }
    const n = typeof playerId === 'string' && /^\d+$/.test(playerId) ? Number(playerId) : playerId;
    return Number.isInteger(n) && n >= 0 && n < this.numPlayers ? n : -1;
  }

  /**
   * A relay event as the server delivers it, from player index `from` (the server-set sender; -1
   * or undefined when the server sets none, as mug's does: then the payload's player id names it).
   * Events: pyodide_other_player_action (or pyodide_player_action), p2p_state_sync, p2psync_packet.
   */
  receiveRelay(event, data, from = -1) {
    if (!data || typeof data !== 'object') return this._count(event, 'BAD_RELAY_JSON');
    this.counters.relayMessagesReceived++;
    const t = this.now();
    const sender = Number.isInteger(from) && from >= 0 ? from : -1;
    let r;
    if (event === 'pyodide_other_player_action' || event === 'pyodide_player_action') {
      const idx = this.indexOf(data.player_id);
      r = Number.isInteger(data.action) && Number.isInteger(data.frame_number) && idx >= 0 && data.focused === undefined // the JSON path keeps `focused`
        ? this.engine.receiveRelayInput(idx, data.frame_number, data.action, t, sender)
        : this.engine.receiveRelay('pyodide_other_player_action', data, sender, t);
    } else if (event === 'p2p_state_sync') {
      const idx = sender >= 0 ? sender : this.indexOf(data.sender_id);
      r = this.engine.receiveRelayStateSync(data, idx, t);
    } else if (event === 'p2psync_packet') {
      if (data.bytes == null || sender < 0) r = 'BAD_RELAY_JSON';
      else r = this.engine.receive(data.bytes instanceof ArrayBuffer ? new Uint8Array(data.bytes) : data.bytes, sender, 'relay', t);
    } else {
      r = 'UNKNOWN_EVENT';
    }
    this._count(event, r);
    if (!this._inStep) this._drainEvents();
    return r;
  }

  // ------------------------------------------------------------------------------------ action log

  _pullLog() {
    const n = this.numActors;
    while (!this.logGap && this.confirmedFrame > this.loggedUpTo) {
      const from = this.loggedUpTo + 1;
      if (from < this.episodeStart) {
        // the frames between two episodes are never simulated: zeros keep the log indexed by frame
        const to = Math.min(this.episodeStart - 1, this.confirmedFrame);
        this.log2.append(new Uint8Array((to - from + 1) * n));
        this.loggedUpTo = to;
        continue;
      }
      const bytes = this.engine.actionLog(from, this.confirmedFrame);
      const got = bytes.length / n;
      if (got > 0) {
        this.log2.append(bytes);
        this.loggedUpTo = from + got - 1;
      }
      if (got < this.confirmedFrame - from + 1) this.logGap = { from: from + got, confirmedFrame: this.confirmedFrame };
      break;
    }
  }

  /** Confirmed executed actions of frames [from, to] as bytes (numActors per frame). */
  actionLogBytes(from = 0, to = this.loggedUpTo) {
    const n = this.numActors;
    to = Math.min(to, this.loggedUpTo);
    if (to < from) return new Uint8Array(0);
    return this.log2.buf.slice(from * n, (to + 1) * n);
  }

  destroy() {
    if (this.engine) { this.engine.delete(); this.engine = null; }
  }
}

export default SessionPeer;
