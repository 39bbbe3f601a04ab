// The adversarial-peer suite through the real .wasm (web/p2psync.js): a live session of two (or
// three) SessionPeers — the per-frame code a page runs (web/peer.js, web/driver.js) — over the
// network simulator with the shared toy game (tests/node/helpers.mjs). Each case sends an attack
// into peer 0's engine and asserts:
//   * it is rejected with the named error (the string the glue returns);
//   * the honest peers stay in sync: identical confirmed action logs, 0 desyncs, no engine error,
//     every step reported in plan order, the confirmed frame never went back;
//   * memory is bounded: every engine's memoryBytes() is unchanged and the WASM heap did not grow.
//   node --test tests/node/adversarial.test.mjs        (needs build/wasm: scripts/build wasm)
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadLib, toyWorld, runChecked, assertInSync, describeWorld } from './helpers.mjs';

let lib;
before(async () => { lib = await loadLib(); });

/** A live session of `players` SessionPeers; peer 0 is the victim of every attack. */
class Live {
  constructor({ players = 2, seed = 1, loss = 0.08, game = {} } = {}) {
    // P2P: 25 ± 10 ms one way, lossy; the relay: reliable and ordered, 20 ms slower.
    this.w = toyWorld({ lib, players, seed, profile: 'wifi', overrides: { rttMs: 50, jitterMs: 20, loss, relayExtraRttMs: 40 }, game });
  }
  get victim() { return this.w.peers[0].sp.engine; }
  get frame() { return this.victim.frame; }
  get now() { return this.w.now; }
  /** Runs `frames` frame periods (the confirmed frames checked after every tick). */
  run(frames) { runChecked(this.w, frames); }
  tick() { this.run(1); }
  /** The victim receives attacker bytes as if from `from`. */
  attack(bytes, from = 1, via = 'p2p') { return this.victim.receive(Uint8Array.from(bytes), from, via, this.now); }
  /** Runs `more` frames, then the honest-peer checks. */
  finish(more = 240) {
    this.run(more);
    assertInSync(this.w, { minCompared: this.frame - 40, verifiedWithin: 60 });
  }
  delete() { this.w.destroy(); }
}

function live(opts = {}, warmup = 240) {
  const s = new Live(opts);
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
    assert.equal(s.attack(Object.assign([...input], { 8: 2 })), 'BAD_FLAGS');  // 0x01 is kInputUnfocused
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
    const c = s.w.peers[0].sp.confirmedFrame - 2;
    const real = s.w.peers[0].sp.actionLogBytes(c, c)[1];  // numActors = 2: player 1's byte of frame c
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
    const rel = s.frame - s.w.peers[0].sp.episodeStart;
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
    // episode 0 ends on the game's state (its step of episode frame 220 terminates); the next
    // episode starts by itself once the end is synced (SessionPeer), and never ends
    const endFrame = 220;
    const s = live({ seed: 6, game: { endAt: (st) => st.ep === 0 && st.f > endFrame } }, 200);
    const began = s.w.runUntil(() => s.w.peers.every((p) => p.sp.episode === 1), s.now + 20000);
    assert.ok(began, `both peers began episode 1: ${describeWorld(s.w)}`);
    for (const p of s.w.peers) {
      assert.equal(p.sp.episodeResults.length, 1);
      assert.equal(p.sp.episodeResults[0].frame, endFrame, 'episode 0 ended on the frame whose step terminated');
      assert.equal(p.sp.episodeResults[0].truncated, false);
    }
    s.run(200);
    const start = s.victim.exportSessionMetrics().session.episodeStart;
    assert.ok(start > endFrame, `episode 1 starts after the end of episode 0 (${start})`);
    assert.ok(Math.min(...s.w.peers.map((p) => p.sp.loggedUpTo)) >= start + 100, 'episode 1 frames are confirmed');
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
