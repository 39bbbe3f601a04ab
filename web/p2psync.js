// p2psync: ES-module glue for the WASM sync engine. Works unchanged in the browser and in Node.
//
//   const lib = await loadP2PSync();
//   lib.encode(message) -> Uint8Array      lib.decode(bytes) -> message | {error}
//   lib.hash(stateText) -> '16 hex chars'
//   const engine = new lib.SyncEngine({localPlayerIndex: 0, numPlayers: 2});
//   const plan = engine.advance(nowMs, localAction, botActions, bufferedAmount);
//   runPlan(engine, plan, env)        (web/driver.js: executes the plan's ordered requests)
//
// Per frame the page makes one advance() call and one stepped() call per frame it steps; the plan
// is read through typed-array views of WASM memory that are created once and re-taken only when
// the memory grows. Every binary layout, enum and name comes from the module's layout() table
// (declared once in C++: wasm/src/plan.hpp, outbox.hpp, events.hpp), never from a copy here.

const IS_NODE = typeof process !== 'undefined' && !!(process.versions && process.versions.node) &&
  typeof window === 'undefined';

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
  // ---------------------------------------------------------------- the layout table (C++)
  const L = JSON.parse(M.layout());
  const RX = L.rxResults;
  const DECODE = L.decodeErrors;
  const TYPES = Object.freeze({ ...L.messageTypes });
  const TYPE_NAMES = Object.fromEntries(Object.entries(TYPES).map(([k, v]) => [v, k]));
  const MSG = L.message;
  const MSG_BYTES = MSG.headerBytes + MSG.entryBytes * MSG.maxEntries;
  // STATE_REQUEST reasons and STATE_ACK statuses by their wire value (wasm/src/protocol.hpp).
  const TRANSFER_REASONS = [null, 'rejoin', 'resync'];
  const ACK_STATUS = ['receiving', 'complete', 'rejected'];
  const PW = L.plan.words;
  const RQ = L.plan.request;
  const REQ_BYTES = L.plan.requestBytes;
  const REQUEST = Object.freeze({
    LOAD: L.requestKinds.indexOf('load'),
    SAVE: L.requestKinds.indexOf('save'),
    ADVANCE: L.requestKinds.indexOf('advance'),
  });
  const REPLAY = L.requestFlags.replay;
  const STEP = Object.freeze({ TERMINATED: L.stepFlags.terminated, TRUNCATED: L.stepFlags.truncated, REWARDS: L.stepFlags.rewards });
  const OB = L.outbox;
  const OUT_PACKET = L.outKinds.indexOf('packet');
  const PATH_P2P = L.paths.indexOf('p2p');
  const EV = L.event;
  const K = Object.fromEntries(L.fieldKinds.map((n, i) => [n, i]));
  // Relay events as received: the server renames pyodide_player_action to pyodide_other_player_action.
  const RELAY_EVENT_IDS = {
    pyodide_player_action: L.relayEvents.indexOf('pyodide_player_action'),
    pyodide_other_player_action: L.relayEvents.indexOf('pyodide_player_action'),
    p2p_state_sync: L.relayEvents.indexOf('p2p_state_sync'),
  };

  // Plain WASM exports of the hot path (wasm/bindings.cpp). M is a dictionary-mode object, so
  // each is looked up once, after its first call (Emscripten's lazy export wrapper replaces
  // itself with the raw export on that call).
  function rawExport(name) {
    let raw = null;
    return (...args) => {
      if (raw !== null) return raw(...args);
      const r = M[name](...args);
      raw = M[name];
      return r;
    };
  }
  const hotAdvance = rawExport('_p2psync_advance');
  const hotStepped = rawExport('_p2psync_stepped');
  const hotReceive = rawExport('_p2psync_receive');
  const hotSave = rawExport('_p2psync_save_snapshot');
  const hotHash = rawExport('_p2psync_hash_staged');

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
      st.msg = new Uint8Array(st.buf, mp, MSG_BYTES);
      st.msgView = new DataView(st.buf, mp, MSG_BYTES);
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
  const stagedDigest = () => {
    const dv = staging().msgView;
    return hex8(dv.getUint32(MSG.digestHi, true)) + hex8(dv.getUint32(MSG.digestLo, true));
  };

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
      dv.setUint32(MSG.headerBytes + MSG.entryBytes * i, e.frame, true);
      dv.setUint32(MSG.headerBytes + MSG.entryBytes * i + 4, e.action, true);
    });
    return inputs.length;
  }
  const maxInputs = (type) => (type === 'INPUT' ? L.limits.maxInputsPerPacket : L.limits.maxResponseInputs);

  function encode(msg) {
    if (!msg || typeof msg !== 'object') throw new TypeError('encode: message must be an object');
    const t = TYPES[msg.type];
    if (t === undefined) throw new TypeError(`encode: field "type" is not a message type (${msg.type})`);
    const s = staging();
    s.msg.fill(0, 0, MSG.headerBytes);
    const dv = s.msgView;
    dv.setUint8(MSG.type, t);
    switch (msg.type) {
      case 'INPUT':
        dv.setUint16(MSG.playerIndex, uintField(msg, 'playerIndex', 0xffff), true);
        dv.setUint32(MSG.frame, uintField(msg, 'frame', 0xffffffff), true);
        dv.setUint16(MSG.count, writeEntries(dv, msg.inputs, maxInputs('INPUT')), true);
        if (msg.unfocused) dv.setUint8(MSG.flags, 1);
        break;
      case 'QUALITY': {
        dv.setUint32(MSG.episode, uintField(msg, 'episode', 0xffffffff), true);
        dv.setUint32(MSG.frame, uintField(msg, 'frame', 0xffffffff), true);
        let flags = 0;
        if (msg.margin !== undefined && msg.margin !== null) {
          if (typeof msg.margin !== 'number' || !Number.isFinite(msg.margin) || Math.abs(msg.margin) > 2047) {
            throw new TypeError('encode: field "margin" must be a number of frames in -2047..2047');
          }
          dv.setInt16(MSG.margin, Math.round(msg.margin * 16), true);
          flags |= 1;
        }
        if (msg.delay !== undefined && msg.delay !== null) {
          dv.setUint8(MSG.delay, uintField(msg, 'delay', L.limits.maxInputDelay));
          flags |= 2;
        }
        dv.setUint8(MSG.flags, flags);
        break;
      }
      case 'PING': case 'PONG':
        if (typeof msg.timestamp !== 'number' || !Number.isFinite(msg.timestamp) || msg.timestamp < 0) {
          throw new TypeError('encode: field "timestamp" must be a finite number >= 0');
        }
        dv.setFloat64(MSG.timestamp, msg.timestamp, true);
        break;
      case 'KEEPALIVE':
        break;
      case 'EPISODE_END':
        dv.setUint32(MSG.frame, uintField(msg, 'frame', 0xffffffff), true);
        dv.setUint32(MSG.episode, uintField(msg, 'episode', 0xffffffff), true);
        break;
      case 'EPISODE_READY': case 'STATE_HASH': {
        if (msg.type === 'EPISODE_READY') dv.setUint32(MSG.episode, uintField(msg, 'episode', 0xffffffff), true);
        else dv.setUint32(MSG.frame, uintField(msg, 'frame', 0xffffffff), true);
        const [hi, lo] = hexToWords(msg.digest, 'digest');
        dv.setUint32(MSG.digestHi, hi, true);
        dv.setUint32(MSG.digestLo, lo, true);
        break;
      }
      case 'INPUT_REQUEST':
        dv.setUint32(MSG.start, uintField(msg, 'start', 0xffffffff), true);
        dv.setUint32(MSG.end, uintField(msg, 'end', 0xffffffff), true);
        break;
      case 'INPUT_RESPONSE':
        dv.setUint16(MSG.playerIndex, uintField(msg, 'playerIndex', 0xffff), true);
        dv.setUint16(MSG.count, writeEntries(dv, msg.inputs, maxInputs('INPUT_RESPONSE')), true);
        if (msg.unfocused) dv.setUint8(MSG.flags, 1);
        break;
      case 'FOCUS_STATE':
        if (typeof msg.focused !== 'boolean' && msg.focused !== 0 && msg.focused !== 1) {
          throw new TypeError('encode: field "focused" must be a boolean');
        }
        dv.setUint8(MSG.focused, msg.focused ? 1 : 0);
        dv.setUint32(MSG.frame, uintField(msg, 'frame', 0xffffffff), true);
        break;
      case 'STATE_REQUEST': {
        dv.setUint32(MSG.transferId, uintField(msg, 'transferId', 0xffffffff), true);
        const reason = TRANSFER_REASONS.indexOf(msg.reason);
        if (reason < 1) throw new TypeError('encode: field "reason" must be "rejoin" or "resync"');
        dv.setUint8(MSG.reason, reason);
        dv.setUint8(MSG.source, uintField(msg, 'source', 255));
        dv.setUint32(MSG.episode, uintField(msg, 'episode', 0xffffffff), true);
        dv.setUint32(MSG.frame, uintField(msg, 'frame', 0xffffffff), true);
        break;
      }
      case 'STATE_CHUNK': {
        dv.setUint32(MSG.transferId, uintField(msg, 'transferId', 0xffffffff), true);
        dv.setUint32(MSG.total, uintField(msg, 'total', 0xffffffff), true);
        dv.setUint32(MSG.index, uintField(msg, 'index', 0xffffffff), true);
        const data = msg.data instanceof Uint8Array ? msg.data : null;
        if (!data || data.length < 1 || data.length > L.limits.transferChunkBytes) {
          throw new TypeError(`encode: field "data" must be a Uint8Array of 1..${L.limits.transferChunkBytes} bytes`);
        }
        dv.setUint16(MSG.count, data.length, true);
        s.msg.set(data, MSG.headerBytes);
        break;
      }
      case 'STATE_ACK': {
        dv.setUint32(MSG.transferId, uintField(msg, 'transferId', 0xffffffff), true);
        const status = ACK_STATUS.indexOf(msg.status);
        if (status < 0) throw new TypeError('encode: field "status" must be "receiving", "complete" or "rejected"');
        dv.setUint8(MSG.status, status);
        dv.setUint32(MSG.index, uintField(msg, 'firstMissing', 0xffffffff), true);
        dv.setUint32(MSG.bitmap, uintField(msg, 'bitmap', 0xffffffff), true);
        break;
      }
    }
    const n = M.encodeStaged();
    if (!n) throw new TypeError(`encode: field "${M.lastError()}" is invalid for ${msg.type}`);
    return staging().bytes.slice(0, n);
  }

  function readEntries(dv, count) {
    const out = new Array(count);
    for (let i = 0; i < count; i++) {
      const p = MSG.headerBytes + MSG.entryBytes * i;
      out[i] = { frame: dv.getUint32(p, true), action: dv.getUint32(p + 4, true) };
    }
    return out;
  }

  function decode(bytes) {
    const b = toBytes(bytes);
    const len = stageBytes(b);
    const code = M.decodeStaged(len);
    if (code !== 0) return { error: DECODE[code] ?? 'UNKNOWN' };
    const dv = staging().msgView;
    const type = TYPE_NAMES[dv.getUint8(MSG.type)];
    const digest = () => hex8(dv.getUint32(MSG.digestHi, true)) + hex8(dv.getUint32(MSG.digestLo, true));
    const count = () => dv.getUint16(MSG.count, true);
    switch (type) {
      case 'INPUT': {
        const m = { type, playerIndex: dv.getUint16(MSG.playerIndex, true), frame: dv.getUint32(MSG.frame, true), inputs: readEntries(dv, count()) };
        if (dv.getUint8(MSG.flags)) m.unfocused = true;
        return m;
      }
      case 'QUALITY': {
        const m = { type, episode: dv.getUint32(MSG.episode, true), frame: dv.getUint32(MSG.frame, true) };
        const flags = dv.getUint8(MSG.flags);
        if (flags & 1) m.margin = dv.getInt16(MSG.margin, true) / 16;
        if (flags & 2) m.delay = dv.getUint8(MSG.delay);
        return m;
      }
      case 'PING': case 'PONG':
        return { type, timestamp: dv.getFloat64(MSG.timestamp, true) };
      case 'KEEPALIVE':
        return { type };
      case 'EPISODE_END':
        return { type, frame: dv.getUint32(MSG.frame, true), episode: dv.getUint32(MSG.episode, true) };
      case 'EPISODE_READY':
        return { type, episode: dv.getUint32(MSG.episode, true), digest: digest() };
      case 'STATE_HASH':
        return { type, frame: dv.getUint32(MSG.frame, true), digest: digest() };
      case 'INPUT_REQUEST':
        return { type, start: dv.getUint32(MSG.start, true), end: dv.getUint32(MSG.end, true) };
      case 'INPUT_RESPONSE': {
        const m = { type, playerIndex: dv.getUint16(MSG.playerIndex, true), inputs: readEntries(dv, count()) };
        if (dv.getUint8(MSG.flags)) m.unfocused = true;
        return m;
      }
      case 'FOCUS_STATE':
        return { type, focused: dv.getUint8(MSG.focused) === 1, frame: dv.getUint32(MSG.frame, true) };
      case 'STATE_REQUEST':
        return { type, transferId: dv.getUint32(MSG.transferId, true), reason: TRANSFER_REASONS[dv.getUint8(MSG.reason)], source: dv.getUint8(MSG.source),
          episode: dv.getUint32(MSG.episode, true), frame: dv.getUint32(MSG.frame, true) };
      case 'STATE_CHUNK':
        return { type, transferId: dv.getUint32(MSG.transferId, true), total: dv.getUint32(MSG.total, true), index: dv.getUint32(MSG.index, true),
          data: staging().msg.slice(MSG.headerBytes, MSG.headerBytes + count()) };
      case 'STATE_ACK':
        return { type, transferId: dv.getUint32(MSG.transferId, true), status: ACK_STATUS[dv.getUint8(MSG.status)],
          firstMissing: dv.getUint32(MSG.index, true), bitmap: dv.getUint32(MSG.bitmap, true) };
    }
    return { error: 'UNKNOWN_TYPE' };
  }

  function hash(state, options = {}) {
    const len = stageState(state);
    if (!hotHash(len, options.floatDigits ?? 0)) throw new TypeError('hash: state is not valid JSON (canonicalize mode)');
    return stagedDigest();
  }

  // ---------------------------------------------------------------- record readers
  // The only readers of the outbox and event record formats in JS (wasm/src/outbox.hpp, events.hpp).
  function readOutbox(view, dv, used, out, copy) {
    let off = 0;
    while (off + OB.headerBytes <= used) {
      const kind = view[off + OB.kind];
      const path = view[off + OB.path];
      const to = (view[off + OB.to] << 24) >> 24;
      const ev = view[off + OB.event];
      const len = dv.getUint32(off + OB.length, true);
      const start = off + OB.headerBytes;
      if (kind === OUT_PACKET) {
        const bytes = copy || path !== PATH_P2P ? view.slice(start, start + len) : view.subarray(start, start + len);
        if (path === PATH_P2P) out.push({ path: 'p2p', to, bytes });
        else out.push({ path: 'relay', to, event: L.relayEvents[ev], data: { to, bytes }, bytes });
      } else {
        out.push({ path: 'relay', to, event: L.relayEvents[ev], data: JSON.parse(textDecoder.decode(view.subarray(start, start + len))) });
      }
      off = start + Math.ceil(len / OB.align) * OB.align;
    }
  }

  const RW = L.row;
  const RF = L.rowFlags;
  /** Research rows (wasm/src/research_data.hpp) into objects. */
  function readRows(view, dv, from, to, size, numActors, out) {
    for (let off = from; off + size <= to; off += size) {
      const flags = view[off + RW.flags];
      const actions = new Array(numActors), rewards = new Array(numActors);
      for (let a = 0; a < numActors; a++) {
        actions[a] = view[off + RW.actions + a];
        rewards[a] = dv.getFloat64(off + RW.rewards + 8 * a, true);
      }
      out.push({
        frame: dv.getInt32(off + RW.frame, true),
        episodeFrame: dv.getInt32(off + RW.episodeFrame, true),
        episode: dv.getUint32(off + RW.episode, true),
        predictedMask: dv.getUint16(off + RW.predictedMask, true),
        unfocusedMask: dv.getUint16(off + RW.unfocusedMask, true),
        rollbacks: dv.getUint16(off + RW.rollbacks, true),
        inputDelay: view[off + RW.inputDelay],
        terminated: (flags & RF.terminated) !== 0,
        truncated: (flags & RF.truncated) !== 0,
        hasRewards: (flags & RF.rewards) !== 0,
        firstSteppedMs: dv.getFloat64(off + RW.firstSteppedMs, true),
        actions,
        rewards,
      });
    }
  }

  function readEvents(view, dv, from, to, out) {
    let off = from;
    while (off + EV.headerBytes <= to) {
      const ev = { type: L.eventTypes[view[off + EV.type]] };
      const n = view[off + EV.fieldCount];
      for (let i = 0; i < n; i++) {
        const p = off + EV.headerBytes + i * EV.fieldBytes;
        const name = L.fields[view[p + EV.fieldId]];
        const kind = view[p + EV.fieldKind];
        if (kind === K.number) ev[name] = dv.getFloat64(p + EV.value, true);
        else if (kind === K.bool) ev[name] = dv.getFloat64(p + EV.value, true) !== 0;
        else if (kind === K.null) ev[name] = null;
        else if (kind === K.hex64) ev[name] = hex8(dv.getUint32(p + EV.value, true)) + hex8(dv.getUint32(p + EV.value + 4, true));
        else {
          const t0 = off + dv.getUint32(p + EV.textOffset, true);
          const text = textDecoder.decode(view.subarray(t0, t0 + dv.getUint16(p + EV.textLength, true)));
          ev[name] = kind === K.json ? JSON.parse(text) : text;
        }
      }
      out.push(ev);
      off += dv.getUint16(off + EV.recordBytes, true);
    }
  }

  // ---------------------------------------------------------------- the plan
  /** The plan of the engine's last advance(): header fields, and the ordered requests read
   * through views (valid until the next engine call; web/driver.js runs them). */
  class Plan {
    constructor(engine) {
      this._e = engine;
      this.status = 'RUN';
      this.frame = 0;
      this.episode = 0;
      this.episodeStart = 0;
      this.confirmedFrame = -1;
      this.verifiedFrame = -1;
      this.terminalFrame = -1;
      this.inputDelay = 0;
      this.pacingMs = 0;
      this.requests = 0;
      this.rollback = null;
      this.outgoing = [];
      this.events = [];
      this._rb = { targetFrame: 0, loadFrame: 0, count: 0 };
    }
    _read() {
      const e = this._e;
      e._views();
      const H = e._H;
      this.status = L.status[H[PW.status]];
      this.frame = H[PW.frame];
      this.episode = H[PW.episode];
      this.episodeStart = H[PW.episodeStart];
      this.confirmedFrame = H[PW.confirmedFrame];
      this.verifiedFrame = H[PW.verifiedFrame];
      this.terminalFrame = H[PW.terminalFrame];
      this.inputDelay = H[PW.inputDelay];
      this.pacingMs = H[PW.pacingUs] / 1000;
      this.requests = H[PW.requestCount];
      if (H[PW.rollbackTarget] >= 0) {
        const r = this._rb;
        r.targetFrame = H[PW.rollbackTarget];
        r.loadFrame = H[PW.loadFrame];
        r.count = H[PW.replayCount];
        this.rollback = r;
      } else {
        this.rollback = null;
      }
    }
    /** lib.REQUEST.LOAD | SAVE | ADVANCE */
    kind(i) { this._e._views(); return this._e._req[i * REQ_BYTES + RQ.kind]; }
    frameOf(i) { this._e._views(); return this._e._reqDv.getInt32(i * REQ_BYTES + RQ.frame, true); }
    episodeFrameOf(i) { this._e._views(); return this._e._reqDv.getInt32(i * REQ_BYTES + RQ.episodeFrame, true); }
    isReplay(i) { this._e._views(); return (this._e._req[i * REQ_BYTES + RQ.flags] & REPLAY) !== 0; }
    predictedMaskOf(i) { this._e._views(); return this._e._reqDv.getUint16(i * REQ_BYTES + RQ.predictedMask, true); }
    /** Actions of request i (players then bots): a view, valid until the next engine call. */
    actionsOf(i) {
      const e = this._e;
      e._views();
      const o = i * REQ_BYTES + RQ.actions;
      return e._req.subarray(o, o + e._numActors);
    }
    /** How many Advance requests the plan holds (frames to step, replays included). */
    get steps() {
      let n = 0;
      for (let i = 0; i < this.requests; i++) if (this.kind(i) === REQUEST.ADVANCE) n++;
      return n;
    }
  }

  // ---------------------------------------------------------------- engine
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
      this._e = h.handle();
      this._buf = null;
      this._numActors = h.numActors();
      this._numBots = config.numBots ?? 0;
      this._planPtr = h.planPtr();
      this._reqCap = h.requestCapacity();
      this._resultOff = h.resultOffset();
      this._botOff = h.botOffset();
      this._out = { ptr: h.outPtr(), cap: h.outCapacity() };
      this._reply = { ptr: h.replyPtr(), cap: h.replyCapacity() };
      this._ev = { ptr: h.eventsPtr(), cap: h.eventsCapacity() };
      this._rowArena = { ptr: h.rowsPtr(), cap: h.rowsCapacity() };
      this._rxPtr = h.rxPtr();
      this._rxCap = h.rxCapacity();
      /** Called with each message produced while receiving (PONG, INPUT_RESPONSE, END/READY
       * answers, ...). When unset, those messages go out with the next plan's outgoing. */
      this.onOutgoing = null;
      /** Called with each engine event as soon as it is read (after every engine call). When
       * unset, events are collected: plan.events holds advance()'s, takeEvents() the rest. */
      this.onEvent = null;
      /** Called with each research row (one per confirmed frame, in order) as soon as it is read.
       * When unset, rows are collected for takeRows(). */
      this.onRow = null;
      this._pendingRows = [];
      this._pendingReplies = [];
      this._pendingEvents = [];
      this._plan = new Plan(this);
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
      this._H = new Int32Array(buf, p, L.plan.headerWords);
      const reqOff = p + L.plan.headerWords * 4;
      this._req = new Uint8Array(buf, reqOff, this._reqCap * REQ_BYTES);
      this._reqDv = new DataView(buf, reqOff, this._reqCap * REQ_BYTES);
      this._rewards = new Float64Array(buf, p + this._resultOff, this._numActors);
      this._bot = new Uint8Array(buf, p + this._botOff, L.plan.botBytes);
      for (const a of [this._out, this._reply, this._ev, this._rowArena]) {
        a.view = new Uint8Array(buf, a.ptr, a.cap);
        a.dv = new DataView(buf, a.ptr, a.cap);
      }
      this._rx = new Uint8Array(buf, this._rxPtr, this._rxCap);
    }

    get numActors() { return this._numActors; }
    get frame() { return this._h.frame(); }
    /** Request kinds (plan.kind(i)) and step flags (stepped), as lib.REQUEST / lib.STEP. */
    get REQUEST() { return REQUEST; }
    get STEP() { return STEP; }
    /** The layout table of the module (plan, records, enums, names). */
    get layout() { return L; }

    /** Plans this tick. Returns the (reused) Plan: run it with web/driver.js runPlan. */
    advance(nowMs, localAction = 0, botActions = null, bufferedAmount = 0) {
      this._views();
      if (botActions && this._numBots) this._bot.set(botActions.length > this._numBots ? botActions.slice(0, this._numBots) : botActions);
      hotAdvance(this._e, nowMs, localAction | 0, +bufferedAmount || 0);
      const plan = this._plan;
      plan._read();
      const out = [];
      if (this._pendingReplies.length) {
        for (const m of this._pendingReplies) out.push(m);
        this._pendingReplies.length = 0;
      }
      if (this._H[PW.outCount] > 0) readOutbox(this._out.view, this._out.dv, this._H[PW.outBytes], out, false);
      plan.outgoing = out;
      this._readEvents();
      this._readRows();
      plan.events = this.onEvent ? [] : this.takeEvents();
      return plan;
    }

    /** Reports the step of `frame` (an Advance request of the plan, in order). flags: lib.STEP
     * bits (TERMINATED / TRUNCATED when this step ended the episode; REWARDS when stepRewards
     * holds its rewards). preState: the pre-step state of `frame` when the plan had a Save for
     * it (saved in the same call). Returns true to go on with the plan, false when it ends here. */
    stepped(frame, flags = 0, preState = null) {
      const len = preState == null ? 0 : stageState(preState);
      const go = hotStepped(this._e, frame, flags | 0, len) === 1;
      this._views();
      const H = this._H;
      if (H[PW.eventBytes] > H[PW.eventRead]) this._readEvents();
      if (H[PW.rowBytes] > H[PW.rowRead]) this._readRows();
      return go;
    }

    _readRows() {
      const H = this._H;
      const to = H[PW.rowBytes];
      const from = H[PW.rowRead];
      if (to <= from) return;
      const got = this.onRow ? [] : this._pendingRows;
      readRows(this._rowArena.view, this._rowArena.dv, from, to, H[PW.rowSize], this._numActors, got);
      H[PW.rowRead] = to;
      if (this.onRow) for (const r of got) this.onRow(r);
    }

    /** Research rows read since the last call (when onRow is unset). */
    takeRows() {
      this._views();
      this._readRows();
      const r = this._pendingRows;
      this._pendingRows = [];
      return r;
    }

    /** The local page's focus changed (visibilitychange): stamped on the local inputs chosen from
     * now on and announced to every peer (FOCUS_STATE on P2P and the relay, via onOutgoing). */
    setFocus(focused, nowMs) {
      this._h.setFocus(!!focused, nowMs);
      this._result(0);
    }

    /** Whether the engine is paused (focusPolicy 'pause' and some page hidden): the mask of those players. */
    get pausedMask() { this._views(); return this._H[PW.paused]; }

    /** Rewards of the step about to be reported (Float64Array, one per actor). */
    get stepRewards() { this._views(); return this._rewards; }

    _readEvents() {
      const H = this._H;
      const to = H[PW.eventBytes];
      const from = H[PW.eventRead];
      if (to <= from) return;
      const got = this.onEvent ? [] : this._pendingEvents;
      readEvents(this._ev.view, this._ev.dv, from, to, got);
      H[PW.eventRead] = to;
      if (this.onEvent) for (const ev of got) this.onEvent(ev);
    }

    /** Events read since the last call (when onEvent is unset). */
    takeEvents() {
      this._views();
      this._readEvents();
      const e = this._pendingEvents;
      this._pendingEvents = [];
      return e;
    }

    _result(code) {
      this._views();
      const H = this._H;
      if (H[PW.replyCount] > 0) {
        const replies = [];
        readOutbox(this._reply.view, this._reply.dv, H[PW.replyBytes], replies, true);
        if (this.onOutgoing) for (const m of replies) this.onOutgoing(m);
        else for (const m of replies) this._pendingReplies.push(m);
      }
      if (H[PW.eventBytes] > H[PW.eventRead]) this._readEvents();
      return RX[code] ?? 'UNKNOWN';
    }

    receive(bytes, fromPeer, via, nowMs) {
      this._views();
      const b = toBytes(bytes);
      if (b.length <= this._rxCap) this._rx.set(b);
      return this._result(hotReceive(this._e, b.length, fromPeer, via === 'relay' ? 1 : 0, nowMs));
    }

    receiveRelayInput(playerIndex, frame, action, nowMs, fromPeer = -1) {
      if (!Number.isInteger(playerIndex) || !Number.isInteger(frame) || !Number.isInteger(action)) return 'BAD_RELAY_JSON';
      return this._result(this._h.receiveRelayInput(playerIndex, frame, action, nowMs, fromPeer));
    }

    /** A relay event as the server delivers it: 'pyodide_other_player_action' / 'p2p_state_sync'
     * (payload object or JSON text) or 'p2psync_packet' ({from, bytes}). */
    receiveRelay(event, data, fromPeer, nowMs) {
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
      const ok = hotSave(this._e, frame, stageState(state)) === 1;
      this._views();
      if (this._H[PW.eventBytes] > this._H[PW.eventRead]) this._readEvents();
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

    onChannelOpen(peer, nowMs) { this._h.onChannelOpen(peer, nowMs); this.takeEventsIfHandled(); }
    onChannelClosed(peer, nowMs) { this._h.onChannelClosed(peer, nowMs); this.takeEventsIfHandled(); }
    onConnectionFailed(peer, nowMs) { this._h.onConnectionFailed(peer, nowMs); this.takeEventsIfHandled(); }
    takeEventsIfHandled() { if (this.onEvent) { this._views(); this._readEvents(); } }
    setConnectionType(type) {
      if (!this._h.setConnectionType(String(type))) throw new TypeError('connectionType must be direct, relay or unknown');
    }
    resetEpisode(options = {}) {
      const err = this._h.resetEpisode(options.inputDelay ?? -1);
      if (err) throw new Error(`resetEpisode: ${err}`);
      this._plan._read();
    }

    // ---- state transfer (rejoin after a reload, desync recovery)
    /** true while a rejoining engine (config rejoin) waits for a peer's state (plan status JOINING). */
    get joining() { return this._h.joining(); }
    /**
     * Answers a peer's state request (event stateRequest) with `attachment` (string or bytes:
     * e.g. the research rows the rejoiner lost). Without it the engine sends the state with no
     * attachment at its next advance(). Returns false when no request of that peer is pending.
     */
    serveState(peer, attachment = null, nowMs = 0) {
      const len = attachment == null ? 0 : stageState(attachment);
      const ok = this._h.serveState(peer, len, nowMs);
      this.takeEventsIfHandled();
      return ok;
    }
    /** The attachment of the last state this engine loaded (event stateLoaded), as bytes. */
    transferAttachment() {
      const n = this._h.attachmentLength();
      return n ? new Uint8Array(M.HEAPU8.buffer, this._h.attachmentPtr(), n).slice() : new Uint8Array(0);
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
    REQUEST,
    STEP,
    layout: L,
    version: '0.2.0',
    heapBytes: () => M.HEAPU8.buffer.byteLength,
    heapUsed: () => M._p2psync_heap_used(),
    _module: M,
  });
}
