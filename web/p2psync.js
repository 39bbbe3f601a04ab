// p2psync: ES-module glue for the WASM sync engine. Works unchanged in the browser and in Node.
//
//   const lib = await loadP2PSync();
//   lib.encode(message) -> Uint8Array      lib.decode(bytes) -> message | {error}
//   lib.hash(stateText) -> '16 hex chars'
//   const engine = new lib.SyncEngine({localPlayerIndex: 0, numPlayers: 2});
//   const plan = engine.advance(nowMs, localAction, botActions, bufferedAmount);
//
// Per frame the page makes one WASM call (advance); the plan is read through typed-array views
// of WASM memory that are created once and re-taken only when the memory grows.

const IS_NODE = typeof process !== 'undefined' && !!(process.versions && process.versions.node) &&
  typeof window === 'undefined';

const TYPES = Object.freeze({
  INPUT: 0x01, PING: 0x02, PONG: 0x03, KEEPALIVE: 0x04, EPISODE_END: 0x05, EPISODE_READY: 0x06,
  STATE_HASH: 0x07, INPUT_REQUEST: 0x12, INPUT_RESPONSE: 0x13, FOCUS_STATE: 0x14,
});
const TYPE_NAMES = Object.fromEntries(Object.entries(TYPES).map(([k, v]) => [v, k]));
const STATUS = ['RUN', 'STALL', 'WAIT', 'ENDED'];
const RELAY_EVENTS = [null, 'pyodide_player_action', 'p2p_state_sync', 'p2psync_packet'];
const RELAY_EVENT_IDS = { pyodide_player_action: 1, pyodide_other_player_action: 1, p2p_state_sync: 2 };

// Plan header words (wasm/src/sync_engine.hpp, enum PlanWord).
const W = {
  STATUS: 0, FRAME: 1, EPISODE_FRAME: 2, SAVE_SNAPSHOT: 3, PREDICTED_MASK: 4, ROLLBACK: 5,
  ROLLBACK_TARGET: 6, LOAD_FRAME: 7, REPLAY_COUNT: 8, CONFIRMED: 9, VERIFIED: 10, OUT_BYTES: 11,
  OUT_COUNT: 12, REPLY_BYTES: 13, REPLY_COUNT: 14, EPISODE: 15, NUM_ACTORS: 16, EVENT_COUNT: 17,
  EPISODE_START: 18, WORDS: 32,
};
const MSG_HEADER = 40;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) return Uint8Array.from(data);
  throw new TypeError('bytes must be a Uint8Array, ArrayBuffer or typed array');
}

function hexToWords(hex, field) {
  if (typeof hex !== 'string' || !/^[0-9a-fA-F]{16}$/.test(hex)) {
    throw new TypeError(`encode: field "${field}" must be 16 hex characters`);
  }
  return [parseInt(hex.slice(0, 8), 16) >>> 0, parseInt(hex.slice(8), 16) >>> 0];
}
const hex8 = (n) => (n >>> 0).toString(16).padStart(8, '0');

async function loadFactory(options) {
  if (options.moduleFactory) return options.moduleFactory;
  const url = options.moduleUrl ?? new URL('../build/wasm/p2psync.mjs', import.meta.url);
  const mod = await import(/* @vite-ignore */ url.toString());
  return mod.default;
}

async function loadWasmBinary(options) {
  if (options.wasmBinary) return toBytes(options.wasmBinary);
  if (IS_NODE) {
    const fs = await import('node:fs/promises');
    const { fileURLToPath } = await import('node:url');
    const path = options.wasmPath ?? fileURLToPath(new URL('../build/wasm/p2psync.wasm', import.meta.url));
    return new Uint8Array(await fs.readFile(path));
  }
  return null; // the browser streams it from wasmUrl
}

/** Loads the module. Options: wasmUrl (browser), wasmPath (Node), wasmBinary, moduleUrl. */
export async function loadP2PSync(options = {}) {
  const factory = await loadFactory(options);
  const wasmBinary = await loadWasmBinary(options);
  const wasmUrl = String(options.wasmUrl ?? new URL('../build/wasm/p2psync.wasm', import.meta.url));
  const moduleArgs = {
    print: (s) => console.log(s),
    printErr: (s) => console.error(s),
    locateFile: (name) => (name.endsWith('.wasm') ? wasmUrl : name),
  };
  if (wasmBinary) moduleArgs.wasmBinary = wasmBinary;
  const M = await factory(moduleArgs);
  return createLib(M);
}

function createLib(M) {
  const rxNames = [];
  for (let i = 0; ; i++) {
    const n = M.rxResultName(i);
    if (n === 'UNKNOWN') break;
    rxNames.push(n);
  }
  const decodeNames = rxNames.slice(0, 12);

  // Plain WASM exports of the hot path (wasm/bindings.cpp), when the module has them. M is a
  // dictionary-mode object, so each is looked up once, after its first call (Emscripten's lazy
  // export wrapper replaces itself with the raw export on that call).
  const hot = typeof M._p2psync_advance === 'function';
  let rawAdvance = null, rawReceive = null, rawSave = null, rawHash = null;
  function hotAdvance(h, nowMs, action, buffered) {
    if (rawAdvance !== null) return rawAdvance(h, nowMs, action, buffered);
    const r = M._p2psync_advance(h, nowMs, action, buffered);
    rawAdvance = M._p2psync_advance;
    return r;
  }
  function hotReceive(h, len, from, via, nowMs) {
    if (rawReceive !== null) return rawReceive(h, len, from, via, nowMs);
    const r = M._p2psync_receive(h, len, from, via, nowMs);
    rawReceive = M._p2psync_receive;
    return r;
  }
  function hotSave(h, frame, len) {
    if (rawSave !== null) return rawSave(h, frame, len);
    const r = M._p2psync_save_snapshot(h, frame, len);
    rawSave = M._p2psync_save_snapshot;
    return r;
  }
  function hotHash(len, floatDigits) {
    if (rawHash !== null) return rawHash(len, floatDigits);
    const r = M._p2psync_hash_staged(len, floatDigits);
    rawHash = M._p2psync_hash_staged;
    return r;
  }

  // Shared staging memory (codec, hashing, snapshots). Re-taken when memory grows or moves.
  const st = { buf: null, bytes: null, msg: null, msgView: null, cap: 0 };
  function staging(minBytes = 0) {
    if (minBytes > st.cap) {
      M.stagingReserve(minBytes);
      st.buf = null;
    }
    if (st.buf !== M.HEAPU8.buffer) {
      st.buf = M.HEAPU8.buffer;
      st.cap = M.stagingCapacity();
      st.bytes = new Uint8Array(st.buf, M.stagingPtr(), st.cap);
      const mp = M.messagePtr();
      st.msg = new Uint8Array(st.buf, mp, MSG_HEADER + 8 * 256);
      st.msgView = new DataView(st.buf, mp, MSG_HEADER + 8 * 256);
    }
    return st;
  }
  function stageBytes(data) {
    const b = toBytes(data);
    const s = staging(b.length);
    s.bytes.set(b);
    return b.length;
  }
  function stageText(text) {
    let s = staging();
    let r = textEncoder.encodeInto(text, s.bytes);
    if (r.read < text.length) {
      s = staging(text.length * 3 + 16);
      r = textEncoder.encodeInto(text, s.bytes);
    }
    return r.written;
  }
  function stageState(state) {
    return typeof state === 'string' ? stageText(state) : stageBytes(state);
  }

  // ---------------------------------------------------------------- codec
  function uintField(msg, field, max) {
    const v = msg[field];
    if (!Number.isInteger(v) || v < 0 || v > max) {
      throw new TypeError(`encode: field "${field}" must be an integer in 0..${max}`);
    }
    return v;
  }
  function writeEntries(dv, inputs, max) {
    if (!Array.isArray(inputs)) throw new TypeError('encode: field "inputs" must be an array');
    if (inputs.length < 1 || inputs.length > max) {
      throw new TypeError(`encode: field "inputs" must hold 1..${max} entries (got ${inputs.length})`);
    }
    inputs.forEach((e, i) => {
      if (!e || typeof e !== 'object') throw new TypeError(`encode: field "inputs[${i}]" must be {frame, action}`);
      if (!Number.isInteger(e.frame) || e.frame < 0 || e.frame > 0xffffffff) {
        throw new TypeError(`encode: field "inputs[${i}].frame" must be a u32`);
      }
      if (!Number.isInteger(e.action) || e.action < 0 || e.action > 255) {
        throw new TypeError(`encode: field "inputs[${i}].action" must be an integer in 0..255`);
      }
      dv.setUint32(MSG_HEADER + 8 * i, e.frame, true);
      dv.setUint32(MSG_HEADER + 8 * i + 4, e.action, true);
    });
    return inputs.length;
  }

  function encode(msg) {
    if (!msg || typeof msg !== 'object') throw new TypeError('encode: message must be an object');
    const t = TYPES[msg.type];
    if (t === undefined) throw new TypeError(`encode: field "type" is not a message type (${msg.type})`);
    const s = staging();
    s.msg.fill(0, 0, MSG_HEADER);
    const dv = s.msgView;
    dv.setUint8(0, t);
    switch (msg.type) {
      case 'INPUT':
        dv.setUint16(4, uintField(msg, 'playerIndex', 0xffff), true);
        dv.setUint32(8, uintField(msg, 'frame', 0xffffffff), true);
        dv.setUint16(6, writeEntries(dv, msg.inputs, 15), true);
        break;
      case 'PING': case 'PONG':
        if (typeof msg.timestamp !== 'number' || !Number.isFinite(msg.timestamp) || msg.timestamp < 0) {
          throw new TypeError('encode: field "timestamp" must be a finite number >= 0');
        }
        dv.setFloat64(24, msg.timestamp, true);
        break;
      case 'KEEPALIVE':
        break;
      case 'EPISODE_END':
        dv.setUint32(8, uintField(msg, 'frame', 0xffffffff), true);
        dv.setUint32(12, uintField(msg, 'episode', 0xffffffff), true);
        break;
      case 'EPISODE_READY': case 'STATE_HASH': {
        if (msg.type === 'EPISODE_READY') dv.setUint32(12, uintField(msg, 'episode', 0xffffffff), true);
        else dv.setUint32(8, uintField(msg, 'frame', 0xffffffff), true);
        const [hi, lo] = hexToWords(msg.digest, 'digest');
        dv.setUint32(32, hi, true);
        dv.setUint32(36, lo, true);
        break;
      }
      case 'INPUT_REQUEST':
        dv.setUint32(16, uintField(msg, 'start', 0xffffffff), true);
        dv.setUint32(20, uintField(msg, 'end', 0xffffffff), true);
        break;
      case 'INPUT_RESPONSE':
        dv.setUint16(4, uintField(msg, 'playerIndex', 0xffff), true);
        dv.setUint16(6, writeEntries(dv, msg.inputs, 256), true);
        break;
      case 'FOCUS_STATE':
        if (typeof msg.focused !== 'boolean' && msg.focused !== 0 && msg.focused !== 1) {
          throw new TypeError('encode: field "focused" must be a boolean');
        }
        dv.setUint8(2, msg.focused ? 1 : 0);
        dv.setUint32(8, uintField(msg, 'frame', 0xffffffff), true);
        break;
    }
    const n = M.encodeStaged();
    if (!n) throw new TypeError(`encode: field "${M.lastError()}" is invalid for ${msg.type}`);
    return staging().bytes.slice(0, n);
  }

  function readEntries(dv, count) {
    const out = new Array(count);
    for (let i = 0; i < count; i++) {
      out[i] = { frame: dv.getUint32(MSG_HEADER + 8 * i, true), action: dv.getUint32(MSG_HEADER + 8 * i + 4, true) };
    }
    return out;
  }

  function decode(bytes) {
    const b = toBytes(bytes);
    const len = stageBytes(b);
    const code = M.decodeStaged(len);
    if (code !== 0) return { error: decodeNames[code] ?? 'UNKNOWN' };
    const dv = staging().msgView;
    const type = TYPE_NAMES[dv.getUint8(0)];
    const digest = () => hex8(dv.getUint32(32, true)) + hex8(dv.getUint32(36, true));
    switch (type) {
      case 'INPUT':
        return { type, playerIndex: dv.getUint16(4, true), frame: dv.getUint32(8, true), inputs: readEntries(dv, dv.getUint16(6, true)) };
      case 'PING': case 'PONG':
        return { type, timestamp: dv.getFloat64(24, true) };
      case 'KEEPALIVE':
        return { type };
      case 'EPISODE_END':
        return { type, frame: dv.getUint32(8, true), episode: dv.getUint32(12, true) };
      case 'EPISODE_READY':
        return { type, episode: dv.getUint32(12, true), digest: digest() };
      case 'STATE_HASH':
        return { type, frame: dv.getUint32(8, true), digest: digest() };
      case 'INPUT_REQUEST':
        return { type, start: dv.getUint32(16, true), end: dv.getUint32(20, true) };
      case 'INPUT_RESPONSE':
        return { type, playerIndex: dv.getUint16(4, true), inputs: readEntries(dv, dv.getUint16(6, true)) };
      case 'FOCUS_STATE':
        return { type, focused: dv.getUint8(2) === 1, frame: dv.getUint32(8, true) };
    }
    return { error: 'UNKNOWN_TYPE' };
  }

  function hash(state, options = {}) {
    const len = stageState(state);
    const d = options.floatDigits ?? 0;
    if (hot) {
      if (!hotHash(len, d)) throw new TypeError('hash: state is not valid JSON (canonicalize mode)');
      const dv = staging().msgView;
      return hex8(dv.getUint32(32, true)) + hex8(dv.getUint32(36, true));
    }
    const h = M.hashStaged(len, d);
    if (!h) throw new TypeError('hash: state is not valid JSON (canonicalize mode)');
    return h;
  }

  // ---------------------------------------------------------------- engine
  // Reads outbox records (wasm/src/outbox.hpp) into `out` (and events into `events`).
  function readRecords(view, dv, used, out, events, copy) {
    let off = 0;
    while (off + 8 <= used) {
      const kind = view[off];
      const path = view[off + 1];
      const to = (view[off + 2] << 24) >> 24;
      const ev = view[off + 3];
      const len = dv.getUint32(off + 4, true);
      const start = off + 8;
      if (kind === 0) {
        const bytes = copy || path === 1 ? view.slice(start, start + len) : view.subarray(start, start + len);
        if (path === 0) out.push({ path: 'p2p', to, bytes });
        else out.push({ path: 'relay', to, event: 'p2psync_packet', data: { to, bytes }, bytes });
      } else if (kind === 1) {
        out.push({ path: 'relay', to, event: RELAY_EVENTS[ev], data: JSON.parse(textDecoder.decode(view.subarray(start, start + len))) });
      } else if (kind === 2 && events) {
        events.push(JSON.parse(textDecoder.decode(view.subarray(start, start + len))));
      }
      off = start + ((len + 3) & ~3);
    }
  }

  class SyncEngine {
    constructor(config) {
      if (!config || typeof config !== 'object') throw new TypeError('config must be an object');
      const h = new M.Engine();
      const err = h.init(JSON.stringify(config));
      if (err) {
        h.delete();
        throw new TypeError(err);
      }
      this._h = h;
      // Hot calls (advance, receive, saveSnapshot) go through plain WASM exports when the module
      // has them (wasm/bindings.cpp): Embind's invoker costs ~0.2 us and allocates per call.
      this._e = hot && typeof h.handle === 'function' ? h.handle() : 0;
      this._buf = null;
      this._numActors = h.numActors();
      this._numBots = config.numBots ?? 0;
      this._planPtr = h.planPtr();
      this._offs = [h.curActionsOffset(), h.replayActionsOffset(), h.resnapOffset(), h.botInputOffset()];
      this._outPtr = h.outPtr();
      this._replyPtr = h.replyPtr();
      this._rxPtr = h.rxPtr();
      this._rxCap = h.rxCapacity();
      /** Called with each message produced while receiving (PONG, INPUT_RESPONSE, ...). When
       * unset, those messages are sent with the next plan's outgoing messages. */
      this.onOutgoing = null;
      this._pendingReplies = [];
      this._events = [];
      const self = this;
      this._rollback = {
        targetFrame: 0, loadFrame: 0, count: 0,
        actions(i) {
          const n = self._numActors;
          return self._replay.subarray(i * n, i * n + n);
        },
        resnapshot(i) { return self._resnap[i] === 1; },
      };
      this._plan = {
        status: 'RUN', frame: 0, episodeFrame: 0, episodeStart: 0, episode: 0, actions: null, predictedMask: 0,
        saveSnapshot: false, rollback: null, confirmedFrame: -1, verifiedFrame: -1, outgoing: [], events: [],
      };
      this._views();
    }

    _views() {
      // Growing WASM memory detaches the old buffer, which empties every view on it: a cheap
      // check (M.HEAPU8 is a dictionary-mode lookup).
      if (this._H !== undefined && this._H.length !== 0) return;
      const buf = M.HEAPU8.buffer;
      if (buf === this._buf) return;
      this._buf = buf;
      const p = this._planPtr;
      const n = this._numActors;
      this._H = new Int32Array(buf, p, W.WORDS);
      this._cur = new Uint8Array(buf, p + this._offs[0], n);
      this._replay = new Uint8Array(buf, p + this._offs[1], this._offs[2] - this._offs[1]);
      this._resnap = new Uint8Array(buf, p + this._offs[2], this._offs[3] - this._offs[2]);
      this._bot = new Uint8Array(buf, p + this._offs[3], 16);
      this._out = new Uint8Array(buf, this._outPtr, 64 * 1024);
      this._outDv = new DataView(buf, this._outPtr, 64 * 1024);
      this._reply = new Uint8Array(buf, this._replyPtr, 16 * 1024);
      this._replyDv = new DataView(buf, this._replyPtr, 16 * 1024);
      this._rx = new Uint8Array(buf, this._rxPtr, this._rxCap);
    }

    get numActors() { return this._numActors; }
    get frame() { return this._h.frame(); }

    advance(nowMs, localAction = 0, botActions = null, bufferedAmount = 0) {
      this._views();
      if (botActions && this._numBots) this._bot.set(botActions.length > this._numBots ? botActions.slice(0, this._numBots) : botActions);
      const status = this._e
        ? hotAdvance(this._e, nowMs, localAction | 0, +bufferedAmount || 0)
        : this._h.advance(nowMs, localAction | 0, +bufferedAmount || 0);
      this._views();
      const H = this._H;
      const plan = this._plan;
      plan.status = STATUS[status];
      plan.frame = H[W.FRAME];
      plan.episodeFrame = H[W.EPISODE_FRAME];
      plan.episodeStart = H[W.EPISODE_START];
      plan.episode = H[W.EPISODE];
      plan.actions = this._cur;
      plan.predictedMask = H[W.PREDICTED_MASK];
      plan.saveSnapshot = H[W.SAVE_SNAPSHOT] === 1;
      plan.confirmedFrame = H[W.CONFIRMED];
      plan.verifiedFrame = H[W.VERIFIED];
      if (H[W.ROLLBACK] === 1) {
        const r = this._rollback;
        r.targetFrame = H[W.ROLLBACK_TARGET];
        r.loadFrame = H[W.LOAD_FRAME];
        r.count = H[W.REPLAY_COUNT];
        plan.rollback = r;
      } else {
        plan.rollback = null;
      }
      const out = [];
      if (this._pendingReplies.length) {
        for (const m of this._pendingReplies) out.push(m);
        this._pendingReplies.length = 0;
      }
      const events = [];
      if (H[W.OUT_COUNT] > 0) readRecords(this._out, this._outDv, H[W.OUT_BYTES], out, events, false);
      plan.outgoing = out;
      plan.events = events;
      return plan;
    }

    _result(code) {
      const H = this._H;
      if (H[W.REPLY_COUNT] > 0) {
        const replies = [];
        readRecords(this._reply, this._replyDv, H[W.REPLY_BYTES], replies, null, true);
        if (this.onOutgoing) for (const m of replies) this.onOutgoing(m);
        else for (const m of replies) this._pendingReplies.push(m);
      }
      return rxNames[code] ?? 'UNKNOWN';
    }

    receive(bytes, fromPeer, via, nowMs) {
      this._views();
      const b = toBytes(bytes);
      const v = via === 'relay' ? 1 : 0;
      if (b.length <= this._rxCap) this._rx.set(b);
      return this._result(this._e
        ? hotReceive(this._e, b.length, fromPeer, v, nowMs)
        : this._h.receive(b.length, fromPeer, v, nowMs));
    }

    receiveRelayInput(playerIndex, frame, action, nowMs, fromPeer = -1) {
      this._views();
      if (!Number.isInteger(playerIndex) || !Number.isInteger(frame) || !Number.isInteger(action)) return 'BAD_RELAY_JSON';
      return this._result(this._h.receiveRelayInput(playerIndex, frame, action, nowMs, fromPeer));
    }

    /** A relay event as the server delivers it: 'pyodide_other_player_action' / 'p2p_state_sync'
     * (payload object or JSON text) or 'p2psync_packet' ({from, bytes}). */
    receiveRelay(event, data, fromPeer, nowMs) {
      this._views();
      if (event === 'p2psync_packet') {
        if (!data || data.bytes == null) return 'BAD_RELAY_JSON';
        return this.receive(data.bytes, fromPeer, 'relay', nowMs);
      }
      const id = RELAY_EVENT_IDS[event];
      if (!id) return 'BAD_RELAY_JSON';
      let text;
      try {
        text = typeof data === 'string' ? data : JSON.stringify(data);
      } catch {
        return 'BAD_RELAY_JSON';
      }
      if (typeof text !== 'string') return 'BAD_RELAY_JSON';
      return this._result(this._h.receiveRelayJson(id, text, fromPeer, nowMs));
    }

    receiveRelayStateSync(data, fromPeer, nowMs) {
      return this.receiveRelay('p2p_state_sync', data, fromPeer, nowMs);
    }

    saveSnapshot(frame, state) {
      const len = stageState(state);
      const ok = this._e ? hotSave(this._e, frame, len) === 1 : this._h.saveSnapshot(frame, len);
      // A state larger than the staging buffer grows WASM memory, which detaches every view:
      // re-take them so plan.actions / rollback.actions(i) stay valid after a save.
      this._views();
      this._plan.actions = this._cur;
      return ok;
    }

    snapshot(frame) {
      const p = this._h.snapshotPtr(frame);
      if (!p) return null;
      return new Uint8Array(M.HEAPU8.buffer, p, this._h.snapshotLength());
    }

    snapshotText(frame) {
      const v = this.snapshot(frame);
      return v ? textDecoder.decode(v) : null;
    }

    hashState(state) { return this._h.hashState(stageState(state)); }

    onChannelOpen(peer, nowMs) { this._h.onChannelOpen(peer, nowMs); }
    onChannelClosed(peer, nowMs) { this._h.onChannelClosed(peer, nowMs); }
    onConnectionFailed(peer, nowMs) { this._h.onConnectionFailed(peer, nowMs); }
    setConnectionType(type) {
      if (!this._h.setConnectionType(String(type))) throw new TypeError('connectionType must be direct, relay or unknown');
    }
    endEpisode(frame, nowMs) { this._h.endEpisode(frame, nowMs); }
    resetEpisode(options = {}) {
      const err = this._h.resetEpisode(options.inputDelay ?? -1);
      if (err) throw new Error(`resetEpisode: ${err}`);
    }

    /** Executed actions of frames [from, to] (numActors bytes each; confirmed frames only by default). */
    actionLog(fromFrame, toFrame, confirmedOnly = true) {
      const n = this._h.actionLog(fromFrame, toFrame, confirmedOnly);
      return staging().bytes.slice(0, n * this._numActors);
    }

    get p2pMetrics() { return JSON.parse(this._h.p2pMetrics()); }
    exportSessionMetrics() { return JSON.parse(this._h.exportSessionMetrics()); }
    episodeSummary(rewards = {}) {
      return this._h.episodeSummary(typeof rewards === 'string' ? rewards : JSON.stringify(rewards));
    }
    memoryBytes() { return this._h.memoryBytes(); }
    /** WASM heap size in bytes (shared by every engine of this module). */
    static heapBytes() { return M.HEAPU8.buffer.byteLength; }

    delete() {
      if (this._h) {
        this._h.delete();
        this._h = null;
        this._e = 0;
      }
    }
  }

  return Object.freeze({
    encode,
    decode,
    hash,
    SyncEngine,
    TYPES,
    version: '0.1.0',
    heapBytes: () => M.HEAPU8.buffer.byteLength,
    _module: M,
  });
}
