// TypeScript declarations for web/session.js (P2PSyncSession: the glue a page uses), web/peer.js
// (SessionPeer: one participant's per-frame logic) and web/research_data.js.
import type { P2PSyncLib, SyncConfig, SyncEngine, EngineEvent, P2PMetrics, PlanStatus } from './p2psync.js';
import type { EnvAdapter, StepResult } from './driver.js';

/**
 * Lifecycle of a session (`session.state`):
 *
 * | state        | what runs                                                       | leaves when                                   | to          |
 * |--------------|-----------------------------------------------------------------|-----------------------------------------------|-------------|
 * | `connecting` | connect(): join the room, open DataChannels, start barrier      | connect() resolves                            | `playing`   |
 * | `playing`    | step() runs frames (plan RUN / STALL / WAIT)                     | a step ends the episode (env or maxEpisodeFrames) | `ending` |
 * | `ending`     | step() runs no frame (plan ENDED): the end is confirmed and agreed | `episodeEnd` (every peer's END, or the end timeout) | `playing` (next episode) or `finished` |
 * | `finished`   | every configured episode ended; END/READY still answered on receive | finish() lingers, or destroy()              | `closed`    |
 * | `closed`     | nothing: channels closed, engine freed; data and counters stay readable | —                                      | —           |
 *
 * After `episodeEnd`, with `autoNextEpisode` (the default) the session starts the next episode
 * itself (engine.resetEpisode + env.reset), until `episodes` have ended; with
 * `autoNextEpisode: false` the page calls `nextEpisode()`. A new episode's first frames wait
 * (STALL 'waiting-ready') for every peer's READY of that episode.
 */
export type SessionState = 'connecting' | 'playing' | 'ending' | 'finished' | 'closed';

/** One research row (web/research_data.js): columns keyed by name. */
export type DataRow = Record<string, number | boolean>;

export interface StepOutcome {
  status: PlanStatus;
  /** the newest new frame stepped (or the next frame when none was) */
  frame: number;
  episode: number;
  episodeFrame: number;
  /** its actions (players then bots), null when no new frame was stepped */
  actions: number[] | null;
  predictedMask: number;
  stepResult: StepResult | null;
  /** every new frame stepped this tick (several while catching up) */
  frames: { frame: number; episodeFrame: number; actions: number[]; predictedMask: number; result: StepResult }[];
  rollback: { targetFrame: number; loadFrame: number; count: number } | null;
  confirmedFrame: number;
  verifiedFrame: number;
  /** time sync's pacing hint: stretch (> 0) or shrink (< 0) of the page's next frame interval,
   * in ms (at most 10% of a frame); web/frame_loop.js applies it */
  pacingMs: number;
  /** the episode's input delay (frames) */
  inputDelay: number;
}

export interface EpisodeResult {
  episode: number;
  /** session-wide frame of the episode's last frame, and its episode frame */
  frame: number;
  episodeFrame: number;
  truncated: boolean;
  /** 'synced' (every peer's END) or 'endTimeout' (missingPeers never confirmed it) */
  reason: 'synced' | 'endTimeout';
  missingPeers: number[];
  finalStateHash: string | null;
  rewards: object;
}

/** What P2PSyncSession needs from a server (web/transport_p2psync.js: p2psync's own server;
 * web/transport_mug.js: mug's). */
export interface SessionTransport {
  /** A rejected join throws an Error whose `code` is the server's reason (e.g. 'bad_token'). */
  join(o: { room?: string; players?: number; timeoutMs?: number }): Promise<{
    playerIndex: number; numPlayers: number; room: string; playerIds?: (string | number)[]; gameId?: string;
    rtcConfig?: RTCConfiguration | null;
    /** the reconnect token of this seat (p2psync's server), and whether the join reclaimed a seat */
    token?: string; rejoined?: boolean; [k: string]: any;
  }>;
  /** (transports with reconnect tokens) the token the next join sends */
  token?: string | null;
  /** (transports with reconnect tokens) the page nonce sent with every join */
  session?: string | null;
  /** (optional) which server: part of the key the token is stored under */
  readonly serverKey?: string;
  sendSignal(toIndex: number, data: { type: 'offer' | 'answer' | 'candidate'; sdp?: string; candidate?: any }): void;
  emitRelay(event: string, data: any, to?: number): void;
  on(handlers: {
    signal?(fromIndex: number, data: any): void;
    relay?(event: string, data: any, fromIndex: number): void;
    peerLeft?(index: number, reason: string): void;
    peerRejoined?(index: number, id?: string, session?: string | null): void;
    socketRejoined?(d: { room: string; playerIndex: number; token?: string }): void;
    socketRejoinFailed?(error?: string): void;
    joined?(d: { room: string; playerIndex: number; players: number; token: string; rejoined?: boolean }): void;
    seatReclaimed?(d: { room?: string; playerIndex?: number }): void;
  }): void;
  close(): void;
}

export interface ConnectOptions {
  lib: P2PSyncLib;
  /** a Socket.IO client socket speaking p2psync's server protocol ... */
  socket?: any;
  /** ... or a transport (e.g. new MugTransport(window.socket) for mug's server) */
  transport?: SessionTransport;
  env: EnvAdapter;
  room?: string;
  players?: number;
  config?: Partial<SyncConfig>;
  /** truncate each episode after this many frames (config.maxEpisodeFrames) */
  episodeFrames?: number;
  /** asked after every env step (replays included): true ends the episode there */
  isDone?: (env: any) => boolean | Promise<boolean>;
  /** episodes to play (default Infinity) */
  episodes?: number;
  /** start each next episode by itself (default true) */
  autoNextEpisode?: boolean;
  /** how to reset the env for a new episode (default env.reset()) */
  resetEnv?: (env: any, episode: number) => any;
  /** research rows kept in memory: 'episode' (current + previous, default), 'session', 'none', or N episodes */
  keepData?: 'episode' | 'session' | 'none' | number;
  /** wire document visibilitychange to setFocus (default true) */
  trackVisibility?: boolean;
  connectTimeoutMs?: number;
  barrierTimeoutMs?: number;
  settleRttMs?: number;
  joinTimeoutMs?: number;
  iceServers?: RTCIceServer[];
  /** a full RTCConfiguration (TURN servers, iceTransportPolicy, ...); default the transport's
   * (mug's turn_config), else {iceServers} */
  rtcConfig?: RTCConfiguration;
  /** ICE 'disconnected' this long → an ICE restart ('failed': at once); later ones back off (default 2000) */
  iceRestartGraceMs?: number;
  /** ICE restarts per outage (default 10) */
  maxIceRestarts?: number;
  statsIntervalMs?: number;
  log?: (msg: string, level?: 'log' | 'warn' | 'error') => void;
  syncLogEveryFrames?: number;
  logRollbacks?: boolean;
  /** where the reconnect token is kept across page loads, keyed by server and room (default: the
   * tab's sessionStorage, else an in-memory Map for this session only); false: never rejoin */
  tokenStore?: TokenStore | false;
  /** tests: a clock ({now, setTimeout, clearTimeout, setInterval, clearInterval}) and an RTCPeerConnection class */
  clock?: any;
  RTCPeerConnection?: any;
}

/** A key-value store for reconnect tokens (a Map fits; the default wraps sessionStorage). */
export interface TokenStore {
  get(key: string): string | null | undefined;
  set(key: string, value: string): void;
  delete(key: string): void;
}

/** The default token store: the tab's sessionStorage, else a new in-memory Map. */
export declare function defaultTokenStore(): TokenStore;

/**
 * Events (CustomEvent, detail = the object): every engine event type (EngineEvent: rollback,
 * stall, stallEnd, desync, fallback, recovery, interrupted, disconnected, reconnected,
 * nondeterminism, terminal, episodeEnd, endTimeout, pause, resume, hashBroadcast, verified, focus,
 * error), 'frame' with each research row (DataRow) as it confirms, 'peerRejoined' {peer} when a
 * player's reloaded page took its seat back (this page renegotiates with it), and 'seatReclaimed'
 * {room, playerIndex} when another connection took this page's seat (the session then closes),
 * 'relayRejoined' when this page's Socket.IO connection dropped, came back and joined its seat
 * again with its token (the relay works again; DataChannels are kept), and 'peerRelayBack' {peer}
 * when another player's page did that.
 */
export declare class P2PSyncSession extends EventTarget {
  static connect(o: ConnectOptions): Promise<P2PSyncSession>;
  readonly state: SessionState;
  readonly engine: SyncEngine | null;
  readonly playerIndex: number;
  readonly numPlayers: number;
  readonly room: string | null;
  /** connect() reclaimed the seat with a stored reconnect token (this page was reloaded) */
  readonly rejoined: boolean;
  /** this page's identity in signals (random per session) */
  readonly nonce: string;
  readonly frame: number;
  readonly status: PlanStatus | 'INIT';
  readonly confirmedFrame: number;
  readonly verifiedFrame: number;
  readonly episode: number;
  readonly episodeStart: number;
  readonly ended: boolean;
  readonly finished: boolean;
  readonly finalStateHash: string | null;
  readonly episodeSummaryLine: string | null;
  readonly episodeResults: EpisodeResult[];
  readonly counters: Record<string, number>;
  readonly loggedFrame: number;
  readonly p2pMetrics: P2PMetrics & { connectionDetails: any };
  connectionType: 'direct' | 'relay' | 'unknown';
  impairment: { latencyMs: number; lossPct: number };
  /** One tick (at most one at a time). */
  step(localAction?: number, botActions?: ArrayLike<number> | null): Promise<StepOutcome>;
  nextEpisode(options?: { inputDelay?: number }): void | Promise<void>;
  /** The page's focus: FOCUS_STATE to every peer at once; recorded per frame in the data. */
  setFocus(focused: boolean): void;
  /** Handles what arrived while the page is not stepping (receiving already does). */
  poll(): void;
  exportEpisodeData(options?: { episode?: number; format?: 'csv' | 'json' }): string | object;
  exportSessionData(options?: { format?: 'csv' | 'json' }): string | object;
  /** Services the network after the last episode, then closes. */
  finish(options?: { lingerMs?: number; timeoutMs?: number; frameMs?: number }): Promise<{ finished: boolean; episodes: number }>;
  actionLog(from?: number, to?: number): number[][];
  actionLogBytes(from?: number, to?: number): Uint8Array;
  actionLogHex(from?: number, to?: number): string;
  stateHashAt(frame: number): string | null;
  exportSessionMetrics(): any;
  pollConnectionType(): Promise<'direct' | 'relay' | 'unknown'>;
  impair(o: { latencyMs?: number; lossPct?: number }): { latencyMs: number; lossPct: number };
  /** Close every DataChannel (they stay closed until restoreP2P()): the engine falls back to the relay. */
  closeP2P(): void;
  /** Open a new DataChannel to every peer whose channel is not open, on the existing connection. */
  restoreP2P(): void;
  /** Forget the stored reconnect token (done by itself when every episode has ended and by
   * finish()); call it before destroy() when the participant leaves for good. */
  forgetToken(): void;
  /** Closes everything; the stored reconnect token is kept (as on a reload). */
  destroy(): void;
}
export default P2PSyncSession;
