// Back to P2P after a fallback, in headless Chromium over real RTCDataChannels (the demo page and
// web/server.mjs): config.fallbackRecovery returns a pair to P2P once the glue has a working
// channel again.
//   1. closeP2P() on one page (the channels close), restoreP2P() (a new channel on the same
//      connection): fallback 'channel-closed', then 'recovery', then P2P delivers first again.
//   2. The path is blocked (an `ip rule` inside the private namespace prohibits the UDP the ICE
//      pair uses; signaling over 127.0.0.1 TCP stays up): ICE goes 'disconnected' → fallback
//      'connection-failed' → ICE restarts while blocked; unblocked → ICE connected again →
//      'recovery', P2P delivering first again.
// Run: scripts/netns-run node --test tests/browser/recovery.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer } from '../../web/server.mjs';
import { launchBrowser, openPages, closePages, dumpLogs, assertPrivateNetns } from './harness.mjs';

let srv, browser;
const serverLog = [];
const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
let ruleMoved = false;

before(async () => {
  assertPrivateNetns();
  srv = await startServer({ host: '127.0.0.1', port: 0, log: (m) => serverLog.push(m) });
  browser = await launchBrowser();
});

after(async () => {
  unblock();
  await browser?.close();
  await srv?.close();
});

// Local addresses are routed by the `local` table at rule priority 0, before any other rule: it is
// moved to 100 once (this namespace only) so that a priority-10 rule can prohibit the ICE path.
function block() {
  if (!ruleMoved) {
    ip('rule', 'add', 'pref', '100', 'lookup', 'local');
    ip('rule', 'del', 'pref', '0');
    ruleMoved = true;
  }
  ip('rule', 'add', 'pref', '10', 'to', '198.18.0.0/24', 'ipproto', 'udp', 'prohibit');
}
function unblock() {
  try { if (ip('rule', 'show', 'pref', '10').trim()) ip('rule', 'del', 'pref', '10'); } catch { /* none */ }
}

let roomSeq = 0;
async function openRoom(query) {
  const room = `recovery-${process.pid}-${++roomSeq}`;
  const qs = new URLSearchParams({ room, players: '2', ...query }).toString();
  const pages = await openPages(browser, `${srv.url}?${qs}`, 2);
  try {
    await Promise.all(pages.map((h) => h.page.waitForFunction(() => window.game && (window.game.ready || window.game.error), null, { timeout: 60000, polling: 100 })));
  } catch (e) {
    dumpLogs(pages);
    await closePages(pages);
    throw e;
  }
  const byIndex = [];
  for (const h of pages) byIndex[await h.page.evaluate(() => window.game.playerIndex)] = h;
  return { pages, byIndex };
}

const state = (h) => h.page.evaluate(() => {
  const g = window.game;
  const m = g.exportSessionMetrics();
  return {
    playerIndex: g.playerIndex, error: g.error, frame: g.globalFrame, loggedFrame: g.loggedFrame,
    events: g.events.filter((e) => e.type === 'fallback' || e.type === 'recovery'),
    firstP2P: m.inputs.firstDelivery.p2p, firstRelay: m.inputs.firstDelivery.relay, desyncs: m.sync.desyncs,
    channel: m.transport.channels[0], fallback: m.quality.fallback,
  };
});

async function waitAll(pages, fn, arg, timeout) {
  await Promise.all(pages.map((h) => h.page.waitForFunction(fn, arg, { timeout, polling: 100 })));
}

/** Confirmed action logs of both pages agree on every frame both logged. */
async function assertSameLogs(pages) {
  const logs = await Promise.all(pages.map((h) => h.page.evaluate(() => window.game.actionLogHex(0, window.game.loggedFrame))));
  const n = Math.min(...logs.map((l) => l.length));
  assert.ok(n >= 4 * 200, `logged frames: ${logs.map((l) => l.length / 4)}`);
  assert.equal(logs[1].slice(0, n), logs[0].slice(0, n), 'confirmed action logs identical');
}

/** After the recovery, inputs keep arriving first over P2P: +minNew first deliveries on P2P. */
async function assertP2PFirstAgain(pages, before, minNew = 60) {
  await waitAll(pages, ([b, k]) => {
    const m = window.game.exportSessionMetrics();
    return m.inputs.firstDelivery.p2p >= b[window.game.playerIndex] + k;
  }, [before, minNew], 30000);
}

/** Waits for the recovery on every page, then for P2P delivering first again; checks that each page
 * is error- and desync-free with its channel open. Returns the pages' states and the P2P
 * first-delivery counts at the recovery (per player index). */
async function recoveredAndP2PFirst(pages, timeoutMs) {
  await waitAll(pages, () => window.game.events.some((e) => e.type === 'recovery'), null, timeoutMs);
  const before = [];
  for (const s of await Promise.all(pages.map(state))) before[s.playerIndex] = s.firstP2P;
  await assertP2PFirstAgain(pages, before);
  const end = await Promise.all(pages.map(state));
  for (const s of end) {
    assert.equal(s.error, null);
    assert.equal(s.desyncs, 0);
    assert.equal(s.channel.state, 'open');
  }
  return { end, before };
}

test('closeP2P, then restoreP2P: fallback, recovery, and P2P delivering first again', async () => {
  const { pages, byIndex } = await openRoom({ auto: '11', fps: '60', frames: '0', recover: '1000', recoverBelow: '150' });
  try {
    const [p0] = byIndex;
    await waitAll(pages, () => window.game.globalFrame >= 120, null, 30000);
    await p0.page.evaluate(() => window.game.closeP2P());
    await waitAll(pages, () => window.game.events.some((e) => e.type === 'fallback'), null, 15000);
    await waitAll(pages, () => window.game.exportSessionMetrics().inputs.firstDelivery.relay >= 30, null, 15000);
    const cut = await Promise.all(pages.map(state));
    for (const s of cut) assert.notEqual(s.channel.state, 'open', `player ${s.playerIndex}: channel closed`);
    await p0.page.evaluate(() => window.game.restoreP2P());
    const { end, before } = await recoveredAndP2PFirst(pages, 20000);
    for (const s of end) {
      const fb = s.events.find((e) => e.type === 'fallback');
      const rc = s.events.find((e) => e.type === 'recovery');
      assert.ok(fb && rc && rc.timeMs > fb.timeMs, `player ${s.playerIndex}: fallback then recovery: ${JSON.stringify(s.events)}`);
      assert.equal(s.fallback.recoveries, 1);
    }
    assert.equal(end[0].channel.reopens + end[1].channel.reopens, 1, 'one side opened a new channel');
    assert.equal((await state(p0)).events.find((e) => e.type === 'fallback').reason, 'channel-closed');
    await assertSameLogs(pages);
    console.log(`# closeP2P/restoreP2P: events ${JSON.stringify(end.map((s) => s.events.map((e) => `${e.type}${e.reason ? `:${e.reason}` : ''}@${e.frame}`)))}; ` +
      `P2P first deliveries since the recovery ${end.map((s) => s.firstP2P - before[s.playerIndex]).join(' / ')}`);
  } catch (e) {
    dumpLogs(pages);
    throw e;
  } finally {
    await closePages(pages);
  }
});

test('the UDP path blocked and unblocked: ICE disconnected → fallback, ICE restart, ICE back → recovery, P2P first again', async () => {
  const { pages, byIndex } = await openRoom({ auto: '12', fps: '60', frames: '0', recover: '1000', recoverBelow: '150' });
  try {
    const [p0] = byIndex;
    await waitAll(pages, () => window.game.globalFrame >= 120, null, 30000);
    const t0 = Date.now();
    block();
    try {
      // Chromium reports ICE 'disconnected' some seconds after the consent checks stop
      await waitAll(pages, () => window.game.events.some((e) => e.type === 'fallback'), null, 30000);
      // keep the path blocked until the offerer has restarted ICE at least once
      await p0.page.waitForFunction(() => window.game.exportSessionMetrics().transport.channels[0].iceRestarts >= 1, null, { timeout: 30000, polling: 100 });
    } finally {
      unblock();
    }
    const blockedMs = Date.now() - t0;
    const { end, before } = await recoveredAndP2PFirst(pages, 30000);
    for (const s of end) {
      const fb = s.events.find((e) => e.type === 'fallback');
      assert.ok(fb, `player ${s.playerIndex} fell back`);
      assert.ok(['connection-failed', 'channel-closed', 'latency-high', 'latency-critical'].includes(fb.reason), fb.reason);
      assert.ok(s.events.some((e) => e.type === 'recovery'), `player ${s.playerIndex}: ${JSON.stringify(s.events)}`);
      assert.ok(s.firstRelay > 0, 'the relay carried the outage');
    }
    assert.ok(end.find((s) => s.playerIndex === 0).channel.iceRestarts >= 1, 'the lower index restarted ICE');
    await assertSameLogs(pages);
    const logs = pages.flatMap((h) => h.logs);
    assert.ok(logs.some((l) => /\[WebRTC\] connection to player \d lost \(ICE disconnected\)/.test(l)), 'the loss is logged');
    assert.ok(logs.some((l) => /\[WebRTC\] ICE restart 1\/\d+ towards player 1/.test(l)), 'the restart is logged');
    console.log(`# blocked path: blocked ${(blockedMs / 1000).toFixed(1)} s; events ${JSON.stringify(end.map((s) => s.events.map((e) => `${e.type}${e.reason ? `:${e.reason}` : ''}@${e.frame}`)))}; ` +
      `ICE restarts ${end.map((s) => s.channel.iceRestarts).join(' / ')}; P2P first deliveries since the recovery ${end.map((s) => s.firstP2P - before[s.playerIndex]).join(' / ')}`);
  } catch (e) {
    dumpLogs(pages);
    throw e;
  } finally {
    unblock();
    await closePages(pages);
  }
});
