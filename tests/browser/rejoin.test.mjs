// Rejoin after a reload (issue 16) in headless Chromium: two demo pages (web/demo/ over
// web/session.js) play a room on the real server (web/server.mjs) over real RTCDataChannels; one
// page is reloaded with page.reload() mid-episode (same tab: its sessionStorage, with the
// reconnect token, survives). The reloaded page reclaims its seat (`rejoined`), the other page
// hears peer_rejoined and answers the rejoined page's new offer, a new DataChannel opens both
// ways. Then the engine part: the rejoined page loads the state from the live one and both finish
// the episode with identical data from the rejoin frame on.
// Run: scripts/netns-run node --test tests/browser/rejoin.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../../web/server.mjs';
import { launchBrowser, openPages, closePages, dumpLogs, assertPrivateNetns } from './harness.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let srv, browser;
const serverLog = [];

before(async () => {
  assertPrivateNetns();
  assert.ok(fs.existsSync(path.join(REPO, 'build', 'wasm', 'p2psync.wasm')), 'build/wasm/p2psync.wasm is missing: run scripts/build wasm');
  srv = await startServer({ host: '127.0.0.1', port: 0, log: (m) => serverLog.push(m) });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.close();
});

const FRAMES = 600;       // the episode is truncated here (20 s at 30 fps)
const RELOAD_AT = 150;    // session-wide frame of the reload

let roomSeq = 0;

async function waitAll(pages, fn, arg, timeout) {
  await Promise.all(pages.map((h) => h.page.waitForFunction(fn, arg, { timeout, polling: 100 })));
}

/** What the test reads from one page. */
const readPage = (h) => h.page.evaluate(() => {
  const g = window.game;
  const s = g.session;
  const m = s && s.engine ? g.exportSessionMetrics() : null;
  const tokens = Object.keys(sessionStorage).filter((k) => k.startsWith('p2psync.token|')).map((k) => [k, sessionStorage.getItem(k)]);
  return {
    playerIndex: g.playerIndex, error: g.error, ready: g.ready, done: g.done, frame: g.globalFrame, status: g.status,
    rejoined: s ? s.rejoined : null, renewed: s ? s.counters.peersRenewed : null,
    channels: m ? m.transport.channels.map((c) => ({ peer: c.peer, state: c.state, connectionState: c.connectionState })) : [],
    events: g.events.filter((e) => e.type !== 'stall').map((e) => ({ type: e.type, peer: e.peer, frame: e.frame, reason: e.reason })),
    desyncs: m ? m.sync.desyncs : null, finalStateHash: g.finalStateHash, tokens,
  };
});

/** Shared research columns of the current (last kept) episode, rows from `from` on. */
const sharedRows = (h, from) => h.page.evaluate((from) => {
  const d = window.game.researchData();
  const ep = d.episodes[d.episodes.length - 1];
  const shared = d.columns.filter((c) => !d.localColumns.includes(c));
  const rows = ep ? ep.rows.filter((r) => r.frame >= from) : [];
  return { episode: ep ? ep.episode : null, frames: rows.map((r) => r.frame), text: rows.map((r) => shared.map((c) => String(r[c])).join(',')) };
}, from);

for (const reloadIndex of [1, 0]) {
  test(`player ${reloadIndex} reloads its page mid-episode: it rejoins its seat, a new DataChannel opens both ways, both finish the episode with identical data`, async (t) => {
    const room = `rejoin-${process.pid}-${++roomSeq}`;
    const qs = new URLSearchParams({ room, players: '2', auto: String(20 + reloadIndex), fps: '30', frames: String(FRAMES) }).toString();
    const pages = await openPages(browser, `${srv.url}?${qs}`, 2);
    try {
      await waitAll(pages, () => window.game && (window.game.ready || window.game.error), null, 60000);
      const byIndex = [];
      for (const h of pages) byIndex[await h.page.evaluate(() => window.game.playerIndex)] = h;
      const reloaded = byIndex[reloadIndex], other = byIndex[1 - reloadIndex];
      const before = await Promise.all(byIndex.map(readPage));
      for (const s of before) {
        assert.equal(s.error, null);
        assert.equal(s.rejoined, false);
        assert.equal(s.tokens.length, 1, `one stored token per tab: ${JSON.stringify(s.tokens)}`);
        assert.ok(s.tokens[0][0].endsWith(`|${room}`), `keyed by the room: ${s.tokens[0][0]}`);
      }
      assert.notEqual(before[0].tokens[0][1], before[1].tokens[0][1], 'each tab its own token');
      await waitAll(pages, (f) => window.game.globalFrame >= f, RELOAD_AT, 30000);

      // the reload: same tab, same URL, same sessionStorage
      reloaded.logs.push('--- reload ---');
      await reloaded.page.reload({ waitUntil: 'load' });
      await reloaded.page.waitForFunction(() => window.game && (window.game.ready || window.game.error), null, { timeout: 30000, polling: 100 });
      const re = await readPage(reloaded);
      assert.equal(re.error, null, `reloaded page: ${re.error}`);
      assert.equal(re.rejoined, true, 'the server answered rejoined');
      assert.equal(re.playerIndex, reloadIndex, 'its old seat');
      assert.equal(re.tokens.length, 1);
      assert.notEqual(re.tokens[0][1], before[reloadIndex].tokens[0][1], 'the new token is stored');
      assert.ok(serverLog.some((l) => l.includes(`rejoined ${room} as player ${reloadIndex}`)), 'the server logged the rejoin');

      // the other page renegotiated: a new DataChannel is open both ways (on the other page: the
      // channel of the new connection, after it dropped the old one)
      await waitAll([reloaded, other], () => {
        const s = window.game.session;
        const m = s && s.engine && window.game.exportSessionMetrics();
        return !!m && (s.rejoined || s.counters.peersRenewed >= 1) && m.transport.channels.length === 1 && m.transport.channels[0].state === 'open';
      }, null, 30000);
      const ot = await readPage(other);
      assert.ok(ot.events.some((e) => e.type === 'peerRejoined' && e.peer === reloadIndex), `peerRejoined on the other page: ${JSON.stringify(ot.events)}`);
      assert.equal(ot.renewed, 1, 'the other page dropped its old connection once');
      assert.ok(other.logs.some((l) => /\[P2P\] player \d rejoined the room/.test(l)), 'logged');
      assert.ok(reloaded.logs.some((l) => /\[P2P\] rejoined .* as player/.test(l)), 'the reloaded page logged its rejoin');
      console.log(`# player ${reloadIndex} reloaded at frame >= ${RELOAD_AT}: rejoined, channels open (other page: ${JSON.stringify(ot.channels)})`);

      await t.test('engine: the rejoined page loads the state and both finish the episode with identical data from the rejoin frame on', async () => {
        await reloaded.page.waitForFunction(() => window.game.events.some((e) => e.type === 'stateLoaded') || window.game.error, null, { timeout: 20000, polling: 100 });
        await waitAll(pages, () => window.game.done || window.game.error, null, 90000);
        const end = await Promise.all(byIndex.map(readPage));
        for (const s of end) {
          assert.equal(s.error, null, `player ${s.playerIndex}: ${s.error}`);
          assert.equal(s.done, true);
          assert.equal(s.desyncs, 0, `player ${s.playerIndex}: no desync`);
        }
        const loaded = end[reloadIndex].events.find((e) => e.type === 'stateLoaded');
        assert.ok(loaded, `stateLoaded on the rejoined page: ${JSON.stringify(end[reloadIndex].events)}`);
        assert.equal(loaded.peer, 1 - reloadIndex, 'the state came from the live page');
        assert.ok(end[1 - reloadIndex].events.some((e) => e.type === 'rejoin' && e.peer === reloadIndex), 'the live page saw the rejoin');
        assert.match(end[0].finalStateHash ?? '', /^[0-9a-f]{16}$/);
        assert.equal(end[1].finalStateHash, end[0].finalStateHash, 'equal final states');
        const from = loaded.frame;
        const r = await sharedRows(reloaded, from);
        assert.ok(r.frames.length > 0 && r.frames[0] <= from + 1, `the rejoined page has rows from the rejoin frame ${from}: ${r.frames.slice(0, 3)}`);
        const start = r.frames[0];
        assert.deepEqual(r.frames, r.frames.map((_, k) => start + k), 'one row per frame, none twice');
        const [d0, d1] = await Promise.all(byIndex.map((h) => sharedRows(h, start)));
        assert.equal(d1.episode, d0.episode, 'the same episode');
        assert.equal(d0.text.length, d1.text.length, 'as many rows on both pages');
        assert.deepEqual(d1.text, d0.text, 'shared research columns identical from the rejoin frame on');
        for (const s of end) assert.equal(s.tokens.length, 0, `player ${s.playerIndex}: the token is forgotten once the episode ended`);
        console.log(`# player ${reloadIndex}: state loaded at frame ${from}; ${d0.text.length} identical rows to the end`);
      });
    } catch (e) {
      dumpLogs(pages);
      console.error(serverLog.slice(-40).join('\n'));
      throw e;
    } finally {
      await closePages(pages);
    }
  });
}
