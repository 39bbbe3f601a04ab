// Research data end to end: the demo page (web/demo/ + web/session.js) in headless Chromium, the real
// server, real RTCDataChannels and the real p2psync.wasm (README: "Research data", "Episodes, focus and
// catch-up").
//   1. Three episodes over a lossy link (?episodes=3&frames=N&latency&loss, keep=session): each page's
//      exportSessionData({format:'json'}) and exportEpisodeData({format:'csv'}) have the same shared
//      columns (all columns minus localColumns) cell by cell, one row per frame of every episode
//      (rows = end.episodeFrame + 1), and the reward columns sum to the env's episode rewards.
//   2. One page hidden for 10 s in the middle of an episode: the browser hides it (visibilitychange ->
//      the session's trackVisibility -> setFocus(false)) and freezes it (CDP
//      Page.setWebLifecycleState 'frozen': no task of the page runs), then makes it active and
//      visible again. Both pages finish the episode with identical shared data; the hidden span is
//      in the data (isFocused.<id> false from the hide through the catch-up, the partner's stall as a
//      gap in its timestamps); the returning page is within 2 frames of its partner within 2 s.
//
// Why the hidden page is not a Playwright page: Playwright keeps every page it drives "visible" (it
// enables Emulation.setFocusEmulationEnabled on its own session of each page, which holds the page as
// captured), so on a Playwright page Page.setWebLifecycleState 'frozen' does nothing in this Chromium
// (no visibilitychange, no freeze event, the page's timers keep running). The hidden page is therefore a
// target created and driven over raw CDP (RawPage below) in its own browser context, which Playwright
// does not adopt; there 'frozen' hides and freezes the page as in a real browser.
//
// Run: scripts/netns-run node --test tests/browser/research.test.mjs   (P2PSYNC_ECHO=1: page console)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../../web/server.mjs';
import { launchBrowser, openPages, closePages, dumpLogs, assertPrivateNetns } from './harness.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const STATIC_ROOT = process.env.P2PSYNC_STATIC_ROOT || REPO;
const ECHO = !!process.env.P2PSYNC_ECHO;

let srv, browser;
const serverLog = [];
const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  assertPrivateNetns();
  const wasm = path.join(STATIC_ROOT, 'build', 'wasm', 'p2psync.wasm');
  assert.ok(fs.existsSync(wasm), `${wasm} is missing: run scripts/build wasm`);
  srv = await startServer({ host: '127.0.0.1', port: 0, staticRoot: STATIC_ROOT, log: (m) => serverLog.push(m) });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.close();
});

let roomSeq = 0;
const roomUrl = (tag, query) => `${srv.url}?${new URLSearchParams({ room: `research-${tag}-${process.pid}-${++roomSeq}`, players: '2', ...query })}`;

// ------------------------------------------------------------------------------------ raw CDP page

/**
 * A page created and driven over raw CDP (not adopted by Playwright, so not held visible by its focus
 * emulation): evaluate(fn, arg) like Playwright's, console collected into `logs`, and `send` for any
 * CDP command of the page's target. Messages go through the browser session (Target.sendMessageToTarget).
 */
class RawPage {
  static async open(browser, url, index) {
    const bs = await browser.newBrowserCDPSession();
    const { browserContextId } = await bs.send('Target.createBrowserContext', {});
    const { targetId } = await bs.send('Target.createTarget', { url: 'about:blank', browserContextId });
    const { sessionId } = await bs.send('Target.attachToTarget', { targetId, flatten: false });
    const p = new RawPage(bs, browserContextId, targetId, sessionId, index);
    await p.send('Runtime.enable');
    await p.send('Page.enable');
    await p.send('Page.navigate', { url });
    return p;
  }

  constructor(bs, browserContextId, targetId, sessionId, index) {
    Object.assign(this, { bs, browserContextId, targetId, sessionId, index });
    this.logs = [];
    this._id = 0;
    this._waiting = new Map();
    bs.on('Target.receivedMessageFromTarget', (e) => {
      if (e.sessionId !== this.sessionId) return;
      const m = JSON.parse(e.message);
      if (m.id !== undefined) {
        const w = this._waiting.get(m.id);
        if (!w) return;
        this._waiting.delete(m.id);
        if (m.error) w.reject(new Error(`${w.method}: ${m.error.message}`));
        else w.resolve(m.result);
      } else if (m.method === 'Runtime.consoleAPICalled') {
        this._log(`${m.params.type}: ${m.params.args.map((a) => (a.value !== undefined ? String(a.value) : a.description ?? a.type)).join(' ')}`);
      } else if (m.method === 'Runtime.exceptionThrown') {
        const d = m.params.exceptionDetails;
        this._log(`pageerror: ${d.exception?.description ?? d.text}`);
      }
    });
  }

  _log(m) {
    this.logs.push(m);
    if (ECHO) console.log(`[page ${this.index}] ${m}`);
  }

  send(method, params = {}) {
    const id = ++this._id;
    return new Promise((resolve, reject) => {
      this._waiting.set(id, { resolve, reject, method });
      this.bs.send('Target.sendMessageToTarget', { sessionId: this.sessionId, message: JSON.stringify({ id, method, params }) }).catch(reject);
    });
  }

  async evaluate(fn, arg) {
    const r = await this.send('Runtime.evaluate', {
      expression: `(${fn})(${arg === undefined ? '' : JSON.stringify(arg)})`, awaitPromise: true, returnByValue: true,
    });
    if (r.exceptionDetails) throw new Error(`evaluate: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value;
  }

  async waitFor(fn, arg, { timeout = 30000, polling = 100 } = {}) {
    const end = Date.now() + timeout;
    for (;;) {
      const v = await this.evaluate(fn, arg).catch(() => false); // about:blank / navigating
      if (v) return v;
      if (Date.now() > end) throw new Error(`RawPage ${this.index}: timed out waiting for ${fn}`);
      await sleep(polling);
    }
  }

  async close() {
    await this.bs.send('Target.disposeBrowserContext', { browserContextId: this.browserContextId }).catch(() => {});
    await this.bs.detach().catch(() => {});
  }
}

// ------------------------------------------------------------------------------------ helpers

/** `page` is a Playwright page or a RawPage: both have evaluate(fn, arg). */
const ready = () => window.game && (window.game.ready || window.game.error);

/** Everything the assertions read from one page once its episodes are over. */
function readResearch(page) {
  return page.evaluate(() => {
    const g = window.game, s = g.session;
    const data = s.exportSessionData({ format: 'json' });
    const csv = {};
    for (const e of data.episodes) csv[e.episode] = s.exportEpisodeData({ episode: e.episode, format: 'csv' });
    const m = g.exportSessionMetrics();
    return {
      playerIndex: g.playerIndex, error: g.error, done: g.done, data, csv,
      results: s.episodeResults, finalStateHash: g.finalStateHash,
      desyncs: m.sync.desyncs, matches: m.sync.matches, rollbacks: m.rollbacks.count, stalls: m.quality.stalls,
      impair: m.transport.counters.p2pPacketsDroppedByImpair,
      events: g.events.map((e) => `${e.type}${e.reason ? `:${e.reason}` : ''}${e.peer !== undefined ? `/p${e.peer}` : ''}@${e.frame}`),
      focusEvents: window.__focusEvents || [],
    };
  });
}

const sharedColumnsOf = (d) => d.columns.filter((c) => !d.localColumns.includes(c));

/** The shared columns of two pages' JSON exports are identical, cell by cell, in every episode. */
function assertSameShared(a, b) {
  assert.deepEqual(a.data.columns, b.data.columns, 'same columns');
  assert.deepEqual(a.data.localColumns, b.data.localColumns, 'same local columns');
  const shared = sharedColumnsOf(a.data);
  assert.deepEqual(a.data.episodes.map((e) => e.episode), b.data.episodes.map((e) => e.episode), 'same episodes kept');
  let cells = 0;
  for (let k = 0; k < a.data.episodes.length; k++) {
    const ea = a.data.episodes[k], eb = b.data.episodes[k];
    assert.equal(ea.rows.length, eb.rows.length, `episode ${ea.episode}: row counts ${ea.rows.length} / ${eb.rows.length}`);
    for (let i = 0; i < ea.rows.length; i++) {
      for (const c of shared) {
        if (ea.rows[i][c] !== eb.rows[i][c]) {
          assert.fail(`episode ${ea.episode} row ${i} (frame ${ea.rows[i].frame}) column ${c}: player ${a.playerIndex} has ${ea.rows[i][c]}, ` +
            `player ${b.playerIndex} has ${eb.rows[i][c]}`);
        }
        cells++;
      }
    }
    assert.deepEqual(ea.end, eb.end, `episode ${ea.episode}: same end`);
  }
  return { shared, cells };
}

/** One row per frame: rows.length = end.episodeFrame + 1, numbered in order, within the episode. */
function assertRowPerFrame(d) {
  for (const e of d.episodes) {
    assert.ok(e.end, `episode ${e.episode} has an end`);
    assert.equal(e.end.reason, 'synced', `episode ${e.episode} end: ${JSON.stringify(e.end)}`);
    assert.equal(e.rows.length, e.end.episodeFrame + 1, `episode ${e.episode}: ${e.rows.length} rows, end at episodeFrame ${e.end.episodeFrame}`);
    const first = e.end.frame - e.end.episodeFrame;
    e.rows.forEach((r, i) => {
      assert.equal(r.episode, e.episode);
      assert.equal(r.episodeFrame, i, `episode ${e.episode} row ${i}: episodeFrame ${r.episodeFrame}`);
      assert.equal(r.frame, first + i, `episode ${e.episode} row ${i}: frame ${r.frame}`);
      const last = i === e.rows.length - 1;
      assert.equal(r.terminated || r.truncated, last, `episode ${e.episode} row ${i}: terminated ${r.terminated} truncated ${r.truncated}`);
    });
    assert.equal(new Set(e.rows.map((r) => r.inputDelay)).size, 1, `episode ${e.episode}: one input delay`);
  }
}

/** The CSV export of each episode is the JSON rows, line by line (header = columns). */
function assertCsvMatchesJson(r) {
  for (const e of r.data.episodes) {
    const lines = r.csv[e.episode].trimEnd().split('\n');
    assert.ok(!r.csv[e.episode].includes('"'), 'nothing quoted');
    assert.equal(lines[0], r.data.columns.join(','), 'CSV header');
    assert.equal(lines.length - 1, e.rows.length, `episode ${e.episode}: CSV lines`);
    for (let i = 0; i < e.rows.length; i++) {
      assert.equal(lines[i + 1], r.data.columns.map((c) => String(e.rows[i][c])).join(','), `episode ${e.episode} CSV line ${i + 1}`);
    }
  }
}

/** The CSV's shared columns (picked by header name) agree between two pages. */
function assertSameSharedCsv(a, b, shared) {
  for (const ep of Object.keys(a.csv)) {
    const pick = (text) => {
      const [head, ...rows] = text.trimEnd().split('\n').map((l) => l.split(','));
      const idx = shared.map((c) => head.indexOf(c));
      assert.ok(idx.every((i) => i >= 0), 'every shared column in the CSV header');
      return rows.map((r) => idx.map((i) => r[i]).join(','));
    };
    const pa = pick(a.csv[ep]), pb = pick(b.csv[ep]);
    assert.equal(pa.length, pb.length);
    const k = pa.findIndex((l, i) => l !== pb[i]);
    assert.equal(k, -1, `episode ${ep} CSV shared columns differ first at row ${k}: ${pa[k]} / ${pb[k]}`);
  }
}

/** Reward columns summed over each episode = the env's episode rewards (its scores at the end). */
function assertRewards(r) {
  const ids = r.data.columns.filter((c) => c.startsWith('reward.')).map((c) => c.slice('reward.'.length));
  assert.ok(ids.length >= 2, `reward columns: ${ids}`);
  const sums = [];
  for (const e of r.data.episodes) {
    const res = r.results.find((x) => x.episode === e.episode);
    assert.ok(res, `episode ${e.episode} in episodeResults`);
    const sum = Object.fromEntries(ids.map((id) => [id, e.rows.reduce((s, row) => s + row[`reward.${id}`], 0)]));
    for (const id of ids) assert.equal(sum[id], res.rewards[id], `player ${r.playerIndex} episode ${e.episode} reward.${id}: rows sum to ${sum[id]}, env says ${res.rewards[id]}`);
    sums.push(sum);
  }
  return sums;
}

// ------------------------------------------------------------------------------------ tests

test('three episodes over a lossy link: shared research columns identical on both pages, one row per frame, rewards sum to the episode rewards', async () => {
  const EPISODES = 3, FRAMES = 240;
  const pages = await openPages(browser, roomUrl('episodes', {
    auto: '21', episodes: String(EPISODES), frames: String(FRAMES), latency: '40', loss: '10', keep: 'session',
  }), 2);
  try {
    const tStart = Date.now();
    await Promise.all(pages.map((h) => h.page.waitForFunction(ready, null, { timeout: 60000, polling: 100 })));
    const tReady = Date.now();
    await Promise.all(pages.map((h) => h.page.waitForFunction(() => window.game.done || window.game.error, null, { timeout: 120000, polling: 200 })));
    const tDone = Date.now();
    const [a, b] = await Promise.all(pages.map((h) => readResearch(h.page)));
    for (const r of [a, b]) {
      assert.equal(r.error, null, `player ${r.playerIndex}: ${r.error}`);
      assert.equal(r.desyncs, 0, `player ${r.playerIndex} desyncs`);
      assert.ok(r.impair > 0, `player ${r.playerIndex}: the loss knob dropped packets`);
      assert.deepEqual(r.data.episodes.map((e) => e.episode), [0, 1, 2], `player ${r.playerIndex}: every episode kept (keep=session)`);
      assertRowPerFrame(r.data);
      for (const e of r.data.episodes) {
        assert.equal(e.end.episodeFrame, FRAMES - 1, `episode ${e.episode} cut at the frames limit`);
        assert.equal(e.end.truncated, true);
        // both pages were visible throughout
        assert.ok(e.rows.every((row) => row['isFocused.0'] && row['isFocused.1']), `player ${r.playerIndex} episode ${e.episode}: every frame focused`);
      }
      assertCsvMatchesJson(r);
      assert.equal(r.results.length, EPISODES);
    }
    const { shared, cells } = assertSameShared(a, b);
    assert.deepEqual(shared, ['episode', 'episodeFrame', 'frame', 'action.0', 'action.1', 'reward.0', 'reward.1', 'terminated', 'truncated',
      'isFocused.0', 'isFocused.1', 'inputDelay'], 'the shared columns');
    assert.deepEqual(a.data.localColumns, ['wasSpeculative.0', 'wasSpeculative.1', 'rollbacks', 'timestamp']);
    assertSameSharedCsv(a, b, shared);
    const sums = [assertRewards(a), assertRewards(b)];
    assert.deepEqual(sums[0], sums[1]);
    for (let k = 0; k < EPISODES; k++) {
      assert.deepEqual(a.results[k].rewards, b.results[k].rewards, `episode ${k} rewards`);
      assert.equal(a.results[k].finalStateHash, b.results[k].finalStateHash, `episode ${k} final state hash`);
    }
    const total = sums[0].reduce((s, x) => s + Object.values(x).reduce((u, v) => u + v, 0), 0);
    assert.ok(total > 0, 'some coin was collected (else the reward check proves little)');
    // the link was lossy enough that some frames were first stepped on a predicted remote action
    const spec = [a, b].map((r) => r.data.episodes.reduce((n, e) => n + e.rows.filter((row) => row[`wasSpeculative.${1 - r.playerIndex}`]).length, 0));
    const rows = a.data.episodes.reduce((n, e) => n + e.rows.length, 0);
    console.log(`# research, ${EPISODES} episodes x ${FRAMES} frames at 40 ms + 10% loss (${elapsed()}; joined in ${((tReady - tStart) / 1000).toFixed(1)} s, ` +
      `played in ${((tDone - tReady) / 1000).toFixed(1)} s): ${rows} rows x ${shared.length} shared columns = ${cells} cells identical on both pages (JSON and CSV); ` +
      `episode rewards ${JSON.stringify(sums[0])}; speculative rows ${spec.join(' / ')}, rollbacks ${a.rollbacks} / ${b.rollbacks}, input delays ${a.data.episodes.map((e) => e.rows[0].inputDelay).join(',')}`);
  } catch (e) {
    dumpLogs(pages);
    console.error(serverLog.slice(-40).join('\n'));
    throw e;
  } finally {
    await closePages(pages);
  }
});

test('a page hidden and frozen for 10 s mid-episode: the same shared data on both pages, the hidden span recorded, caught up within 2 s', async () => {
  const FRAMES = 450, HIDE_AT = 150, HIDDEN_MS = 10000;
  // recover: the returning page may take an RTT sample that spans the freeze (a ping in flight, or held
  // by the latency knob, as it froze: 1 run in 9 here) and fall back to the relay on it. Fallback is
  // sticky without fallbackRecovery, and the frozen page's Socket.IO connection does not survive the
  // freeze (it reconnects as a new socket that is not re-joined to the room), so that relay is dead:
  // without recovery the pair stalls for good. With it the pair is back on P2P ~6 s later.
  const url = roomUrl('hidden', { auto: '22', frames: String(FRAMES), latency: '40', loss: '5', recover: '1000', recoverBelow: '150' });
  const [ph] = await openPages(browser, url, 1);
  let raw = null;
  const logs = () => [ph, ...(raw ? [raw] : [])];
  try {
    raw = await RawPage.open(browser, url, 1);
    await Promise.all([ph.page.waitForFunction(ready, null, { timeout: 60000, polling: 100 }), raw.waitFor(ready, undefined, { timeout: 60000 })]);
    for (const p of [ph.page, raw]) assert.equal(await p.evaluate(() => window.game.error), null);
    // the partner records the focus events it receives; the hidden page its own (setFocus -> engine event)
    const watchFocus = () => {
      window.__focusEvents = [];
      window.game.session.addEventListener('focus', (e) => window.__focusEvents.push({ ...e.detail, at: performance.now() }));
      window.__vis = [];
      for (const t of ['visibilitychange', 'freeze', 'resume']) document.addEventListener(t, () => window.__vis.push(`${t}:${document.visibilityState}@${window.game.globalFrame}`));
      window.__socketIds = [window.game.socket.id];
      window.game.socket.on('connect', () => window.__socketIds.push(window.game.socket.id));
      return window.game.playerIndex;
    };
    const partnerIndex = await ph.page.evaluate(watchFocus);
    const hiddenIndex = await raw.evaluate(watchFocus);
    assert.equal(partnerIndex + hiddenIndex, 1, `player indices ${partnerIndex} / ${hiddenIndex}`);
    assert.equal(await raw.evaluate(() => document.visibilityState), 'visible', 'the raw page starts visible');

    await raw.waitFor((n) => window.game.frame >= n, HIDE_AT, { timeout: 60000, polling: 50 });
    const frameOf = (p) => p.evaluate(() => window.game.globalFrame);
    const beforeHide = await frameOf(raw);
    await raw.send('Page.setWebLifecycleState', { state: 'frozen' });
    const tHide = Date.now();
    // frozen: hidden (visibilitychange ran the session's setFocus(false) before the freeze), no task runs
    const atHide = await raw.evaluate(() => ({ vis: document.visibilityState, frame: window.game.globalFrame, log: window.__vis.slice() }));
    assert.equal(atHide.vis, 'hidden', 'the frozen page is hidden');
    assert.deepEqual(atHide.log.map((l) => l.split('@')[0]), ['visibilitychange:hidden', 'freeze:hidden'], `page events: ${atHide.log}`);
    await sleep(HIDDEN_MS - 1500);
    const late = await Promise.all([frameOf(raw), ph.page.evaluate(() => ({ frame: window.game.globalFrame, stalled: window.game.session.stalled, focus: window.__focusEvents.slice() }))]);
    assert.equal(late[0], atHide.frame, 'no frame ran on the frozen page');
    assert.ok(late[1].stalled, 'the partner stalls on the hidden player');
    const partnerLead = late[1].frame - atHide.frame;
    assert.ok(partnerLead > 2 && partnerLead <= 40, `the partner predicted ${partnerLead} frames past the hidden page (maxPredictionFrames 30 + input delay), then stalled`);
    assert.deepEqual(late[1].focus.map((e) => [e.peer, e.focused]), [[hiddenIndex, false]], 'the partner heard the hidden player lose focus');
    await sleep(Math.max(0, HIDDEN_MS - (Date.now() - tHide)));

    // active again, then visible (focus emulation on this page's own session shows it again)
    const tActive = Date.now();
    await raw.send('Page.setWebLifecycleState', { state: 'active' });
    await raw.send('Emulation.setFocusEmulationEnabled', { enabled: true });
    const hiddenMs = tActive - tHide;
    let gapAtActive = null, catchUpMs = null, samples = 0;
    while (Date.now() - tActive < 10000) {
      const [fh, fp] = await Promise.all([frameOf(raw), frameOf(ph.page)]);
      if (gapAtActive === null) gapAtActive = fp - fh;
      samples++;
      if (Math.abs(fp - fh) <= 2) { catchUpMs = Date.now() - tActive; break; }
      await sleep(20);
    }
    assert.ok(gapAtActive > 2, `the hidden page was behind when it came back (${gapAtActive} frames)`);
    assert.notEqual(catchUpMs, null, 'the returning page caught up with its partner');
    assert.ok(catchUpMs <= 2000, `caught up within 2 s of becoming active (${catchUpMs} ms)`);
    assert.equal(await raw.evaluate(() => document.visibilityState), 'visible');

    await Promise.all([
      ph.page.waitForFunction(() => window.game.done || window.game.error, null, { timeout: 60000, polling: 200 }),
      raw.waitFor(() => window.game.done || window.game.error, undefined, { timeout: 60000, polling: 200 }),
    ]);
    const [p, h] = await Promise.all([readResearch(ph.page), readResearch(raw)]);
    for (const r of [p, h]) {
      assert.equal(r.error, null, `player ${r.playerIndex}: ${r.error}`);
      assert.equal(r.desyncs, 0, `player ${r.playerIndex} desyncs`);
      assertRowPerFrame(r.data);
      assert.equal(r.data.episodes.length, 1);
      assert.equal(r.data.episodes[0].end.episodeFrame, FRAMES - 1);
      assertCsvMatchesJson(r);
    }
    assert.equal(p.finalStateHash, h.finalStateHash, 'final state hashes agree');
    const { shared, cells } = assertSameShared(p, h);
    assertSameSharedCsv(p, h, shared);
    const rewardSums = assertRewards(p);
    assert.deepEqual(assertRewards(h), rewardSums);

    // the hidden span: one run of frames whose input player `hiddenIndex` did not choose live — from
    // the hide (the first input chosen after setFocus(false)) through the catch-up after it came back
    const rows = p.data.episodes[0].rows;
    const unf = rows.filter((r) => !r[`isFocused.${hiddenIndex}`]).map((r) => r.frame);
    assert.ok(unf.length > 0, 'the hidden span is in the data');
    const [u0, u1] = [unf[0], unf[unf.length - 1]];
    assert.equal(unf.length, u1 - u0 + 1, `one contiguous hidden span (frames ${u0}..${u1}, ${unf.length} rows)`);
    assert.ok(u0 >= beforeHide && u0 <= atHide.frame + 8, `the span starts at the hide: frame ${u0}, page at frame ${beforeHide}..${atHide.frame} when frozen`);
    assert.ok(u1 >= late[1].frame, `the span covers the frames missed while hidden: ends at ${u1}, partner stalled at ${late[1].frame}`);
    assert.ok(rows.every((r) => r[`isFocused.${partnerIndex}`]), 'the partner was focused throughout');
    // ... and in each page's own view of the frames (the local timestamp column): the partner's stall
    // at the prediction limit and the frozen page's freeze are gaps between two consecutive rows
    const gapBefore = (r, frame) => {
      const rs = r.data.episodes[0].rows;
      const i = rs.findIndex((row) => row.frame === frame);
      return rs[i].timestamp - rs[i - 1].timestamp;
    };
    const gp = gapBefore(p, late[1].frame), gh = gapBefore(h, atHide.frame);
    assert.ok(gp >= HIDDEN_MS - 2500, `the partner stalled before frame ${late[1].frame} for ${gp} ms of the ${hiddenMs} ms hidden span`);
    assert.ok(late[1].frame > u0 && late[1].frame <= u1, `the partner's stall (before frame ${late[1].frame}) lies in the hidden span ${u0}..${u1}`);
    assert.ok(gh >= HIDDEN_MS - 500, `the frozen page's own gap before frame ${atHide.frame}: ${gh} ms`);
    assert.ok(p.stalls > 0, 'the partner counted stalls');
    // focus as each page saw it: the hidden page's own focus events (from visibilitychange): hidden,
    // then back; the partner's (FOCUS_STATE, on both paths, re-sent with the pings): hidden first,
    // back last (in between, a copy of the hide that the freeze held back can arrive after the return
    // over the unordered channel, and is applied: the next re-announcement puts it right)
    assert.deepEqual(h.focusEvents.map((e) => [e.peer, e.focused]), [[hiddenIndex, false], [hiddenIndex, true]], `the hidden page's focus events ${JSON.stringify(h.focusEvents)}`);
    const pf = p.focusEvents.map((e) => [e.peer, e.focused]);
    assert.deepEqual([pf[0], pf[pf.length - 1]], [[hiddenIndex, false], [hiddenIndex, true]], `the partner's focus events ${JSON.stringify(p.focusEvents)}`);
    assert.equal(h.focusEvents[0].frame, u0, 'the hide event names the first unfocused frame');
    // a fallback after the freeze (see `recover` above) was followed by a recovery to P2P
    for (const r of [p, h]) {
      const fb = r.events.filter((e) => e.startsWith('fallback')).length, rc = r.events.filter((e) => e.startsWith('recovery')).length;
      assert.equal(rc, fb, `player ${r.playerIndex}: every fallback recovered (${r.events.join(' ')})`);
    }

    const { vis, socketIds } = await raw.evaluate(() => ({ vis: window.__vis, socketIds: window.__socketIds }));
    console.log(`# hidden page (${elapsed()}): player ${hiddenIndex} hidden+frozen ${hiddenMs} ms at frame ${atHide.frame} (partner stalled at ${late[1].frame}, ${partnerLead} ahead); ` +
      `back within 2 frames ${catchUpMs} ms after 'active' (${gapAtActive} frames behind, ${samples} samples); unfocused frames ${u0}..${u1} (${unf.length} rows); ` +
      `partner's gap ${gp} ms before frame ${late[1].frame}, frozen page's ${gh} ms; ${rows.length} rows x ${shared.length} shared columns = ${cells} cells identical; ` +
      `page events ${vis.join(' ')}; Socket.IO connections ${socketIds.length}; partner events ${p.events.join(' ')}; hidden page events ${h.events.join(' ')}; ` +
      `partner's focus events ${pf.map(([, f]) => f).join(',')}`);
  } catch (e) {
    dumpLogs(logs());
    console.error(serverLog.slice(-40).join('\n'));
    throw e;
  } finally {
    await closePages([ph]);
    await raw?.close();
  }
});
