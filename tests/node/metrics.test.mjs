// Research metrics through the real .wasm: short two-engine sessions driven by a small JS loop
// (virtual time, an in-memory lossy P2P path and a reliable relay), then both engines'
// exportSessionMetrics() validated against web/session-metrics.schema.json with ajv. The schema is
// strict: a renamed or an extra field must fail. The p2pMetrics getter carries exactly the
// reference client's seven field names.
//   node --test tests/node/metrics.test.mjs        (needs build/wasm: scripts/build wasm)
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import Ajv from 'ajv';
import { loadP2PSync } from '../../web/p2psync.js';

const SCHEMA_URL = new URL('../../web/session-metrics.schema.json', import.meta.url);
const SEED_NAMES = ['inputsReceivedViaP2P', 'inputsReceivedViaSocketIO', 'inputsSentViaP2P', 'inputsSentViaSocketIO',
  'p2pFallbackTriggered', 'p2pFallbackFrame', 'connectionType'];

let lib;
let schema;
let validate;

before(async () => {
  lib = await loadP2PSync();
  schema = JSON.parse(await readFile(SCHEMA_URL, 'utf8'));
  assert.match(schema.$schema, /draft-07/, 'the schema declares draft-07 (plain Ajv)');
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
  validate = ajv.compile(schema);
});

function check(metrics, what) {
  const ok = validate(metrics);
  assert.ok(ok, `${what}: ${JSON.stringify(validate.errors?.slice(0, 5), null, 1)}`);
}
function errorsOf(metrics) {
  return validate(metrics) ? [] : validate.errors;
}

// ---------------------------------------------------------------------------------- a toy env
// Deterministic unless `nondeterministic` (then every step also mixes a call counter in, so a
// replay of the same frame gives another state: what sync-test mode must flag).
class ToyEnv {
  constructor(actors, { nondeterministic = false } = {}) {
    this.actors = actors;
    this.nondeterministic = nondeterministic;
    this.calls = 0;
    this.reset();
  }
  reset() {
    this.frame = 0;
    this.h = 2166136261;
    this.pos = new Array(this.actors).fill(0);
  }
  step(actions) {
    for (let i = 0; i < this.actors; i++) {
      const a = actions[i];
      this.h = Math.imul(this.h ^ (a + 31 * i), 16777619) >>> 0;
      this.pos[i] += [0, 1, -1, 7, -7][a % 5];
    }
    if (this.nondeterministic) this.h = (this.h + ++this.calls) >>> 0;
    this.frame++;
  }
  state() { return JSON.stringify({ frame: this.frame, h: this.h, pos: this.pos }); }
  load(text) {
    const j = JSON.parse(text);
    this.frame = j.frame;
    this.h = j.h;
    this.pos = j.pos.slice();
  }
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------- a session
/**
 * Two pages over a virtual network. Options: frames, seed, config (extra SyncConfig keys), loss
 * (P2P), p2pMs, relayMs, corrupt {peer, frame} (alter the env after stepping that frame, also in
 * replays), endAt (episode frame after which both envs terminate), nondeterministicPeer,
 * faults: [{atFrame, run(peers, now)}] (run once when every page has executed atFrame frames).
 */
function runSession(opts = {}) {
  const { frames = 300, seed = 1, config = {}, loss = 0.1, p2pMs = 60, relayMs = 80, corrupt = null, endAt = -1,
    nondeterministicPeer = -1, faults = [], alterInitial = -1 } = opts;
  const dt = 1000 / 30;
  const rng = mulberry32(seed);
  const queue = [];
  let seq = 0;
  let now = 0;
  const relayLast = new Map();
  const closed = new Set(); // P2P channels the pages consider closed, as "from>to"
  const peers = [0, 1].map((i) => ({
    i,
    engine: new lib.SyncEngine({ numPlayers: 2, localPlayerIndex: i, ...config }),
    env: new ToyEnv(2, { nondeterministic: i === nondeterministicPeer }),
    action: 0,
    nextAt: (i * dt) / 2,
    framesRun: 0,
    events: [],
    ended: false,
    episodeEnds: 0,
  }));
  if (alterInitial >= 0) peers[alterInitial].env.pos[0] = 42;  // a different initial state

  function send(from, m) {
    const to = m.to >= 0 ? m.to : 1 - from;
    if (m.path === 'p2p') {
      if (closed.has(`${from}>${to}`)) return;
      if (rng() < loss) return;
      queue.push({ at: now + p2pMs + rng() * 40, seq: seq++, from, to, path: 'p2p', bytes: m.bytes.slice() });
    } else {
      const key = `${from}>${to}`;
      const at = Math.max(now + relayMs, (relayLast.get(key) ?? 0) + 0.001);
      relayLast.set(key, at);
      const data = m.event === 'p2psync_packet' ? { from, bytes: (m.bytes ?? m.data.bytes).slice() } : { ...m.data, from };
      // the server relays pyodide_player_action as pyodide_other_player_action, with "from"
      const event = m.event === 'pyodide_player_action' ? 'pyodide_other_player_action' : m.event;
      queue.push({ at, seq: seq++, from, to, path: 'relay', event, data });
    }
  }
  for (const p of peers) p.engine.onOutgoing = (m) => send(p.i, m);

  function deliver(d) {
    const e = peers[d.to].engine;
    const r = d.path === 'p2p' ? e.receive(d.bytes, d.from, 'p2p', now) : e.receiveRelay(d.event, d.data, d.from, now);
    assert.equal(typeof r, 'string');
  }

  function stepGame(p, frame, actions) {
    p.env.step(actions);
    if (corrupt && p.i === corrupt.peer && frame === corrupt.frame) p.env.h = (p.env.h ^ 0xdeadbeef) >>> 0;
  }

  function step(p) {
    const e = p.engine;
    if (rng() < 0.25) p.action = Math.floor(rng() * 5);
    const plan = e.advance(now, p.action);
    const term = endAt >= 0 ? plan.episodeStart + endAt : -1;
    if (plan.rollback) {
      const rb = plan.rollback;
      const load = rb.loadFrame;
      const count = rb.count;
      const acts = [];
      const resnap = [];
      for (let k = 0; k < count; k++) {
        acts.push(Array.from(rb.actions(k)));
        resnap.push(rb.resnapshot(k));
      }
      p.env.load(e.snapshotText(load));
      for (let k = 0; k < count; k++) {
        const f = load + k;
        if (term >= 0 && f > term) break;
        if (resnap[k]) e.saveSnapshot(f, p.env.state());
        stepGame(p, f, acts[k]);
        if (f === term) e.endEpisode(f, now);
      }
    }
    if (plan.status === 'RUN') {
      const f = plan.frame;
      const actions = Array.from(plan.actions);
      if (term >= 0 && f > term) {
        e.endEpisode(term, now);
      } else {
        if (plan.saveSnapshot) e.saveSnapshot(f, p.env.state());
        stepGame(p, f, actions);
        p.framesRun++;
        if (f === term) e.endEpisode(f, now);
      }
    }
    for (const m of plan.outgoing) send(p.i, m);
    for (const ev of plan.events) {
      p.events.push(ev);
      if (ev.type === 'episodeEnd') p.episodeEnds++;
    }
  }

  const pending = faults.map((f) => ({ ...f, done: false }));
  for (let guard = 0; guard < frames * 20; guard++) {
    const minRun = Math.min(...peers.map((p) => p.framesRun));
    const allEnded = endAt >= 0 && peers.every((p) => p.episodeEnds > 0);
    if (minRun >= frames || allEnded) break;
    for (const f of pending) {
      if (!f.done && minRun >= f.atFrame) {
        f.done = true;
        f.run(peers, now, closed);
      }
    }
    const p = peers[0].nextAt <= peers[1].nextAt ? peers[0] : peers[1];
    const t = p.nextAt;
    queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
    while (queue.length && queue[0].at <= t) {
      const d = queue.shift();
      now = Math.max(now, d.at);
      deliver(d);
      queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
    }
    now = t;
    step(p);
    p.nextAt = t + dt;
  }
  return peers;
}

function cleanup(peers) {
  for (const p of peers) p.engine.delete();
}

// ---------------------------------------------------------------------------------- tests

test('a lossy two-engine session: both exports validate against the schema', () => {
  const peers = runSession({ frames: 300, seed: 7, loss: 0.15 });
  try {
    for (const p of peers) {
      const m = p.engine.exportSessionMetrics();
      check(m, `peer ${p.i}`);
      assert.equal(m.engine.localPlayerIndex, p.i);
      assert.ok(m.session.frame >= 300);
      assert.ok(m.session.verifiedFrame > 200, `verified ${m.session.verifiedFrame}`);
      assert.equal(m.sync.desyncEvents.length, 0);
      assert.ok(m.rollbacks.count > 0, 'the loss caused rollbacks');
      assert.ok(m.rollbacks.events.length > 0);
      assert.ok(m.p2pMetrics.inputsReceivedViaP2P > 250);
      assert.ok(m.inputs.packetsSentViaP2P > 300);
      assert.equal(m.quality.peers.length, 1);
      assert.ok(m.quality.peers[0].samples > 0, 'PING/PONG gave RTT samples');
      assert.equal(m.quality.fallback.triggered, false);
      assert.equal(m.p2pMetrics.p2pFallbackFrame, null);
      assert.deepEqual(m.p2pMetrics, p.engine.p2pMetrics);
    }
    // what one sent is what the other received (first deliveries split by path)
    const [a, b] = peers.map((p) => p.engine.exportSessionMetrics());
    assert.ok(b.inputs.receivedViaP2P + b.inputs.receivedViaSocketIO <= a.inputs.sentViaP2P + a.inputs.sentViaSocketIO);
    assert.equal(b.inputs.firstDelivery.p2p, b.inputs.receivedViaP2P);
    assert.equal(b.inputs.firstDelivery.relay, b.inputs.receivedViaSocketIO);
  } finally {
    cleanup(peers);
  }
});

test('fallback, desync, episode end and sync-test nondeterminism records validate too', () => {
  // fallback (channel closed) + a corrupted state (desync events) + an episode end with summary
  const peers = runSession({
    frames: 400, seed: 3, loss: 0.05, config: { sendPolicy: 'dual', gameId: 'room-1', playerIds: ['alice', 'bob'] },
    corrupt: { peer: 1, frame: 100 }, endAt: 220,
    faults: [{
      atFrame: 60,
      run(ps, now, closed) {
        closed.add('0>1');
        closed.add('1>0');
        ps[0].engine.onChannelClosed(1, now);
        ps[1].engine.onChannelClosed(0, now);
      },
    }],
  });
  try {
    for (const p of peers) {
      const m = p.engine.exportSessionMetrics();
      check(m, `peer ${p.i}`);
      assert.equal(m.quality.fallback.triggered, true);
      assert.equal(m.quality.fallback.reason, 'channel-closed');
      assert.ok(m.quality.fallback.events.length >= 1);
      assert.equal(m.p2pMetrics.p2pFallbackTriggered, true);
      assert.equal(typeof m.p2pMetrics.p2pFallbackFrame, 'number');
      assert.ok(m.sync.desyncEvents.length > 0, 'the corrupted state was detected');
      assert.equal(m.sync.desyncEvents[0].frame, 105);
      assert.equal(m.episodes.length, 1);
      assert.equal(m.episodes[0].frame, 220);
      // the summary line has the documented shape; the schema accepts it in the episode entry
      const line = p.engine.episodeSummary({ 0: 1, 1: 2 });
      assert.match(line, /^\[Episode\] Complete at frame 220 \| Rewards: \{"0":1,"1":2\} \| InputBuf: 256 \| Rollbacks: \d+ \| Syncs: \d+ \| P2P: \d+\/\d+ \(\d+\.\d%\) \| Fallback at frame \d+$/);
      const withSummary = structuredClone(m);
      withSummary.episodes[0].summary = line;
      check(withSummary, `peer ${p.i} with the summary line`);
      withSummary.episodes[0].summary = line.replace('[Episode]', '[Ep]');
      assert.ok(errorsOf(withSummary).length > 0, 'a malformed summary line fails');
    }
  } finally {
    cleanup(peers);
  }

  // a READY digest mismatch: a desync record at frame 0 from the READY exchange
  const rd = runSession({ frames: 40, seed: 9, alterInitial: 1 });
  try {
    for (const p of rd) {
      const m = p.engine.exportSessionMetrics();
      check(m, `READY mismatch, peer ${p.i}`);
      assert.equal(m.sync.desyncEvents[0].frame, 0);
      assert.equal(m.sync.desyncEvents[0].source, 'ready');
      assert.equal(m.sync.desyncEvents[0].actionCountDiff, null);
    }
  } finally {
    cleanup(rd);
  }

  // sync-test mode over a nondeterministic env: a nondeterminism record
  const st = runSession({ frames: 60, seed: 5, loss: 0, config: { syncTest: { checkDistance: 3 } }, nondeterministicPeer: 0 });
  try {
    const m = st[0].engine.exportSessionMetrics();
    check(m, 'sync-test peer');
    assert.ok(m.sync.nondeterminism.length >= 1, 'nondeterminism flagged');
    assert.equal(m.sync.nondeterminism[0].checkDistance, 3);
    check(st[1].engine.exportSessionMetrics(), 'sync-test peer 1');
  } finally {
    cleanup(st);
  }
});

test('the schema is strict: renamed, extra or mistyped fields fail', () => {
  const peers = runSession({ frames: 120, seed: 11 });
  try {
    const m = peers[0].engine.exportSessionMetrics();
    check(m, 'baseline');
    const mutations = [
      ['p2pMetrics.inputsSentViaP2P renamed', (x) => { x.p2pMetrics.inputsSentViaP2p = x.p2pMetrics.inputsSentViaP2P; delete x.p2pMetrics.inputsSentViaP2P; }],
      ['p2pMetrics extra field', (x) => { x.p2pMetrics.inputsLost = 0; }],
      ['quality.peers[0].rttAvgMs renamed', (x) => { x.quality.peers[0].rttAvg = x.quality.peers[0].rttAvgMs; delete x.quality.peers[0].rttAvgMs; }],
      ['inputs.firstDelivery.p2p renamed', (x) => { x.inputs.firstDelivery.P2P = x.inputs.firstDelivery.p2p; delete x.inputs.firstDelivery.p2p; }],
      ['rollbacks.events[0].rollbackFrames renamed', (x) => { x.rollbacks.events[0].depth = x.rollbacks.events[0].rollbackFrames; delete x.rollbacks.events[0].rollbackFrames; }],
      ['sync.hashesSent renamed', (x) => { x.sync.hashSent = x.sync.hashesSent; delete x.sync.hashesSent; }],
      ['top-level extra field', (x) => { x.extra = 1; }],
      ['schemaVersion 2', (x) => { x.schemaVersion = 2; }],
      ['connectionType unknown value', (x) => { x.p2pMetrics.connectionType = 'turn'; }],
      ['a negative counter', (x) => { x.inputs.sentViaP2P = -1; }],
      ['a count as a string', (x) => { x.rollbacks.count = String(x.rollbacks.count); }],
      ['rejected: unknown code', (x) => { x.rejected.NOT_A_CODE = 1; }],
      ['lateMargin with 64 bins', (x) => { x.inputs.lateMargin.counts.pop(); }],
    ];
    assert.ok(m.rollbacks.events.length > 0, 'the baseline has rollback events to rename');
    for (const [name, mutate] of mutations) {
      const x = structuredClone(m);
      mutate(x);
      assert.ok(errorsOf(x).length > 0, `${name} must fail validation`);
    }
  } finally {
    cleanup(peers);
  }
});

test('p2pMetrics getter: exactly the seven reference names, the same values as the export', () => {
  const peers = runSession({ frames: 90, seed: 2, config: { sendPolicy: 'dual' } });
  try {
    for (const p of peers) {
      const pm = p.engine.p2pMetrics;
      assert.deepEqual(Object.keys(pm).sort(), [...SEED_NAMES].sort());
      assert.deepEqual(pm, p.engine.exportSessionMetrics().p2pMetrics);
      for (const k of SEED_NAMES.slice(0, 4)) assert.ok(Number.isInteger(pm[k]) && pm[k] > 0, `${k} = ${pm[k]}`);
      assert.equal(pm.p2pFallbackTriggered, false);
      assert.equal(pm.p2pFallbackFrame, null);
      assert.equal(pm.connectionType, 'unknown');
      // under "dual" every local input goes out on both paths
      assert.equal(pm.inputsSentViaP2P, pm.inputsSentViaSocketIO);
      p.engine.setConnectionType('relay');
      assert.equal(p.engine.p2pMetrics.connectionType, 'relay');
      assert.throws(() => p.engine.setConnectionType('turn'));
      // the getter is a fresh object each time: mutating it changes nothing
      pm.inputsSentViaP2P = -5;
      assert.notEqual(p.engine.p2pMetrics.inputsSentViaP2P, -5);
    }
  } finally {
    cleanup(peers);
  }
});
