// Two headless Chromium pages open an unordered/unreliable RTCDataChannel through the server's
// signaling relay, exchange binary messages, and use the Socket.IO fallback relays.
// Run: scripts/netns-run node --test tests/browser/datachannel.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../../web/server.mjs';
import { launchBrowser, openPages, closePages, dumpLogs, assertPrivateNetns } from './harness.mjs';

const N = 5;
let srv, browser, pages;
const serverLog = [];

before(async () => {
  assertPrivateNetns();
  srv = await startServer({ host: '127.0.0.1', port: 0, log: (m) => serverLog.push(m) });
  browser = await launchBrowser();
  const room = `dc-${process.pid}`;
  pages = await openPages(browser, `${srv.url}web/demo/dc-smoke.html?room=${room}&players=2&n=${N}`, 2);
});

after(async () => {
  await closePages(pages);
  await browser?.close();
  await srv?.close();
});

const smoke = (h) => h.page.evaluate(() => JSON.parse(JSON.stringify(window.smoke)));
async function waitAll(fn, arg, timeout = 15000) {
  try {
    await Promise.all(pages.map((h) => h.page.waitForFunction(fn, arg, { timeout, polling: 50 })));
  } catch (e) {
    dumpLogs(pages);
    for (const h of pages) console.error(`[page ${h.index}] smoke =`, JSON.stringify(await smoke(h).catch(() => null)));
    console.error(serverLog.join('\n'));
    throw e;
  }
}

test('pages join and pair via socket.io served by the server', async () => {
  await waitAll(() => window.smoke.ready !== null);
  const [a, b] = await Promise.all(pages.map(smoke));
  assert.deepEqual([a.joined.playerIndex, b.joined.playerIndex].sort(), [0, 1]);
  assert.equal(a.ready.room, b.ready.room);
  assert.equal(a.ready.peers.length, 2);
});

test('RTCDataChannel opens (unordered, maxRetransmits 0) and carries binary both ways', async () => {
  await waitAll((n) => window.smoke.dcOpen && window.smoke.received.length >= n && window.smoke.acked, N);
  const states = await Promise.all(pages.map(smoke));
  for (const s of states) {
    assert.deepEqual(s.errors, []);
    assert.deepEqual(s.channel, { label: 'p2psync', ordered: false, maxRetransmits: 0 });
    const other = 1 - s.joined.playerIndex;
    const got = s.received.slice().sort((x, y) => x[2] - y[2]);
    assert.equal(got.length, N);
    got.forEach((m, i) => {
      const want = [0xD0, other, i];
      for (let k = 0; k < 16; k++) want.push((i * 16 + k + other * 7) & 0xff);
      assert.deepEqual(m, want);
    });
    // every candidate lives on the namespace's veth pair (never loopback, never the host)
    assert.ok(s.localCandidates.length > 0, 'gathered candidates');
    for (const c of [...s.localCandidates, ...s.remoteCandidates]) assert.match(c, / 198\.18\.0\.[12] /, c);
    if (s.selectedPair) assert.match(s.selectedPair.local.address, /^198\.18\.0\.[12]$/);
  }
  console.log('selected pairs:', JSON.stringify(states.map((s) => s.selectedPair)));
});

test('fallback relay: pyodide_player_action -> pyodide_other_player_action, state sync, binary packet', async () => {
  const byIndex = [];
  for (const h of pages) byIndex[(await smoke(h)).joined.playerIndex] = h;
  const [p0, p1] = byIndex;
  assert.deepEqual(await p0.page.evaluate(() => window.sendAction(3, 42)), { ok: true });
  assert.deepEqual(await p1.page.evaluate(() => window.sendAction({ dx: -1 }, 43)), { ok: true });
  await waitAll(() => window.smoke.relay.length >= 1);
  const [s0, s1] = await Promise.all([smoke(p0), smoke(p1)]);
  assert.equal(s1.relay.length, 1);
  assert.equal(s1.relay[0].from, 0);
  assert.equal(s1.relay[0].player_id, 0);
  assert.equal(s1.relay[0].action, 3);
  assert.equal(s1.relay[0].frame_number, 42);
  assert.equal(typeof s1.relay[0].timestamp, 'number');
  assert.equal(s0.relay.length, 1);
  assert.deepEqual(s0.relay[0].action, { dx: -1 });
  assert.equal(s0.relay[0].from, 1);

  // forged identity is refused by the server and never reaches the peer
  const forged = await p0.page.evaluate(() => window.emitRaw('pyodide_player_action', { player_id: 1, action: 0, frame_number: 1 }));
  assert.deepEqual(forged, { ok: false, error: 'identity_mismatch' });

  assert.deepEqual(await p1.page.evaluate(() => window.sendStateSync(60, 'c0ffee')), { ok: true });
  assert.deepEqual(await p0.page.evaluate(() => window.sendPacket(1, [0x12, 0, 0, 0, 7])), { ok: true });
  await p0.page.waitForFunction(() => window.smoke.states.length >= 1, null, { timeout: 5000 });
  await p1.page.waitForFunction(() => window.smoke.packets.length >= 1, null, { timeout: 5000 });
  const [t0, t1] = await Promise.all([smoke(p0), smoke(p1)]);
  assert.equal(t0.states[0].state_hash, 'c0ffee');
  assert.equal(t0.states[0].from, 1);
  assert.deepEqual(t1.packets[0], { from: 0, bytes: [0x12, 0, 0, 0, 7], isArrayBuffer: true });
  assert.equal(t1.relay.length, 1, 'the forged action was not relayed');
  assert.equal(srv.stats().drops.identity_mismatch, 1);
});
