// TypeScript declarations for web/p2psync.js (the p2psync WASM module's ES-module glue).

export type DecodeErrorCode =
  | 'EMPTY' | 'UNKNOWN_TYPE' | 'TRUNCATED' | 'TRAILING_BYTES' | 'BAD_COUNT' | 'BAD_FLAGS'
  | 'NON_MONOTONIC_FRAMES' | 'FRAME_AFTER_HEADER' | 'BAD_TIMESTAMP' | 'BAD_RANGE' | 'BAD_VALUE';

/** Result of SyncEngine.receive*: 'OK' or a named rejection. */
export type ReceiveResult =
  | 'OK' | 'DUPLICATE' | DecodeErrorCode | 'OVERSIZED'
  | 'SPOOFED_PLAYER' | 'UNKNOWN_PLAYER' | 'OUT_OF_WINDOW' | 'CONFLICT'
  | 'UNSOLICITED_PONG' | 'STALE_EPISODE' | 'UNVERIFIABLE' | 'FLOOD' | 'BAD_RELAY_JSON';

export interface FrameAction { frame: number; action: number }

export type Message =
  | { type: 'INPUT'; playerIndex: number; frame: number; inputs: FrameAction[] }
  | { type: 'PING'; timestamp: number }
  | { type: 'PONG'; timestamp: number }
  | { type: 'KEEPALIVE' }
  | { type: 'EPISODE_END'; frame: number; episode: number }
  | { type: 'EPISODE_READY'; episode: number; digest: string }
  | { type: 'STATE_HASH'; frame: number; digest: string }
  | { type: 'INPUT_REQUEST'; start: number; end: number }
  | { type: 'INPUT_RESPONSE'; playerIndex: number; inputs: FrameAction[] }
  | { type: 'FOCUS_STATE'; focused: boolean; frame: number };

export interface SyncConfig {
  numPlayers?: number;            // 2..4, default 2
  localPlayerIndex: number;       // required
  numBots?: number;               // default 0 (0..8)
  inputDelay?: number;            // default 2 (0..30)
  predictionMethod?: 'previous_submitted_action' | 'default_action';
  defaultAction?: number;         // 0..255, default 0
  snapshotInterval?: number;      // default 5 (1..600)
  maxPredictionFrames?: number;   // default 30; 0 = only the buffer capacity limits it
  redundancy?: number;            // 1..15, default 10
  sendPolicy?: 'dual' | 'p2p-first';  // default 'p2p-first'
  congestionBytes?: number;       // default 16384
  timeSync?: boolean | { enabled?: boolean; window?: number; threshold?: number; minSpacing?: number };
  syncTest?: null | { checkDistance: number };
  bufferFrames?: number;          // input ring size per player (power of two, default 256)
  snapshotSlots?: number;         // snapshots kept (default 64)
  snapshotBytes?: number;         // total snapshot store bytes (default 4 MiB)
  hashInterval?: number;          // default = snapshotInterval
  hashHistory?: number;           // default 120
  canonicalize?: null | { floatDigits: number };
  pingIntervalMs?: number;        // default 500
  interruptMs?: number;           // default 750
  disconnectMs?: number;          // default 5000
  fallbackRecovery?: null | boolean | { healthyForMs?: number; latencyBelowMs?: number };
  gameId?: string;                // carried in relay messages (game_id)
  playerIds?: (string | number)[];// relay player_id / sender_id per player index (default: index)
  maxEvents?: number;             // bounded event lists (default 256)
  maxPacketsPerPeerPerFrame?: number; // receive budget per peer between two advances (default 64)
  /** > 0: the engine truncates every episode after this many frames (default 0: never) */
  maxEpisodeFrames?: number;
  /** 'fallback' (default): state hashes go to the relay only while P2P is unusable; 'always' */
  relayHashes?: 'fallback' | 'always';
}

/** RUN: new frames to step. STALL: waiting for inputs (prediction limit) or the peers' READY.
 * WAIT: one frame of time sync. ENDED: the episode's last frame is simulated; keep calling
 * advance (the end is being confirmed and agreed) until the episodeEnd event. */
export type PlanStatus = 'RUN' | 'STALL' | 'WAIT' | 'ENDED' | 'STARTING' | 'JOINING';

export interface OutgoingMessage {
  path: 'p2p' | 'relay';
  /** remote player index, or -1 for every remote peer */
  to: number;
  /** p2p: binary packet (a view valid until the next engine call; copy or send at once) */
  bytes?: Uint8Array;
  /** relay: Socket.IO event name and payload (reference shapes) */
  event?: 'pyodide_player_action' | 'p2p_state_sync' | 'p2psync_packet';
  data?: any;
}

/** Engine events. Frame numbers in hashBroadcast / verified / desync events and the episode
 * summary are episode-relative (they travel in STATE_HASH / EPISODE_END); episodeEnd and
 * terminal carry both (frame: session-wide, episodeFrame); all others are session-wide. */
export interface EngineEvent {
  type: 'rollback' | 'stall' | 'stallEnd' | 'desync' | 'fallback' | 'recovery' | 'interrupted' | 'disconnected'
      | 'reconnected' | 'nondeterminism' | 'episodeEnd' | 'terminal' | 'hashBroadcast' | 'verified' | 'focus' | 'error';
  [k: string]: any;
}

/** lib.REQUEST values: plan.kind(i). */
export interface RequestKinds { readonly LOAD: number; readonly SAVE: number; readonly ADVANCE: number }
/** lib.STEP flags for engine.stepped(). */
export interface StepFlags { readonly TERMINATED: number; readonly TRUNCATED: number; readonly REWARDS: number }

/**
 * The plan of the last advance(): its header, and the ordered requests to execute (web/driver.js
 * runPlan does it): Load S (restore snapshot S), Save F (hand the env's state to the engine as
 * the pre-step state of F), Advance F (step the env with actionsOf(i), then report the step with
 * engine.stepped; isReplay(i): a frame re-simulated after a rollback). The object is reused by
 * the next advance(); request views are valid until the next engine call.
 */
export interface Plan {
  status: PlanStatus;
  /** the next frame the engine will plan (session-wide numbering: each episode starts at
   * episodeStart, so stale packets of an old episode are never taken for the new one) */
  frame: number;
  episode: number;
  episodeStart: number;
  confirmedFrame: number;
  verifiedFrame: number;
  /** the episode's last frame on the current timeline, -1 while unknown */
  terminalFrame: number;
  inputDelay: number;
  /** a rollback in this plan: earliest mispredicted frame, the snapshot loaded, frames replayed */
  rollback: { targetFrame: number; loadFrame: number; count: number } | null;
  /** number of requests */
  requests: number;
  kind(i: number): number;
  frameOf(i: number): number;
  episodeFrameOf(i: number): number;
  isReplay(i: number): boolean;
  /** bit p set: player p's action for that frame is predicted */
  predictedMaskOf(i: number): number;
  /** actions of every actor (players then bots) for request i (a view) */
  actionsOf(i: number): Uint8Array;
  /** Advance requests in the plan (frames to step, replays included) */
  readonly steps: number;
  /** outgoing messages, to be sent now */
  outgoing: OutgoingMessage[];
  /** events read since the previous advance (empty when engine.onEvent is set) */
  events: EngineEvent[];
}

export interface P2PMetrics {
  inputsReceivedViaP2P: number;
  inputsReceivedViaSocketIO: number;
  inputsSentViaP2P: number;
  inputsSentViaSocketIO: number;
  p2pFallbackTriggered: boolean;
  p2pFallbackFrame: number | null;
  connectionType: 'direct' | 'relay' | 'unknown';
}

export declare class SyncEngine {
  constructor(config: SyncConfig);
  readonly numActors: number;
  readonly frame: number;
  readonly REQUEST: RequestKinds;
  readonly STEP: StepFlags;
  /** The layout table of the module (plan, records, enums, names), declared once in C++. */
  readonly layout: any;
  /** Messages produced while receiving (PONG, INPUT_RESPONSE, END/READY answers) are passed here
   * at once; when unset they are sent with the next plan's outgoing messages. */
  onOutgoing: ((msg: OutgoingMessage) => void) | null;
  /** Every engine event as soon as it is read (after advance, stepped, receive, ...); when unset,
   * plan.events holds advance()'s and takeEvents() the others. */
  onEvent: ((ev: EngineEvent) => void) | null;
  /** Plans this tick (one WASM call). */
  advance(nowMs: number, localAction: number, botActions?: ArrayLike<number> | null,
          bufferedAmount?: number): Plan;
  /** Reports the Advance request of `frame` (in plan order): flags = STEP bits (TERMINATED /
   * TRUNCATED when the step ended the episode, REWARDS when stepRewards holds its rewards);
   * preState = the frame's pre-step state when the plan had a Save for it. Returns false when the
   * plan ends here (the rest of it is void). */
  stepped(frame: number, flags?: number, preState?: string | Uint8Array | null): boolean;
  /** The rewards of the step about to be reported, one per actor. */
  readonly stepRewards: Float64Array;
  takeEvents(): EngineEvent[];
  receive(bytes: Uint8Array | ArrayBuffer, fromPeer: number, via: 'p2p' | 'relay', nowMs: number): ReceiveResult;
  receiveRelayInput(playerIndex: number, frame: number, action: number, nowMs: number, fromPeer?: number): ReceiveResult;
  receiveRelayStateSync(data: object | string, fromPeer: number, nowMs: number): ReceiveResult;
  /** A relay event as the server delivers it ('pyodide_other_player_action', 'p2p_state_sync',
   * 'p2psync_packet' with {from, bytes}). */
  receiveRelay(event: string, data: any, fromPeer: number, nowMs: number): ReceiveResult;
  saveSnapshot(frame: number, state: string | Uint8Array): boolean;
  snapshot(frame: number): Uint8Array | null;
  snapshotText(frame: number): string | null;
  hashState(state: string | Uint8Array): string;
  onChannelOpen(peer: number, nowMs: number): void;
  onChannelClosed(peer: number, nowMs: number): void;
  onConnectionFailed(peer: number, nowMs: number): void;
  setConnectionType(type: 'direct' | 'relay' | 'unknown'): void;
  /** Starts the next episode; throws until the episodeEnd event (the end is synced). */
  resetEpisode(options?: { inputDelay?: number }): void;
  /** A rejoining engine (config rejoin) waiting for a peer's state (plan status JOINING). */
  readonly joining: boolean;
  /** Answers a peer's state request (event stateRequest) with an attachment (e.g. the research rows
   * that peer lost); without a call the engine sends the state with none at its next advance().
   * False when no request of that peer is pending. */
  serveState(peer: number, attachment?: string | Uint8Array | null, nowMs?: number): boolean;
  /** The attachment of the last state this engine loaded (event stateLoaded). */
  transferAttachment(): Uint8Array;
  /** Executed actions of frames [from, to], numActors bytes each; confirmed frames only unless
   * confirmedOnly is false; only frames still in the bufferFrames ring. */
  actionLog(fromFrame: number, toFrame: number, confirmedOnly?: boolean): Uint8Array;
  /** Bytes this engine holds (fixed after construction). */
  memoryBytes(): number;
  static heapBytes(): number;
  readonly p2pMetrics: P2PMetrics;
  exportSessionMetrics(): any;
  episodeSummary(rewards: object): string;
  delete(): void;
}

export interface P2PSyncLib {
  encode(message: Message): Uint8Array;
  decode(bytes: Uint8Array | ArrayBuffer): Message | { error: DecodeErrorCode };
  hash(state: string | Uint8Array, options?: { floatDigits?: number }): string;
  SyncEngine: typeof SyncEngine;
  TYPES: Readonly<Record<Message['type'], number>>;
  REQUEST: RequestKinds;
  STEP: StepFlags;
  /** Every binary layout and name table of the module. */
  layout: any;
  /** WASM heap size in bytes (shared by the engines of this module). */
  heapBytes(): number;
  /** Bytes malloc holds in the WASM heap. */
  heapUsed(): number;
  version: string;
}

export interface LoadOptions {
  /** URL of p2psync.wasm (browser); default: next to this module */
  wasmUrl?: string | URL;
  /** path of p2psync.wasm (Node); default: build/wasm/p2psync.wasm relative to the repo */
  wasmPath?: string;
  /** the wasm bytes themselves */
  wasmBinary?: ArrayBuffer | Uint8Array;
  /** URL of the ES-module loader (default: ../build/wasm/p2psync.mjs next to this module) */
  moduleUrl?: string | URL;
  /** the Emscripten factory itself (skips importing moduleUrl) */
  moduleFactory?: (args: object) => Promise<any>;
}

export declare function loadP2PSync(options?: LoadOptions): Promise<P2PSyncLib>;
