// The adversarial-peer suite through the real .wasm (web/p2psync.js): a small JS loop runs a live
// session of two (or three) engines exactly like a page does (advance -> outgoing -> rollback /
// replay -> snapshot -> step), over an in-memory link (lossy P2P, ordered relay). Each case sends
// an attack into peer 0 and asserts:
//   * it is rejected with the named error (the string the glue returns);
//   * the honest peers stay in sync: identical confirmed action logs, 0 desyncs, the confirmed
//     frame never went back;
//   * memory is bounded: every engine's memoryBytes() is unchanged and the WASM heap did not grow.
//   node --test tests/node/adversarial.test.mjs        (needs build/wasm: scripts/build wasm)
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadP2PSync } from '../../web/p2psync.js';

let lib;
before(async () => { lib = await loadP2PSync(); });

const FRAME_MS = 1000 / 30;

function rngOf(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Deterministic toy game: a rolling hash of every action.
class Game {
  constructor() { this.f = 0; this.h = 2166136261; }
  step(actions) {
    for (let i = 0; i < actions.length; i++) this.h = Math.imul(this.h ^ (actions[i] + 31 * i), 16777619) >>> 0;
    this.f++;
  }
  getState() { return JSON.stringify({ f: this.f, h: this.h }); }
  setState(text) { const s = JSON.parse(text); this.f = s.f; this.h = s.h; }
}

/** A live session of `players` engines; peer 0 is the victim of every attack. */
class Mini {
  constructor({ players = 2, seed = 1, loss = 0.08 } = {}) {
    this.players = players;
    this.rng = rngOf(seed);
    this.loss = loss;
    this.now = 0;
    this.queue = [];
    this.seq = 0;
    this.relayLast = new Map();
    this.peers = [];
    for (let i = 0; i < players; i++) {
      const engine = new lib.SyncEngine({ numPlayers: players, localPlayerIndex: i });
      const peer = { index: i, engine, game: new Game(), action: 0, log: [], loggedUpTo: -1, confirmed: -1,
        desyncs: 0, errors: [], memory: engine.memoryBytes(), episodeStart: 0, pendingLogReset: false };
      engine.onOutgoing = (m) => this.send(i, m);
      this.peers.push(peer);
    }
  }

  get victim() { return this.peers[0].engine; }
  get frame() { return this.victim.frame; }

  send(from, m) {
    const targets = m.to >= 0 ? [m.to] : this.peers.map((p) => p.index).filter((t) => t !== from);
    for (const to of targets) {
      if (m.path === 'p2p') {
        if (this.rng() < this.loss) continue;
        this.push(this.now + 15 + this.rng() * 20, { to, from, path: 'p2p', bytes: m.bytes.slice() });
      } else {
        const key = `${from}>${to}`;
        const at = Math.max(this.now + 40, (this.relayLast.get(key) ?? 0) + 0.001);
        this.relayLast.set(key, at);
        const data = m.event === 'p2psync_packet' ? { bytes: (m.bytes ?? m.data.bytes).slice() } : m.data;
        this.push(at, { to, from, path: 'relay', event: m.event, data });
      }
    }
  }
  push(at, d) { d.at = at; d.seq = this.seq++; this.queue.push(d); }

  deliver(d) {
    const e = this.peers[d.to].engine;
    if (d.path === 'p2p') return e.receive(d.bytes, d.from, 'p2p', d.at);
    if (d.event === 'p2psync_packet') return e.receive(d.data.bytes, d.from, 'relay', d.at);
    // As the server relays them: renamed, with the sender's index attached.
    const event = d.event === 'pyodide_player_action' ? 'pyodide_other_player_action' : d.event;
    return e.receiveRelay(event, { ...d.data, from: d.from }, d.from, d.at);
  }

  stepPeer(p) {
    const e = p.engine;
    if (this.rng() < 0.2) p.action = Math.floor(this.rng() * 5);
    const plan = e.advance(this.now, p.action);
    const status = plan.status;
    const frame = plan.frame;
    const save = plan.saveSnapshot;
    const actions = status === 'RUN' ? plan.actions.slice() : null;
    const confirmed = plan.confirmedFrame;
    let rb = null;
    if (plan.rollback) {
      const r = plan.rollback;
      rb = { load: r.loadFrame, acts: [], flags: [] };
      for (let k = 0; k < r.count; k++) { rb.acts.push(r.actions(k).slice()); rb.flags.push(r.resnapshot(k)); }
    }
    if (p.pendingLogReset) { p.loggedUpTo = plan.episodeStart - 1; p.pendingLogReset = false; }
    for (const ev of plan.events) {
      if (ev.type === 'desync') p.desyncs++;
      if (ev.type === 'error') p.errors.push(ev);
    }
    for (const m of plan.outgoing) this.send(p.index, m);
    if (rb) {
      const text = e.snapshotText(rb.load);
      if (text === null) throw new Error(`peer ${p.index}: snapshot ${rb.load} missing for a rollback`);
      p.game.setState(text);
      for (let k = 0; k < rb.acts.length; k++) {
        if (rb.flags[k]) e.saveSnapshot(rb.load + k, p.game.getState());
        p.game.step(rb.acts[k]);
      }
    }
    if (status === 'RUN') {
      if (save) e.saveSnapshot(frame, p.game.getState());
      p.game.step(actions);
    }
    if (confirmed < p.confirmed && !p.episodeChanged) throw new Error(`peer ${p.index}: confirmed frame went back`);
    p.episodeChanged = false;
    p.confirmed = confirmed;
    if (confirmed > p.loggedUpTo) {
      const bytes = e.actionLog(p.loggedUpTo + 1, confirmed);
      for (const b of bytes) p.log.push(b);
      p.loggedUpTo += bytes.length / e.numActors;
    }
  }

  /** One frame period: deliver what is due, then every peer steps once. */
  tick() {
    this.now += FRAME_MS;
    this.queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
    while (this.queue.length && this.queue[0].at <= this.now) this.deliver(this.queue.shift());
    for (const p of this.peers) this.stepPeer(p);
  }

  run(frames) { for (let k = 0; k < frames; k++) this.tick(); }

  /** The victim receives attacker bytes as if from `from`. */
  attack(bytes, from = 1, via = 'p2p') { return this.victim.receive(Uint8Array.from(bytes), from, via, this.now); }

  /** Runs `more` frames, then the honest-peer checks. */
  finish(more = 240) {
    this.run(more);
    const n = Math.min(...this.peers.map((p) => p.log.length));
    assert.ok(n >= (this.frame - this.logBase() - 40) * this.peers[0].engine.numActors, `logs cover the session (${n})`);
    for (const p of this.peers.slice(1)) {
      assert.deepEqual(p.log.slice(0, n), this.peers[0].log.slice(0, n), `peer ${p.index}'s confirmed log equals peer 0's`);
    }
    for (const p of this.peers) {
      assert.equal(p.desyncs, 0, `peer ${p.index}: no desync`);
      assert.deepEqual(p.errors, [], `peer ${p.index}: no engine error`);
      assert.equal(p.engine.memoryBytes(), p.memory, `peer ${p.index}: memoryBytes unchanged`);
      const m = p.engine.exportSessionMetrics();
      assert.equal(m.sync.desyncs, 0);
      assert.ok(m.session.verifiedFrame > this.frame - 60, `peer ${p.index}: hashes verified near the end (${m.session.verifiedFrame})`);
    }
  }
  logBase() { return this.peers[0].logBase ?? 0; }

  delete() { for (const p of this.peers) p.engine.delete(); }
}

function live(opts = {}, warmup = 240) {
  const s = new Mini(opts);
  s.run(warmup);
  return s;
}

const u32be = (v) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
const f64be = (x) => { const dv = new DataView(new ArrayBuffer(8)); dv.setFloat64(0, x); return [...new Uint8Array(dv.buffer)]; };

function everyType(player, frame) {
  return {
    INPUT: lib.encode({ type: 'INPUT', playerIndex: player, frame, inputs: [{ frame: frame - 1, action: 1 }, { frame, action: 2 }] }),
    INPUT_RESPONSE: lib.encode({ type: 'INPUT_RESPONSE', playerIndex: player, inputs: [{ frame, action: 1 }] }),
    PING: lib.encode({ type: 'PING', timestamp: 1234.5 }),
    PONG: lib.encode({ type: 'PONG', timestamp: 1234.5 }),
    KEEPALIVE: lib.encode({ type: 'KEEPALIVE' }),
    EPISODE_END: lib.encode({ type: 'EPISODE_END', frame: 10, episode: 0 }),
    EPISODE_READY: lib.encode({ type: 'EPISODE_READY', episode: 0, digest: '0123456789abcdef' }),
    STATE_HASH: lib.encode({ type: 'STATE_HASH', frame: 5, digest: '0123456789abcdef' }),
    INPUT_REQUEST: lib.encode({ type: 'INPUT_REQUEST', start: frame - 3, end: frame }),
    FOCUS_STATE: lib.encode({ type: 'FOCUS_STATE', focused: true, frame }),
  };
}

describe('adversarial peer (real .wasm, live two-engine session)', () => {
  test('truncated packets of every type, count 0 / 255, trailing bytes, unknown type, flags, non-monotonic frames', () => {
    const s = live();
    const heap = lib.heapBytes();
    for (const [type, bytes] of Object.entries(everyType(1, s.frame))) {
      for (let cut = 1; cut < bytes.length; cut++) assert.equal(s.attack(bytes.slice(0, cut)), 'TRUNCATED', `${type} cut to ${cut}`);
      assert.equal(s.attack([]), 'EMPTY');
      assert.equal(s.attack([...bytes, 0]), 'TRAILING_BYTES', `${type} + 1 byte`);
      s.tick();
    }
    const input = [...everyType(1, s.frame).INPUT];
    assert.equal(s.attack(Object.assign([...input], { 7: 0 })), 'BAD_COUNT');
    assert.equal(s.attack(Object.assign([...input], { 7: 255 })), 'BAD_COUNT');
    assert.equal(s.attack([0x13, 0, 1, 0, 0]), 'BAD_COUNT');
    assert.equal(s.attack(Object.assign([...input], { 8: 1 })), 'BAD_FLAGS');
    for (const t of [0x00, 0x08, 0x11, 0xff]) assert.equal(s.attack([t, 0, 0, 0, 0]), 'UNKNOWN_TYPE');
    const f = s.frame;
    const nonMono = [0x01, 0, 1, ...u32be(f), 2, 0, ...u32be(f), 1, ...u32be(f - 1), 1];
    assert.equal(s.attack(nonMono), 'NON_MONOTONIC_FRAMES');
    assert.equal(s.attack(new Uint8Array(70000)), 'OVERSIZED');
    assert.equal(lib.heapBytes(), heap, 'the WASM heap did not grow');
    s.finish();
    s.delete();
  });

  test('playerIndex of another peer is SPOOFED_PLAYER, of a nonexistent player UNKNOWN_PLAYER', () => {
    const s = live({ players: 3, seed: 2 });
    const f = s.frame;
    assert.equal(s.attack(everyType(1, f).INPUT, 2), 'SPOOFED_PLAYER');
    assert.equal(s.attack(everyType(1, f).INPUT_RESPONSE, 2), 'SPOOFED_PLAYER');
    assert.equal(s.attack(everyType(0, f).INPUT, 2), 'SPOOFED_PLAYER');
    for (const idx of [3, 4, 255, 65535]) assert.equal(s.attack(everyType(idx, f).INPUT, 1), 'UNKNOWN_PLAYER');
    for (const from of [-1, 0, 3, 9]) assert.equal(s.attack(everyType(1, f).INPUT, from), 'UNKNOWN_PLAYER');
    const action = { player_id: 1, action: 1, frame_number: f + 2, timestamp: 5 };
    assert.equal(s.victim.receiveRelay('pyodide_other_player_action', { ...action, from: 2 }, 2, s.now), 'SPOOFED_PLAYER');
    // A payload "from" naming the victim's other peer while the sender is peer 2.
    assert.equal(s.victim.receiveRelay('pyodide_other_player_action', JSON.stringify({ ...action, from: 1 }), 2, s.now), 'SPOOFED_PLAYER');
    assert.equal(s.victim.receiveRelayInput(1, f + 2, 1, s.now, 2), 'SPOOFED_PLAYER');
    assert.equal(s.victim.receiveRelay('pyodide_other_player_action', { ...action, player_id: 9 }, 1, s.now), 'UNKNOWN_PLAYER');
    s.finish();
    s.delete();
  });

  test('frame 2^32-1 and a frame far in the past are OUT_OF_WINDOW; a conflicting confirmed input is CONFLICT', () => {
    const s = live({ seed: 3 }, 600);
    const max = 0xffffffff;
    assert.equal(s.attack(lib.encode({ type: 'INPUT', playerIndex: 1, frame: max, inputs: [{ frame: max, action: 1 }] })), 'OUT_OF_WINDOW');
    assert.equal(s.attack(lib.encode({ type: 'INPUT_RESPONSE', playerIndex: 1, inputs: [{ frame: max, action: 1 }] })), 'OUT_OF_WINDOW');
    assert.equal(s.victim.receiveRelayInput(1, max, 1, s.now, 1), 'OUT_OF_WINDOW');
    const past = s.frame - 400;
    assert.equal(s.attack(lib.encode({ type: 'INPUT', playerIndex: 1, frame: past, inputs: [{ frame: past, action: 4 }] })), 'OUT_OF_WINDOW');
    // Conflict: a different action for a frame peer 0 has confirmed.
    const c = s.peers[0].confirmed - 2;
    const k = c * 2 + 1;  // numActors = 2: player 1's byte of frame c
    const real = s.peers[0].log[k];
    assert.ok(real !== undefined, 'the confirmed frame is in the log');
    const before = s.victim.actionLog(c - 3, c);
    const fake = (real + 1) % 5;
    assert.equal(s.attack(lib.encode({ type: 'INPUT', playerIndex: 1, frame: c, inputs: [{ frame: c, action: fake }] })), 'CONFLICT');
    assert.equal(s.attack(lib.encode({ type: 'INPUT_RESPONSE', playerIndex: 1, inputs: [{ frame: c, action: fake }] }), 1, 'relay'), 'CONFLICT');
    assert.equal(s.victim.receiveRelay('pyodide_other_player_action', { player_id: 1, action: fake, frame_number: c, timestamp: 1, from: 1 }, 1, s.now), 'CONFLICT');
    assert.deepEqual([...s.victim.actionLog(c - 3, c)], [...before], 'the confirmed actions did not change');
    s.finish();
    s.delete();
  });

  test('PING / PONG with NaN, Inf, negative timestamps are BAD_TIMESTAMP; a PONG never pinged UNSOLICITED_PONG', () => {
    const s = live({ seed: 4 });
    for (const type of [0x02, 0x03]) {
      for (const t of [NaN, Infinity, -Infinity, -1, -1e-300]) assert.equal(s.attack([type, ...f64be(t)]), 'BAD_TIMESTAMP', `${type} ${t}`);
    }
    for (const t of [12345.678, 0, 1e300, s.now + 1000]) assert.equal(s.attack(lib.encode({ type: 'PONG', timestamp: t })), 'UNSOLICITED_PONG');
    s.finish();
    s.delete();
  });

  test('INPUT_REQUEST for 2^32 frames is BAD_RANGE; STATE_HASH future OUT_OF_WINDOW, evicted UNVERIFIABLE', () => {
    const s = live({ seed: 5 }, 900);
    assert.equal(s.attack([0x12, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]), 'BAD_RANGE');
    assert.equal(s.attack([0x12, ...u32be(10), ...u32be(5)]), 'BAD_RANGE');
    const rel = s.frame - s.peers[0].episodeStart;
    const future = Math.floor((rel + 10000) / 5) * 5;
    assert.equal(s.attack(lib.encode({ type: 'STATE_HASH', frame: future, digest: 'badbadbadbadbad0' })), 'OUT_OF_WINDOW');
    assert.equal(s.attack(lib.encode({ type: 'STATE_HASH', frame: 5, digest: 'badbadbadbadbad0' })), 'UNVERIFIABLE');
    const sync = { game_id: 'p2psync', sender_id: 1, frame_number: 5, state_hash: 'badbadbadbadbad0', action_counts: {} };
    assert.equal(s.victim.receiveRelayStateSync({ ...sync, from: 1 }, 1, s.now), 'UNVERIFIABLE');
    assert.equal(s.victim.receiveRelayStateSync({ ...sync, frame_number: future, from: 1 }, 1, s.now), 'OUT_OF_WINDOW');
    s.finish();
    s.delete();
  });

  test('EPISODE_READY / EPISODE_END for a past episode are STALE_EPISODE', () => {
    const s = live({ seed: 6 }, 200);
    const endFrame = 220;
    for (let guard = 0; guard < 5000 && s.peers.some((p) => !p.reset); guard++) {
      s.tick();
      for (const p of s.peers) {
        if (p.reset) continue;
        if (p.engine.frame > endFrame) p.engine.endEpisode(endFrame, s.now);
        try {
          p.engine.resetEpisode();  // throws until the episode end is synced
          p.reset = true;
          p.game = new Game();
          p.episodeChanged = true;
          p.pendingLogReset = true;
        } catch { /* not synced yet */ }
      }
    }
    assert.ok(s.peers.every((p) => p.reset), 'both peers began episode 1');
    s.run(200);
    const start = s.victim.exportSessionMetrics().session.episodeStart;
    assert.ok(start > endFrame, `episode 1 starts after the end of episode 0 (${start})`);
    // From here on, compare the logs from a frame both peers have logged.
    const common = Math.min(...s.peers.map((q) => q.loggedUpTo));
    assert.ok(common >= start + 100);
    for (const p of s.peers) { p.log = []; p.loggedUpTo = common; p.logBase = common + 1; }
    assert.equal(s.attack(lib.encode({ type: 'EPISODE_READY', episode: 0, digest: '1111222233334444' })), 'STALE_EPISODE');
    assert.equal(s.attack(lib.encode({ type: 'EPISODE_READY', episode: 0xffffffff, digest: '1111222233334444' })), 'STALE_EPISODE');
    assert.equal(s.attack(lib.encode({ type: 'EPISODE_END', frame: 10, episode: 0 })), 'STALE_EPISODE');
    s.finish();
    s.delete();
  });

  test('100,000 valid-looking packets in one frame: FLOOD after the per-frame budget, honest traffic next frame', () => {
    const s = live({ seed: 7 });
    const heap = lib.heapBytes();
    const pkts = [lib.encode({ type: 'KEEPALIVE' }), lib.encode({ type: 'PING', timestamp: 1 }), everyType(1, s.frame - 5).INPUT];
    const counts = {};
    for (let k = 0; k < 100000; k++) {
      const r = s.attack(pkts[k % 3], 1, k % 2 ? 'p2p' : 'relay');
      counts[r] = (counts[r] ?? 0) + 1;
    }
    const budget = 64;  // maxPacketsPerPeerPerFrame default
    assert.ok(counts.FLOOD >= 100000 - budget && counts.FLOOD <= 100000 - budget + 8, JSON.stringify(counts));
    assert.equal(s.victim.exportSessionMetrics().rejected.FLOOD, counts.FLOOD);
    assert.equal(lib.heapBytes(), heap, 'the WASM heap did not grow');
    s.tick();
    assert.equal(s.attack(pkts[0]), 'OK', 'honest traffic is accepted in the next frame');
    s.finish();
    s.delete();
  });

  test('malformed and oversized relay JSON is BAD_RELAY_JSON', () => {
    const s = live({ seed: 8 });
    const f = s.frame + 1;
    const good = { player_id: 1, action: 1, frame_number: f, timestamp: 1 };
    const actions = [
      '', '{', 'null', '[1,2]', '"x"', JSON.stringify({ ...good, extra: 1 }), JSON.stringify({ ...good, action: 256 }),
      JSON.stringify({ ...good, action: -1 }), JSON.stringify({ ...good, action: 1.5 }), JSON.stringify({ ...good, frame_number: 2 ** 32 }),
      JSON.stringify({ ...good, timestamp: -1 }), JSON.stringify({ ...good, player_id: [1] }), JSON.stringify({ ...good, player_id: '' }),
      JSON.stringify({ ...good, from: '1' }), JSON.stringify({ ...good, player_id: 'x'.repeat(2000) }),
      '['.repeat(5000) + ']'.repeat(5000), `${JSON.stringify(good)}\u0000junk`,
    ];
    for (const t of actions) assert.equal(s.victim.receiveRelay('pyodide_other_player_action', t, 1, s.now), 'BAD_RELAY_JSON', t.slice(0, 80));
    const counts = {};
    for (let a = 0; a < 12; a++) { counts[a] = {}; for (let x = 0; x < 256; x++) counts[a][x] = 1000000 + x; }
    const sync = { game_id: 'p2psync', sender_id: 1, frame_number: 5, state_hash: '0123456789abcdef', action_counts: {} };
    const syncs = [
      '{}', JSON.stringify({ ...sync, action_counts: counts }), JSON.stringify({ ...sync, state_hash: '0123456789ABCDEF' }),
      JSON.stringify({ ...sync, action_counts: { '01': { 1: 1 } } }), JSON.stringify({ ...sync, action_counts: { 12: { 1: 1 } } }),
      JSON.stringify({ ...sync, game_id: 'g'.repeat(65) }), JSON.stringify({ ...sync, extra: true }),
    ];
    for (const t of syncs) assert.equal(s.victim.receiveRelayStateSync(t, 1, s.now), 'BAD_RELAY_JSON', t.slice(0, 80));
    assert.equal(s.victim.receiveRelay('no_such_event', good, 1, s.now), 'BAD_RELAY_JSON');
    assert.equal(s.victim.receiveRelay('p2psync_packet', {}, 1, s.now), 'BAD_RELAY_JSON');
    assert.equal(s.victim.receiveRelayInput(1, 1.5, 1, s.now, 1), 'BAD_RELAY_JSON');
    s.finish();
    s.delete();
  });
});
