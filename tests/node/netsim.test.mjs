// Tests for web/netsim.js (node --test tests/node/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NetSim, PROFILES, resolveProfile, expectedLoss, lossModel, createRng } from '../../web/netsim.js';

/** Drive a 2..N peer traffic pattern on both paths and return the delivery log. */
function runTraffic({ seed, profile, numPeers = 3, ms = 3000, overrides }) {
  const sim = new NetSim({ seed, numPeers, profile, overrides });
  const log = [];
  const handler = (to, from, path, payload, at) => log.push(`${at.toFixed(6)}|${from}>${to}|${path}|${payload.seq}`);
  let seq = 0;
  for (let t = 0; t < ms; t += 16) {
    sim.advanceTo(t, handler);
    for (let a = 0; a < numPeers; a++) {
      for (let b = 0; b < numPeers; b++) {
        if (a === b) continue;
        sim.send(a, b, 'p2p', { seq: seq++ });
        if ((t / 16) % 4 === 0) sim.send(a, b, 'relay', { seq: seq++ });
      }
    }
  }
  sim.advanceTo(ms + 10000, handler);
  return { sim, log };
}

test('createRng is reproducible and seeds differ', () => {
  const a = createRng(42), b = createRng(42), c = createRng(43);
  const xa = Array.from({ length: 50 }, () => a());
  const xb = Array.from({ length: 50 }, () => b());
  const xc = Array.from({ length: 50 }, () => c());
  assert.deepEqual(xa, xb);
  assert.notDeepEqual(xa, xc);
  assert.ok(xa.every((x) => x >= 0 && x < 1));
  const r = createRng('seed-string');
  assert.equal(typeof r.u32(), 'number');
  assert.ok(r.int(10) >= 0 && r.int(10) < 10);
  const s = r.state; const v1 = r(); r.state = s; assert.equal(r(), v1);
});

test('same seed → identical delivery sequence; different seeds differ', () => {
  for (const profile of ['bad', 'hostile']) {
    const x = runTraffic({ seed: 7, profile });
    const y = runTraffic({ seed: 7, profile });
    const z = runTraffic({ seed: 8, profile });
    assert.ok(x.log.length > 100);
    assert.deepEqual(x.log, y.log, `${profile}: same seed must reproduce`);
    assert.deepEqual(x.sim.stats(), y.sim.stats());
    assert.notDeepEqual(x.log, z.log, `${profile}: different seeds must differ`);
  }
});

test('P2P loss rate matches the profile over 20k packets', () => {
  const N = 20000;
  for (const name of Object.keys(PROFILES)) {
    const sim = new NetSim({ seed: 1234, numPeers: 2, profile: name });
    let delivered = 0;
    for (let i = 0; i < N; i++) {
      sim.send(0, 1, 'p2p', i);
      sim.advanceBy(1, () => { delivered++; });
    }
    sim.advanceBy(100000, () => { delivered++; });
    const s = sim.stats().p2p;
    const p = expectedLoss(sim.profile);
    const rate = s.lost / s.sent;
    const sigma = Math.sqrt(Math.max(p * (1 - p), 1e-9) / N);
    const tol = Math.max(0.002, 5 * sigma * (sim.profile.burst ? 4 : 1)); // bursts correlate losses
    assert.equal(s.sent, N);
    assert.ok(Math.abs(rate - p) <= tol, `${name}: loss ${rate.toFixed(4)} vs expected ${p} (tol ${tol.toFixed(4)})`);
    assert.equal(p, PROFILES[name].loss, `${name}: average loss equals the profile's loss`);
    assert.equal(delivered, s.sent - s.lost + s.duplicated, `${name}: delivery accounting`);
    assert.equal(s.delivered, delivered);
    const dupRate = s.duplicated / (s.sent - s.lost);
    assert.ok(Math.abs(dupRate - PROFILES[name].duplicate) <= 0.01, `${name}: duplicate rate ${dupRate}`);
  }
});

test('hostile bursts: losses are clustered (Gilbert–Elliott)', () => {
  const sim = new NetSim({ seed: 5, numPeers: 2, profile: 'hostile' });
  const lm = lossModel(sim.profile);
  assert.ok(lm.bad > lm.good, 'bad state loses more');
  const lostSeq = [];
  let got = new Set();
  const N = 20000;
  for (let i = 0; i < N; i++) { sim.send(0, 1, 'p2p', i); sim.advanceBy(1, (to, from, path, p) => got.add(p)); }
  sim.advanceBy(100000, (to, from, path, p) => got.add(p));
  for (let i = 0; i < N; i++) if (!got.has(i)) lostSeq.push(i);
  // P(loss | previous lost) must clearly exceed the unconditional loss rate
  const lostSet = new Set(lostSeq);
  let both = 0;
  for (const i of lostSeq) if (lostSet.has(i - 1)) both++;
  const pCond = both / lostSeq.length;
  assert.ok(pCond > lostSeq.length / N + 0.05, `conditional ${pCond} vs ${lostSeq.length / N}`);
});

test('relay is reliable and never reorders (hostile, with jitter)', () => {
  const sim = new NetSim({ seed: 99, numPeers: 3, profile: 'hostile', overrides: { relayJitterMs: 200 } });
  const rng = createRng(3);
  const next = new Map();
  let delivered = 0;
  const handler = (to, from, path, payload) => {
    assert.equal(path, 'relay');
    const key = `${from}>${to}`;
    const expect = next.get(key) ?? 0;
    assert.equal(payload.n, expect, `relay ${key} out of order`);
    next.set(key, expect + 1);
    delivered++;
  };
  const sentCount = new Map();
  for (let i = 0; i < 6000; i++) {
    const a = rng.int(3); let b = rng.int(3); if (b === a) b = (a + 1) % 3;
    const key = `${a}>${b}`;
    const n = sentCount.get(key) ?? 0; sentCount.set(key, n + 1);
    assert.equal(sim.send(a, b, 'relay', { n }), true);
    sim.advanceBy(rng() * 5, handler);
  }
  sim.advanceBy(1e6, handler);
  assert.equal(delivered, 6000);
  const s = sim.stats().relay;
  assert.equal(s.lost, 0); assert.equal(s.outOfOrder, 0); assert.equal(s.delivered, 6000);
});

test("P2P reorders and duplicates under 'bad'", () => {
  const sim = new NetSim({ seed: 11, numPeers: 2, profile: 'bad' });
  const seen = [];
  for (let i = 0; i < 5000; i++) { sim.send(0, 1, 'p2p', new Uint8Array([i & 255, i >> 8])); sim.advanceBy(16, (to, f, p, b) => seen.push(b[0] | (b[1] << 8))); }
  sim.advanceBy(1e6, (to, f, p, b) => seen.push(b[0] | (b[1] << 8)));
  let inversions = 0, max = -1;
  for (const x of seen) { if (x < max) inversions++; else max = x; }
  const counts = new Map();
  for (const x of seen) counts.set(x, (counts.get(x) ?? 0) + 1);
  const dups = [...counts.values()].filter((c) => c > 1).length;
  const s = sim.stats().p2p;
  assert.ok(inversions > 50, `inversions ${inversions}`);
  assert.ok(s.reordered > 0 && s.outOfOrder > 0);
  assert.ok(dups > 20, `duplicates ${dups}`);
  assert.equal(dups, s.duplicated);
});

test('payloads are copied at send time', () => {
  const sim = new NetSim({ seed: 1, numPeers: 2, profile: 'lan' });
  const bytes = new Uint8Array([1, 2, 3]);
  const obj = { a: [1, 2] };
  sim.send(0, 1, 'p2p', bytes);
  sim.send(0, 1, 'relay', obj);
  bytes[0] = 9; obj.a.push(3);
  const got = [];
  sim.advanceTo(100, (to, from, path, p) => got.push(p));
  assert.deepEqual([...got[0]], [1, 2, 3]);
  assert.deepEqual(got[1], { a: [1, 2] });
});

test('lan: ~1 ms one-way P2P, relay = P2P + 20 ms one-way', () => {
  const sim = new NetSim({ seed: 1, numPeers: 2, profile: 'lan' });
  sim.advanceTo(1000);
  sim.send(0, 1, 'p2p', 'x');
  sim.send(1, 0, 'relay', 'y');
  const at = {};
  sim.advanceTo(2000, (to, from, path, p, t) => { at[path] = t; });
  assert.equal(at.p2p - 1000, 1);
  assert.equal(at.relay - 1000, 21);
});

test('handler sends are timestamped at the delivery time and ties keep insertion order', () => {
  const sim = new NetSim({ seed: 1, numPeers: 2, profile: 'lan' });
  for (let i = 0; i < 10; i++) sim.send(0, 1, 'p2p', i); // all due at t=1
  const order = [];
  sim.advanceTo(10, (to, from, path, p, t) => {
    order.push([to, p, t]);
    if (to === 1 && p === 0) sim.send(1, 0, 'p2p', 'echo'); // sent at t=1, due t=2 ≤ 10
  });
  assert.deepEqual(order.slice(0, 10).map((x) => x[1]), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(order[10], [0, 'echo', 2]);
  assert.equal(sim.now, 10);
});

test('cutP2P drops queued P2P packets and refuses new ones; relay unaffected; restoreP2P reopens', () => {
  const sim = new NetSim({ seed: 3, numPeers: 3, profile: 'wifi' });
  const changes = [];
  sim.onChannelChange = (a, b, open, t) => changes.push([a, b, open, t]);
  for (let i = 0; i < 20; i++) { sim.send(0, 1, 'p2p', i); sim.send(1, 2, 'p2p', i); sim.send(0, 1, 'relay', i); }
  const queuedP2P = sim.pending - 20;
  sim.advanceTo(5); // nothing due yet (min one-way 15 ms)
  const dropped = sim.cutP2P();
  assert.ok(dropped > 0 && dropped === queuedP2P, `dropped ${dropped} of ${queuedP2P}`);
  assert.equal(sim.isP2POpen(0, 1), false);
  assert.equal(sim.send(0, 1, 'p2p', 'late'), false);
  assert.equal(sim.send(2, 1, 'p2p', 'late'), false);
  assert.equal(sim.send(0, 1, 'relay', 'relay-ok'), true);
  const got = [];
  sim.advanceTo(5000, (to, from, path, p) => got.push(path));
  assert.ok(got.every((p) => p === 'relay'));
  assert.equal(got.length, 21);
  const s = sim.stats().p2p;
  assert.equal(s.dropped, dropped); assert.equal(s.refused, 2);
  assert.deepEqual(changes.map((c) => c.slice(0, 3)), [[0, 1, false], [0, 2, false], [1, 2, false]]);

  sim.restoreP2P();
  assert.equal(sim.isP2POpen(1, 0), true);
  assert.equal(sim.send(0, 1, 'p2p', 'again'), true);
  let n = 0;
  sim.advanceTo(6000, (to, from, path, p) => { n++; assert.equal(p, 'again'); });
  assert.ok(n <= 1); // wifi may lose it (1 %)

  // pair cut
  sim.cutP2P(0, 2);
  assert.equal(sim.isP2POpen(2, 0), false);
  assert.equal(sim.isP2POpen(0, 1), true);
  sim.restoreP2P(2, 0);
  assert.equal(sim.isP2POpen(0, 2), true);
});

test('disconnectPeer isolates a peer on both paths', () => {
  const sim = new NetSim({ seed: 3, numPeers: 3, profile: 'lan' });
  sim.send(0, 1, 'relay', 'a'); sim.send(2, 0, 'p2p', 'b'); sim.send(1, 2, 'relay', 'c');
  assert.equal(sim.disconnectPeer(0), 2);
  assert.equal(sim.send(1, 0, 'relay', 'x'), false);
  const got = [];
  sim.advanceTo(100, (to, from, path, p) => got.push(p));
  assert.deepEqual(got, ['c']);
  sim.reconnectPeer(0);
  assert.equal(sim.send(1, 0, 'relay', 'y'), true);
});

test('resolveProfile applies flag-style overrides', () => {
  const p = resolveProfile('wifi', { rttMs: '80', loss: '2%', jitter: 5, burst: 'on', relayExtraRttMs: 60 });
  assert.equal(p.rttMs, 80); assert.equal(p.loss, 0.02); assert.equal(p.jitterMs, 5);
  assert.equal(p.relayExtraRttMs, 60); assert.ok(p.burst && p.burst.lossBad > 0);
  assert.equal(resolveProfile('hostile', { burst: 'none' }).burst, null);
  assert.equal(resolveProfile('hostile', { burst: { exitBad: 0.5 } }).burst.exitBad, 0.5);
  assert.throws(() => resolveProfile('nope'));
  assert.throws(() => resolveProfile('lan', { bogus: 1 }));
  assert.throws(() => resolveProfile('lan', { loss: 2 }));
  assert.equal(resolveProfile('lan').rttMs, 2);
  // relay one-way follows the override
  const sim = new NetSim({ seed: 1, numPeers: 2, profile: 'lan', overrides: { rttMs: 10, relayExtraRttMs: 100 } });
  sim.send(0, 1, 'relay', 1);
  let at = 0; sim.advanceTo(1000, (to, f, p, x, t) => { at = t; });
  assert.equal(at, 55);
});
