// End-to-end: the demo page (web/demo/index.html + web/session.js) in headless Chromium, two
// browser contexts per room, the real server, real RTCDataChannels and the real p2psync.wasm.
// Run:  scripts/netns-run node --test tests/browser/e2e.test.mjs
//   P2PSYNC_ECHO=1           echo page console output
//   P2PSYNC_STATIC_ROOT=DIR  serve web/, build/wasm/, node_modules/ from DIR (default: the repo)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../../web/server.mjs';
import { launchBrowser, openPages, closePages, dumpLogs, assertPrivateNetns } from './harness.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const STATIC_ROOT = process.env.P2PSYNC_STATIC_ROOT || REPO;
const ARTIFACTS = path.join(REPO, 'build', 'test-artifacts');

let srv, browser;
const serverLog = [];
const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

before(async () => {
  assertPrivateNetns();
  const wasm = path.join(STATIC_ROOT, 'build', 'wasm', 'p2psync.wasm');
  assert.ok(fs.existsSync(wasm), `${wasm} is missing: run scripts/build wasm`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  srv = await startServer({ host: '127.0.0.1', port: 0, staticRoot: STATIC_ROOT, log: (m) => serverLog.push(m) });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.close();
});

let roomSeq = 0;
const roomName = (tag) => `e2e-${tag}-${process.pid}-${++roomSeq}`;

/** Everything a test compares, read from one page. */
function readGame(h, to) {
  return h.page.evaluate((to) => {
    const g = window.game;
    const m = g.exportSessionMetrics();
    return {
      playerIndex: g.playerIndex,
      done: g.done,
      error: g.error,
      frame: g.frame,
      loggedFrame: g.loggedFrame,
      confirmedFrame: g.confirmedFrame,
      verifiedFrame: g.verifiedFrame,
      log: g.actionLogHex(0, to),
      finalStateHash: g.finalStateHash,
      summary: g.episodeSummary,
      p2pMetrics: g.p2pMetrics,
      rollbacks: m.rollbacks.count,
      maxRollback: m.rollbacks.maxFrames,
      desyncs: m.sync.desyncs,
      matches: m.sync.matches,
      firstDelivery: { p2p: m.inputs.firstDelivery.p2p, relay: m.inputs.firstDelivery.relay },
      fallback: m.quality.fallback,
      stalls: m.quality.stalls,
      transport: m.transport,
      events: g.events,
    };
  }, to);
}

/** Open one room of n pages on the demo and wait until every page has joined and connected. */
async function openRoom(query, n = 2, readyTimeout = 60000) {
  const room = roomName(query.env || 'grid');
  const qs = new URLSearchParams({ room, players: String(n), ...query }).toString();
  const pages = await openPages(browser, `${srv.url}?${qs}`, n);
  try {
    await Promise.all(pages.map((h) => h.page.waitForFunction(() => window.game && (window.game.ready || window.game.error), null, { timeout: readyTimeout, polling: 100 })));
    for (const h of pages) {
      const err = await h.page.evaluate(() => window.game.error);
      assert.equal(err, null, `page ${h.index} failed: ${err}`);
    }
  } catch (e) {
    dumpLogs(pages);
    await closePages(pages);
    throw e;
  }
  return { room, pages };
}

async function waitDone(pages, timeout) {
  await Promise.all(pages.map((h) => h.page.waitForFunction(() => window.game.done || window.game.error, null, { timeout, polling: 200 })));
}

/** Run a room to the end of its episode; on failure dump page logs and the server log. */
async function runRoom(query, { n = 2, timeout = 90000, readyTimeout = 60000 } = {}) {
  const t = Date.now();
  const { room, pages } = await openRoom(query, n, readyTimeout);
  try {
    const tReady = Date.now();
    await waitDone(pages, timeout);
    const frames = Number(query.frames);
    const games = await Promise.all(pages.map((h) => readGame(h, frames - 1)));
    for (const g of games) assert.equal(g.error, null, `page error: ${g.error}`);
    const timing = { readyS: (tReady - t) / 1000, playS: (Date.now() - tReady) / 1000 };
    return { room, pages, games, timing };
  } catch (e) {
    dumpLogs(pages);
    console.error(serverLog.slice(-40).join('\n'));
    await closePages(pages);
    throw e;
  }
}

/**
 * The engine puts a peer on the relay when the measured P2P RTT (which includes both pages'
 * main-thread delays) averages > 400 ms: on an idle machine that never happens here, on a
 * starved one (other builds hogging the 2 cores) it can. A run whose pages hit such a latency
 * fallback where it invalidates the test is retried once, with a note.
 */
async function runRoomRetrying(label, queryFor, starvedIn, opts) {
  for (let attempt = 1; ; attempt++) {
    const run = await runRoom(queryFor(attempt), opts);
    const starved = starvedIn(run.games);
    if (!starved.length || attempt >= 2) return run;
    console.log(`# ${label} attempt ${attempt}: latency fallback (${starved.map((g) => `player ${g.playerIndex}: ${g.fallback.reason} at frame ${g.fallback.frame}`).join('; ')}), ` +
      `load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}: retrying once`);
    await closePages(run.pages);
  }
}
const latencyFallback = (g) => g.events.some((e) => e.type === 'fallback' && /^latency/.test(e.reason));

function assertSameLogs(games, frames) {
  for (const g of games) {
    assert.ok(g.loggedFrame >= frames - 1, `player ${g.playerIndex} logged only up to frame ${g.loggedFrame}`);
    assert.equal(g.log.length, frames * 2 * 2, `player ${g.playerIndex}: log of ${frames} frames x 2 actors (2 hex digits each)`);
  }
  for (let i = 1; i < games.length; i++) {
    if (games[i].log !== games[0].log) {
      const a = games[0].log, b = games[i].log;
      let k = 0;
      while (k < a.length && a[k] === b[k]) k++;
      assert.fail(`action logs differ first at frame ${Math.floor(k / 4)} (players ${games[0].playerIndex} / ${games[i].playerIndex})`);
    }
  }
}

const p2pRatio = (pm) => pm.inputsReceivedViaP2P / Math.max(1, pm.inputsReceivedViaP2P + pm.inputsReceivedViaSocketIO);

// -----------------------------------------------------------------------------------------------

test('clean run: 600 frames, 40 ms + 5% loss on P2P: identical logs, no desync, P2P ratio > 0.9, panel renders', async () => {
  const FR = 600;
  // recover=1000: a peer put on the relay by a latency spike returns to P2P after 1 s of pongs
  // averaging < 150 ms one-way
  const run = await runRoomRetrying('clean run',
    (attempt) => ({ auto: String(attempt), frames: String(FR), latency: '40', loss: '5', recover: '1000', recoverBelow: '150' }),
    (games) => games.filter((g) => latencyFallback(g) && p2pRatio(g.p2pMetrics) <= 0.9), { timeout: 100000 });
  const { pages, games, timing } = run;
  try {
    assertSameLogs(games, FR);
    for (const g of games) {
      assert.equal(g.desyncs, 0, `player ${g.playerIndex} desyncs`);
      assert.ok(g.matches > 0, 'state hashes were compared');
      assert.ok(g.verifiedFrame >= 0, 'some frame was verified against the peer');
      assert.ok(p2pRatio(g.p2pMetrics) > 0.9, `P2P ratio ${p2pRatio(g.p2pMetrics).toFixed(3)} (player ${g.playerIndex}: ${JSON.stringify(g.p2pMetrics)}; ` +
        `fallback ${JSON.stringify(g.fallback.events)}; load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')})`);
      assert.equal(g.p2pMetrics.connectionType, 'direct');
      assert.ok(g.transport.counters.p2pPacketsDroppedByImpair > 0, 'the loss knob dropped packets');
      assert.ok(g.transport.counters.p2pPacketsDelayed > 0, 'the latency knob delayed packets');
      assert.match(g.summary, new RegExp(`^\\[Episode\\] Complete at frame ${FR - 1} \\| Rewards: `));
      assert.equal(g.finalStateHash, games[0].finalStateHash, 'final state hashes agree');
    }
    const logs = pages.flatMap((h) => h.logs);
    assert.ok(logs.some((l) => /\[P2P Sync\] Player [01] broadcast at frame \d+/.test(l)), 'the [P2P Sync] broadcast line is logged');
    assert.ok(logs.some((l) => l.includes('[Episode] Complete at frame')), 'the episode summary line is logged');
    console.log(`# clean run (${elapsed()}; joined in ${timing.readyS} s, played in ${timing.playS} s): rollbacks ${games.map((g) => `${g.rollbacks} (max ${g.maxRollback})`).join(' / ')}, ` +
      `P2P ratio ${games.map((g) => p2pRatio(g.p2pMetrics).toFixed(3)).join(' / ')}, stalls ${games.map((g) => g.stalls).join(' / ')}, ` +
      `verified ${games.map((g) => g.verifiedFrame).join(' / ')}`);

    // the screenshot: the game canvas and the filled metrics panel
    const page = pages[0].page;
    await page.setViewportSize({ width: 900, height: 760 });
    await page.evaluate(() => new Promise((r) => setTimeout(r, 700))); // one more panel refresh (2 Hz)
    const png = path.join(ARTIFACTS, 'demo.png');
    await page.screenshot({ path: png, fullPage: true });
    const size = fs.statSync(png).size;
    assert.ok(size > 15000, `screenshot is ${size} bytes`);
    const view = await page.evaluate(() => {
      const painted = (id, bg) => {
        const c = document.getElementById(id);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const colors = new Set();
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          const rgb = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
          if (rgb !== bg) n++;
          if (colors.size < 64) colors.add(rgb);
        }
        return { n, colors: colors.size };
      };
      const text = (id) => document.getElementById(id).textContent;
      return {
        board: painted('board', 0x0d0f14),
        rtt: painted('rtt', 0x0d0f14),
        hist: painted('hist', 0x0d0f14),
        panel: !!document.getElementById('panel'),
        ratio: text('m-ratio'), rollbacks: text('m-rollbacks'), fallback: text('m-fallback'),
        desync: text('m-desync'), frames: text('m-frames'), rttText: text('m-rtt'), first: text('m-first'),
      };
    });
    assert.ok(view.panel, 'the metrics panel exists');
    assert.ok(view.board.n > 5000 && view.board.colors >= 4, `board painted: ${JSON.stringify(view.board)}`);
    assert.ok(view.rtt.n > 100, `RTT sparkline drawn: ${JSON.stringify(view.rtt)}`);
    assert.match(view.ratio, /^\d+\.\d% \(\d+\/\d+\)$/);
    assert.match(view.rollbacks, /^\d+ \(max \d+\)$/);
    assert.match(view.rttText, /^\d+ \/ \d+ ms$/);
    assert.match(view.first, /^\d+ \/ \d+$/);
    assert.match(view.desync, /^none/);
    assert.match(view.frames, /^\d+ \/ \d+ \/ \d+$/);
    console.log(`# screenshot ${path.relative(REPO, png)} (${size} bytes); panel: ${JSON.stringify({ ratio: view.ratio, rollbacks: view.rollbacks, rtt: view.rttText, fallback: view.fallback })}`);
  } finally {
    await closePages(pages);
  }
});

test('cut P2P at frame 200: fallback "channel-closed", the Socket.IO relay carries the game to frame 600, logs identical', async () => {
  const FR = 600, CUT = 200;
  const { pages, games, timing } = await runRoomRetrying('cut P2P',
    (attempt) => ({ auto: String(2 + attempt), frames: String(FR), cut: String(CUT) }),
    (games) => games.filter((g) => g.playerIndex === 0 && latencyFallback(g)), { timeout: 100000 });
  try {
    assertSameLogs(games, FR);
    for (const g of games) {
      assert.equal(g.desyncs, 0);
      assert.equal(g.p2pMetrics.p2pFallbackTriggered, true, `player ${g.playerIndex} fell back`);
      const closed = g.events.filter((e) => e.type === 'fallback' && e.reason === 'channel-closed');
      const chan = g.transport.channels[0];
      assert.notEqual(chan.state, 'open', `player ${g.playerIndex}: channel closed (${chan.state})`);
      if (g.playerIndex === 0) {
        assert.equal(closed.length, 1, `player 0 fallback events: ${JSON.stringify(g.events.filter((e) => e.type === 'fallback'))}`);
        assert.ok(closed[0].frame >= CUT && closed[0].frame <= CUT + 10, `cut at frame ${closed[0].frame}`);
      }
      // inputs of the last ~400 frames came over the relay
      assert.ok(g.p2pMetrics.inputsReceivedViaSocketIO >= FR - CUT - 20, `relay carried inputs: ${JSON.stringify(g.p2pMetrics)}`);
      assert.ok(g.p2pMetrics.inputsSentViaSocketIO >= FR - CUT - 20);
      assert.match(g.summary, /\| Fallback at frame \d+$/);
      assert.equal(g.finalStateHash, games[0].finalStateHash);
    }
    const other = games.find((g) => g.playerIndex === 1);
    const reasons = other.events.filter((e) => e.type === 'fallback').map((e) => `${e.reason}@${e.frame}`);
    assert.ok(reasons.length >= 1, 'player 1 fell back too');
    assert.ok(pages.flatMap((h) => h.logs).some((l) => l.includes('[P2P Fallback]') && l.includes('channel-closed')), 'the [P2P Fallback] line is logged');
    console.log(`# cut P2P (${elapsed()}; joined in ${timing.readyS} s, played in ${timing.playS} s): fallback player 0 ${games.find((g) => g.playerIndex === 0).p2pMetrics.p2pFallbackFrame}, player 1 ${reasons.join(', ')}; ` +
      `relay inputs received ${games.map((g) => g.p2pMetrics.inputsReceivedViaSocketIO).join(' / ')}`);
  } finally {
    await closePages(pages);
  }
});

test('Pyodide env in the browser: 300 frames, identical logs and final state hashes', async () => {
  const FR = 300;
  const { pages, games, timing } = await runRoom({ env: 'pyodide', auto: '2', frames: String(FR), latency: '20', loss: '2' }, { timeout: 100000, readyTimeout: 150000 });
  try {
    assertSameLogs(games, FR);
    for (const g of games) {
      assert.equal(g.desyncs, 0);
      assert.ok(g.matches > 0);
      assert.match(g.finalStateHash, /^[0-9a-f]{16}$/);
    }
    assert.equal(games[0].finalStateHash, games[1].finalStateHash, 'final state hashes agree');
    console.log(`# pyodide (${elapsed()}; Pyodide loaded + joined in ${timing.readyS} s, played in ${timing.playS} s): final state ${games[0].finalStateHash}, rollbacks ${games.map((g) => g.rollbacks).join(' / ')}`);
  } finally {
    await closePages(pages);
  }
});

test('the server rejects a malformed relay payload and a cross-room send while two rooms keep playing', async () => {
  const FR = 150;
  const opened = await Promise.allSettled([openRoom({ auto: '4', frames: String(FR) }), openRoom({ auto: '5', frames: String(FR) })]);
  const failed = opened.find((r) => r.status === 'rejected');
  if (failed) {
    await closePages(opened.flatMap((r) => (r.status === 'fulfilled' ? r.value.pages : [])));
    throw failed.reason;
  }
  const [A, B] = opened.map((r) => r.value);
  try {
    const attacker = A.pages[0].page;
    const me = await attacker.evaluate(() => window.game.playerIndex);
    const dropsBefore = srv.stats().dropsTotal;
    const acks = await attacker.evaluate(async ({ me, roomB }) => {
      const g = window.game;
      return {
        badFrame: await g.emitRaw('pyodide_player_action', { player_id: me, action: 1, frame_number: 'x' }),
        badHash: await g.emitRaw('p2p_state_sync', { sender_id: me, frame_number: 5, state_hash: null }),
        badBytes: await g.emitRaw('p2psync_packet', { to: 1 - me, bytes: 'not binary' }),
        forged: await g.emitRaw('pyodide_player_action', { player_id: 1 - me, action: 1, frame_number: 3 }),
        crossAction: await g.emitRaw('pyodide_player_action', { player_id: me, action: 1, frame_number: 3, room: roomB }),
        crossSync: await g.emitRaw('p2p_state_sync', { sender_id: me, frame_number: 5, state_hash: 'ab', room: roomB }),
        badTarget: await g.emitRaw('p2psync_packet', { to: 3, bytes: new Uint8Array([1, 2, 3]) }),
        unknown: await g.emitRaw('not_an_event', { x: 1 }),
      };
    }, { me, roomB: B.room });
    assert.deepEqual(acks, {
      badFrame: { ok: false, error: 'bad_frame' },
      badHash: { ok: false, error: 'bad_state_hash' },
      badBytes: { ok: false, error: 'bad_bytes' },
      forged: { ok: false, error: 'identity_mismatch' },
      crossAction: { ok: false, error: 'cross_room' },
      crossSync: { ok: false, error: 'cross_room' },
      badTarget: { ok: false, error: 'bad_target' },
      unknown: { ok: false, error: 'unknown_event' },
    });
    assert.equal(srv.stats().dropsTotal - dropsBefore, 8);
    // ... sent while every page of both rooms was still mid-episode
    const progress = await Promise.all([...A.pages, ...B.pages].map((h) => h.page.evaluate(() => ({ frame: window.game.frame, done: window.game.done }))));
    assert.ok(progress.every((p) => !p.done), `rooms still playing: ${JSON.stringify(progress)}`);
    assert.ok(serverLog.some((l) => /drop p2p_state_sync from \S+: cross_room/.test(l)), 'the drop is logged');
    // both rooms keep playing to the end with identical logs
    await waitDone([...A.pages, ...B.pages], 90000);
    for (const R of [A, B]) {
      const games = await Promise.all(R.pages.map((h) => readGame(h, FR - 1)));
      assertSameLogs(games, FR);
      for (const g of games) {
        assert.equal(g.error, null);
        assert.equal(g.desyncs, 0);
        // nothing malformed reached any engine
        // keys are "<path or relay event>:<ReceiveResult>"
        const bad = Object.keys(g.transport.receiveResults).filter((k) => !['OK', 'DUPLICATE', 'UNSOLICITED_PONG', 'OUT_OF_WINDOW'].includes(k.split(':').pop()));
        assert.deepEqual(bad, [], `room ${R.room} player ${g.playerIndex} receive results ${JSON.stringify(g.transport.receiveResults)}`);
      }
    }
    console.log(`# server validation (${elapsed()}): drops ${JSON.stringify(srv.stats().drops)}`);
  } catch (e) {
    dumpLogs([...A.pages, ...B.pages]);
    console.error(serverLog.slice(-40).join('\n'));
    throw e;
  } finally {
    await closePages([...A.pages, ...B.pages]);
  }
});
