// The sync engine through the real .wasm (web/p2psync.js): a two-engine loop over a small JS
// lossy link with a tiny JSON-state game, config errors and named receive errors.
//   node --test tests/node/engine.test.mjs      (needs scripts/build wasm)
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadP2PSync } from '../../web/p2psync.js';

let lib;
before(async () => { lib = await loadP2PSync(); });

const FRAME_MS = 1000 / 30;

function makeRng(seed) {
  let s = (seed * 2654435761) >>> 0 || 1;
  const r = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
  r.int = (n) => Math.floor(r() * n);
  return r;
}

// ---------------------------------------------------------------------------------- the link
// P2P: loss, jitter, reordering, duplicates. Relay: reliable and ordered, a little slower.
class Link {
  constructor(seed, { oneWay = 30, jitter = 12, loss = 0.1, reorder = 0.05, dup = 0.02, relayExtra = 20 } = {}) {
    this.rng = makeRng(seed);
    Object.assign(this, { oneWay, jitter, loss, reorder, dup, relayExtra });
    this.q = [];
    this.seq = 0;
    this.relayLast = new Map();
    this.sent = 0;
    this.lost = 0;
  }
  _push(at, item) {
    item.at = at;
    item.seq = this.seq++;
    // keep sorted by (at, seq): insertion from the back (most items land near the end)
    let i = this.q.length;
    while (i > 0 && (this.q[i - 1].at > at)) i--;
    this.q.splice(i, 0, item);
  }
  send(from, to, path, kind, payload, now) {
    if (path === 'p2p') {
      this.sent++;
      if (this.rng() < this.loss) { this.lost++; return; }
      let d = this.oneWay + (this.rng() - 0.5) * this.jitter;
      if (this.rng() < this.reorder) d += this.jitter + 20;
      d = Math.max(0.5, d);
      this._push(now + d, { from, to, path, kind, payload });
      if (this.rng() < this.dup) this._push(now + d + 5, { from, to, path, kind, payload });
    } else {
      const key = `${from}>${to}`;
      const at = Math.max(now + this.oneWay + this.relayExtra + this.rng() * 2, (this.relayLast.get(key) ?? 0) + 0.001);
      this.relayLast.set(key, at);
      this._push(at, { from, to, path, kind, payload });
    }
  }
  due(t) { return this.q.length > 0 && this.q[0].at <= t; }
  pop() { return this.q.shift(); }
}

// ---------------------------------------------------------------------------------- the game
// State is JSON text, as an env's get_state() would give it.
class TinyGame {
  constructor(actors) { this.s = { frame: 0, h: 2166136261, pos: new Array(actors).fill(0) }; }
  step(actions) {
    for (let i = 0; i < actions.length; i++) {
      this.s.h = Math.imul(this.s.h ^ (actions[i] + 31 * i), 16777619) >>> 0;
      const a = actions[i] % 5;
      this.s.pos[i] += a === 1 ? 1 : a === 2 ? -1 : a === 3 ? 7 : a === 4 ? -7 : 0;
    }
    this.s.frame++;
  }
  text() { return JSON.stringify(this.s); }
  load(text) { this.s = JSON.parse(text); }
}

// ---------------------------------------------------------------------------------- a peer
class Peer {
  constructor(index, numPlayers, link, seed, extra = {}) {
    this.index = index;
    this.numPlayers = numPlayers;
    this.link = link;
    this.engine = new lib.SyncEngine({ numPlayers, localPlayerIndex: index, ...extra });
    this.n = this.engine.numActors;
    this.game = new TinyGame(this.n);
    this.rng = makeRng(seed);
    this.action = 0;
    this.log = [];
    this.logged = 0;
    this.events = {};
    this.rollbacks = 0;
    this.results = {};
    // replies produced while receiving (PONG, INPUT_RESPONSE, ...) go out at once
    this.engine.onOutgoing = (m) => this.sendOut(m, this.now);
    this.now = 0;
  }
  sendOut(m, now) {
    const kind = m.path === 'p2p' ? 'bytes' : m.event;
    const payload = m.path === 'p2p' || m.event === 'p2psync_packet' ? Uint8Array.from(m.bytes) : JSON.stringify(m.data);
    const targets = m.to >= 0 ? [m.to] : [...Array(this.numPlayers).keys()].filter((p) => p !== this.index);
    for (const to of targets) this.link.send(this.index, to, m.path, kind, payload, now);
  }
  deliver(d, now) {
    this.now = now;
    let r;
    if (d.kind === 'bytes') r = this.engine.receive(d.payload, d.from, 'p2p', now);
    else if (d.kind === 'p2psync_packet') r = this.engine.receive(d.payload, d.from, 'relay', now);
    else r = this.engine.receiveRelay(d.kind === 'pyodide_player_action' ? 'pyodide_other_player_action' : d.kind, d.payload, d.from, now);
    this.results[r] = (this.results[r] ?? 0) + 1;
  }
  step(now) {
    this.now = now;
    if (this.rng() < 0.2) this.action = this.rng.int(5);
    const plan = this.engine.advance(now, this.action);
    // views into WASM memory: copy what is used after other engine calls
    const status = plan.status;
    const frame = plan.frame;
    const save = plan.saveSnapshot;
    const actions = plan.actions.slice();
    const confirmed = plan.confirmedFrame;
    let rb = null;
    if (plan.rollback) {
      const r = plan.rollback;
      rb = { loadFrame: r.loadFrame, count: r.count, acts: [], flags: [] };
      for (let k = 0; k < r.count; k++) { rb.acts.push(r.actions(k).slice()); rb.flags.push(r.resnapshot(k)); }
    }
    const events = plan.events;
    for (const m of plan.outgoing) this.sendOut(m, now);
    if (rb) {
      this.rollbacks++;
      const text = this.engine.snapshotText(rb.loadFrame);
      assert.ok(text !== null, `snapshot of frame ${rb.loadFrame} missing`);
      this.game.load(text);
      for (let k = 0; k < rb.count; k++) {
        if (rb.flags[k]) this.engine.saveSnapshot(rb.loadFrame + k, this.game.text());
        this.game.step(rb.acts[k]);
      }
    }
    if (status === 'RUN') {
      if (save) this.engine.saveSnapshot(frame, this.game.text());
      this.game.step(actions);
    }
    for (const ev of events) this.events[ev.type] = (this.events[ev.type] ?? 0) + 1;
    if (confirmed >= this.logged) {
      const bytes = this.engine.actionLog(this.logged, confirmed);
      for (const b of bytes) this.log.push(b);
      this.logged += bytes.length / this.n;
    }
    return status;
  }
}

function runLoop({ players = 2, frames, seed, link: linkOpts, extra }) {
  const link = new Link(seed, linkOpts);
  const rng = makeRng(seed + 1);
  const peers = [];
  const nextAt = [];
  for (let i = 0; i < players; i++) {
    peers.push(new Peer(i, players, link, seed * 10 + i, extra));
    nextAt.push(rng() * FRAME_MS);
  }
  let now = 0;
  for (let guard = 0; Math.min(...peers.map((p) => p.engine.frame)) < frames; guard++) {
    assert.ok(guard < frames * players * 50, 'the loop does not progress');
    const next = Math.min(...nextAt);
    while (link.due(next)) {
      const d = link.pop();
      now = Math.max(now, d.at);
      peers[d.to].deliver(d, now);
    }
    now = next;
    for (let i = 0; i < players; i++) {
      if (nextAt[i] > now) continue;
      nextAt[i] += FRAME_MS;
      peers[i].step(now);
    }
  }
  return { peers, link };
}

test('two engines over a lossy JS link: identical action logs, no desync', () => {
  const frames = 3000;
  const { peers, link } = runLoop({ frames, seed: 5, link: { oneWay: 50, jitter: 20, loss: 0.1, reorder: 0.05, dup: 0.02 } });
  assert.ok(link.lost > 100, 'the link really loses packets');
  const n = peers[0].n;
  const common = Math.min(...peers.map((p) => p.log.length));
  assert.ok(common / n > frames - 40, `common log ${common / n} frames`);
  for (const p of peers) {
    // the log holds every confirmed frame, in order
    assert.equal(p.logged, p.log.length / n);
    assert.deepEqual(p.log.slice(0, common), peers[0].log.slice(0, common), `peer ${p.index} executed other inputs`);
    assert.equal(p.events.desync ?? 0, 0);
    assert.equal(p.events.nondeterminism ?? 0, 0);
    assert.equal(p.events.error ?? 0, 0);
    assert.ok(p.rollbacks > 20, 'mispredictions were rolled back');
    const m = p.engine.p2pMetrics;
    assert.ok(m.inputsReceivedViaP2P > frames - 100);
    assert.ok(p.engine.exportSessionMetrics().session.verifiedFrame > frames - 200);
    assert.ok(p.results.DUPLICATE > 0, 'redundant copies are counted as duplicates');
  }
  for (const p of peers) p.engine.delete();
});

test('three engines, dual send policy (every input on P2P and the relay): identical action logs', () => {
  const { peers } = runLoop({ players: 3, frames: 1200, seed: 8, link: { loss: 0.15 }, extra: { sendPolicy: 'dual' } });
  const common = Math.min(...peers.map((p) => p.log.length));
  assert.ok(common / 3 > 1150);
  for (const p of peers) {
    assert.deepEqual(p.log.slice(0, common), peers[0].log.slice(0, common));
    assert.equal(p.events.desync ?? 0, 0);
    const m = p.engine.p2pMetrics;
    assert.ok(m.inputsSentViaSocketIO > 1000, 'dual sends every input on the relay too');
    p.engine.delete();
  }
});

test('config errors throw naming the key', () => {
  const bad = [
    [{ localPlayerIndex: 0, bogus: 1 }, /config\.bogus/],
    [{}, /config\.localPlayerIndex/],
    [{ localPlayerIndex: 2 }, /config\.localPlayerIndex/],
    [{ localPlayerIndex: 0, numPlayers: 9 }, /config\.numPlayers/],
    [{ localPlayerIndex: 0, inputDelay: 99 }, /config\.inputDelay/],
    [{ localPlayerIndex: 0, inputDelay: 1.5 }, /config\.inputDelay/],
    [{ localPlayerIndex: 0, bufferFrames: 100 }, /config\.bufferFrames/],
    [{ localPlayerIndex: 0, redundancy: 0 }, /config\.redundancy/],
    [{ localPlayerIndex: 0, predictionMethod: 'guess' }, /config\.predictionMethod/],
    [{ localPlayerIndex: 0, sendPolicy: 'both' }, /config\.sendPolicy/],
    [{ localPlayerIndex: 0, timeSync: { window: 0 } }, /config\.timeSync\.window/],
    [{ localPlayerIndex: 0, timeSync: { nope: true } }, /config\.timeSync\.nope/],
    [{ localPlayerIndex: 0, syncTest: { checkDistance: 2, x: 1 } }, /config\.syncTest\.x/],
    [{ localPlayerIndex: 0, syncTest: {} }, /config\.syncTest\.checkDistance/],
    [{ localPlayerIndex: 0, timeSync: 'yes' }, /config\.timeSync/],
    [{ localPlayerIndex: 0, playerIds: ['a'] }, /config\.playerIds/],
    [{ localPlayerIndex: 0, pingIntervalMs: -1 }, /config\.pingIntervalMs/],
  ];
  for (const [cfg, re] of bad) assert.throws(() => new lib.SyncEngine(cfg), re, JSON.stringify(cfg));
  assert.throws(() => new lib.SyncEngine('nope'), TypeError);
  assert.throws(() => new lib.SyncEngine(null), TypeError);
  // a valid one works
  const e = new lib.SyncEngine({ localPlayerIndex: 1, numPlayers: 2, inputDelay: 3, timeSync: { window: 8 } });
  assert.equal(e.numActors, 2);
  e.delete();
});

test('receive() of garbage returns named errors; history and memory stay put', () => {
  const e = new lib.SyncEngine({ localPlayerIndex: 0, numPlayers: 2, timeSync: false });
  let now = 0;
  const plan = e.advance(now, 1);
  assert.equal(plan.status, 'RUN');
  e.saveSnapshot(plan.frame, '{"frame":0}');
  const input = (playerIndex, entries, frame = entries.at(-1)[0]) =>
    lib.encode({ type: 'INPUT', playerIndex, frame, inputs: entries.map(([f, a]) => ({ frame: f, action: a })) });
  const rx = (bytes, from = 1, via = 'p2p') => e.receive(bytes, from, via, now);

  assert.equal(rx(new Uint8Array(0)), 'EMPTY');
  assert.equal(rx(Uint8Array.of(0x7f)), 'UNKNOWN_TYPE');
  assert.equal(rx(Uint8Array.of(0x01, 0, 1)), 'TRUNCATED');
  assert.equal(rx(Uint8Array.of(0x01, 0, 1, 0, 0, 0, 5, 0, 0)), 'BAD_COUNT');
  assert.equal(rx(Uint8Array.of(0x01, 0, 1, 0, 0, 0, 5, 1, 1, 0, 0, 0, 5, 2)), 'BAD_FLAGS');
  const ok = input(1, [[0, 2], [1, 2]]);
  assert.equal(rx(Uint8Array.of(...ok, 0)), 'TRAILING_BYTES');
  assert.equal(rx(Uint8Array.of(0x01, 0, 1, 0, 0, 0, 5, 2, 0, 0, 0, 0, 4, 1, 0, 0, 0, 3, 1)), 'NON_MONOTONIC_FRAMES');
  assert.equal(rx(Uint8Array.of(0x01, 0, 1, 0, 0, 0, 2, 1, 0, 0, 0, 0, 4, 1)), 'FRAME_AFTER_HEADER');
  assert.equal(rx(Uint8Array.of(0x02, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0)), 'BAD_TIMESTAMP');  // +Inf
  assert.equal(rx(Uint8Array.of(0x12, 0, 0, 0, 9, 0, 0, 0, 1)), 'BAD_RANGE');
  assert.equal(rx(new Uint8Array(70000).fill(0x13)), 'OVERSIZED');
  assert.equal(rx(input(0, [[3, 1]])), 'SPOOFED_PLAYER');
  assert.equal(rx(input(5, [[3, 1]])), 'UNKNOWN_PLAYER');
  assert.equal(rx(input(1, [[3, 1]]), 7), 'UNKNOWN_PLAYER');
  assert.equal(rx(input(1, [[100000, 1]])), 'OUT_OF_WINDOW');
  assert.equal(rx(ok), 'OK');
  assert.equal(rx(ok), 'DUPLICATE');
  assert.equal(rx(ok, 1, 'relay'), 'DUPLICATE');
  assert.equal(rx(input(1, [[1, 3]])), 'CONFLICT');
  assert.equal(e.receiveRelay('pyodide_other_player_action', { player_id: 1, action: 2, frame_number: 1, timestamp: 5 }, 1, now), 'DUPLICATE');
  assert.equal(e.receiveRelay('pyodide_other_player_action', { player_id: 1, action: 4, frame_number: 1, timestamp: 5 }, 1, now), 'CONFLICT');
  assert.equal(e.receiveRelay('pyodide_other_player_action', '{"bogus":1', 1, now), 'BAD_RELAY_JSON');
  assert.equal(e.receiveRelay('pyodide_other_player_action', { player_id: 1, action: 999, frame_number: 1, timestamp: 5 }, 1, now), 'BAD_RELAY_JSON');
  assert.equal(e.receiveRelay('pyodide_other_player_action', { player_id: 9, action: 1, frame_number: 1, timestamp: 5 }, 1, now), 'UNKNOWN_PLAYER');
  assert.equal(e.receiveRelay('no_such_event', {}, 1, now), 'BAD_RELAY_JSON');
  assert.equal(e.receiveRelayInput(0, 4, 1, now), 'UNKNOWN_PLAYER');
  assert.equal(e.receiveRelayInput(1, 1e6, 1, now), 'OUT_OF_WINDOW');
  const rejected = e.exportSessionMetrics().rejected;
  assert.ok(rejected.CONFLICT >= 2 && rejected.SPOOFED_PLAYER >= 1 && rejected.OVERSIZED >= 1);

  // a flood of random bytes: every answer is a name, nothing throws, memory is fixed
  const names = new Set(['OK', 'DUPLICATE', 'EMPTY', 'UNKNOWN_TYPE', 'TRUNCATED', 'TRAILING_BYTES', 'BAD_COUNT',
    'BAD_FLAGS', 'NON_MONOTONIC_FRAMES', 'FRAME_AFTER_HEADER', 'BAD_TIMESTAMP', 'BAD_RANGE', 'BAD_VALUE', 'OVERSIZED',
    'SPOOFED_PLAYER', 'UNKNOWN_PLAYER', 'OUT_OF_WINDOW', 'CONFLICT', 'UNSOLICITED_PONG', 'STALE_EPISODE',
    'UNVERIFIABLE', 'FLOOD', 'BAD_RELAY_JSON']);
  const mem = e.memoryBytes();
  const rng = makeRng(99);
  const seen = new Set();
  for (let i = 0; i < 20000; i++) {
    const b = new Uint8Array(rng.int(64));
    for (let k = 0; k < b.length; k++) b[k] = rng.int(256);
    if (b.length) b[0] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x12, 0x13, 0x14, 0x55][rng.int(11)];
    const r = rx(b, rng.int(3));
    assert.ok(names.has(r), `unnamed result ${r}`);
    seen.add(r);
    if (i % 40 === 39) { now += FRAME_MS; e.advance(now, 0); }
  }
  assert.ok(seen.size >= 6, [...seen].join(','));
  assert.equal(e.memoryBytes(), mem);
  // the executed history survived the junk
  assert.equal(e.actionLog(0, 0, false).length, 2);
  e.delete();
});
