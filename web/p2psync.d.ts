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
  snapshotInterval?: number;      // default 5 (1..60)
  maxPredictionFrames?: number;   // default 30; 0 = only the buffer capacity limits it
  redundancy?: number;            // 1..15, default 10
  sendPolicy?: 'dual' | 'p2p-first';  // default 'p2p-first'
  congestionBytes?: number;       // default 16384
  timeSync?: boolean | { enabled?: boolean; window?: number; threshold?: number };
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
  fallbackRecovery?: null | { healthyForMs: number; latencyBelowMs: number };
  gameId?: string;                // carried in relay messages (game_id)
  playerIds?: (string | number)[];// relay player_id / sender_id per player index (default: index)
  maxEvents?: number;             // bounded event lists (default 256)
}

/** ENDED: the local episode has ended (endEpisode); keep calling advance until the episodeEnd event. */
export type PlanStatus = 'RUN' | 'STALL' | 'WAIT' | 'ENDED';

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

/** Engine events. Frame numbers in hashBroadcast / verified / desync events and in the episode
 * summary are episode-relative (they travel in STATE_HASH / EPISODE_END); all others are
 * session-wide, like plan.frame. */
export interface EngineEvent {
  type: 'rollback' | 'stall' | 'stallEnd' | 'desync' | 'fallback' | 'recovery' | 'interrupted' | 'disconnected'
      | 'reconnected' | 'nondeterminism' | 'episodeEnd' | 'hashBroadcast' | 'verified' | 'focus' | 'error';
  [k: string]: any;
}

export interface Rollback {
  /** earliest mispredicted frame T */
  targetFrame: number;
  /** snapshot frame S <= T to load (engine.snapshot(S)) */
  loadFrame: number;
  /** frames to replay: S .. S+count-1 (= current frame - 1) */
  count: number;
  /** actions of frame S+i (view, numPlayers+numBots bytes) */
  actions(i: number): Uint8Array;
  /** whether to save a snapshot before stepping frame S+i */
  resnapshot(i: number): boolean;
}

export interface Plan {
  status: PlanStatus;
  /** the frame to execute now (when RUN). Frames are numbered across the whole session: each
   * episode starts at plan.episodeStart (see resetEpisode), so stale packets of an old episode
   * can never be taken for inputs of the new one. */
  frame: number;
  /** frame - episodeStart: the frame number within the episode */
  episodeFrame: number;
  episodeStart: number;
  episode: number;
  /** actions of every actor for `frame` (view; players then bots) */
  actions: Uint8Array;
  /** bit i set: player i's action is predicted */
  predictedMask: number;
  /** save the pre-step state of `frame` (engine.saveSnapshot(frame, state)) before stepping */
  saveSnapshot: boolean;
  rollback: Rollback | null;
  confirmedFrame: number;
  verifiedFrame: number;
  /** outgoing messages, to be sent now */
  outgoing: OutgoingMessage[];
  /** events since the previous advance */
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
  /** Messages produced while receiving (PONG, INPUT_RESPONSE, END/READY answers) are passed here
   * at once; when unset they are sent with the next plan's outgoing messages. */
  onOutgoing: ((msg: OutgoingMessage) => void) | null;
  advance(nowMs: number, localAction: number, botActions?: ArrayLike<number> | null,
          bufferedAmount?: number): Plan;
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
  endEpisode(localTerminalFrame: number, nowMs: number): void;
  resetEpisode(options?: { inputDelay?: number; initialState?: string | Uint8Array }): void;
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
  /** WASM heap size in bytes (shared by the engines of this module). */
  heapBytes(): number;
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
