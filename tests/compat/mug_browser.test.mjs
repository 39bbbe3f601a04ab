// The demo page (web/demo/) over mug's server protocol, in headless Chromium: two browser
// contexts, the Python test server (web/mug_server.py, Flask-SocketIO + eventlet), real
// RTCDataChannels and the real p2psync.wasm. The page picks web/transport_mug.js because the
// server answers /server-info.json with {protocol: 'mug'}.
// Run: scripts/netns-run node --test tests/compat/mug_browser.test.mjs   (or: scripts/test compat)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { launchBrowser, openPages, closePages, dumpLogs, assertPrivateNetns } from '../browser/harness.mjs';
import { startMugServer } from './helpers.mjs';

let browser;
const servers = [];
before(async () => {
  assertPrivateNetns();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  for (const s of servers) await s.close();
});

/** Everything a test compares, read from one page. */
function readPage(h) {
  return h.page.evaluate(() => {
    const g = window.game;
    const m = g.exportSessionMetrics();
    return {
      protocol: g.protocol, mug: g.mug, playerIndex: g.playerIndex, error: g.error, done: g.done,
      data: g.researchData(), events: g.events, p2pMetrics: g.p2pMetrics, transport: m.transport,
      episodes: g.session.episodeResults.map((e) => ({ episode: e.episode, frame: e.frame, reason: e.reason })),
      rtcConfig: g.session.rtcConfig, joinIds: g.session.joinInfo.playerIds, desyncs: m.sync.desyncs,
      firstDelivery: m.inputs.firstDelivery,
    };
  });
}

async function runPair(srv, query, timeout = 60000) {
  const qs = new URLSearchParams(query).toString();
  const pages = await openPages(browser, `${srv.url}?${qs}`, 2);
  try {
    await Promise.all(pages.map((h) => h.page.waitForFunction(() => window.game && (window.game.done || window.game.error), null, { timeout, polling: 200 })));
    const games = await Promise.all(pages.map(readPage));
    for (const g of games) assert.equal(g.error, null, `page error: ${g.error}`);
    return { pages, games };
  } catch (e) {
    dumpLogs(pages);
    console.error(srv.log.slice(-30).join('\n'));
    await closePages(pages);
    throw e;
  }
}

function assertSameData(games, episodes) {
  const d0 = games[0].data;
  const shared = d0.columns.filter((c) => !d0.localColumns.includes(c));
  for (const g of games) {
    assert.equal(g.data.episodes.length, episodes, `player ${g.playerIndex}: ${episodes} episodes of data`);
    assert.deepEqual(g.episodes.map((e) => e.reason), new Array(episodes).fill('synced'), `player ${g.playerIndex}: every end agreed ${JSON.stringify(g.episodes)}`);
    assert.equal(g.desyncs, 0);
  }
  for (let e = 0; e < episodes; e++) {
    const text = (g) => g.data.episodes[e].rows.map((r) => shared.map((c) => String(r[c])).join(',')).join('\n');
    assert.ok(games[0].data.episodes[e].rows.length > 0);
    assert.equal(text(games[1]), text(games[0]), `episode ${e}: shared research columns identical`);
  }
  return shared;
}

test('mug protocol, numeric ids: 2 players, 2 episodes, P2P cut in episode 2: research data identical', async () => {
  const srv = await startMugServer({ ids: '0,1' });
  servers.push(srv);
  const t0 = Date.now();
  const { pages, games } = await runPair(srv, { auto: '7', frames: '150', episodes: '2', fps: '60', cut: '50', cutEp: '1' });
  try {
    const shared = assertSameData(games, 2);
    assert.ok(shared.includes('action.0') && shared.includes('isFocused.1'), `columns ${shared}`);
    for (const g of games) {
      assert.equal(g.protocol, 'mug');
      assert.deepEqual(g.joinIds, [0, 1], 'mug\'s ids with their type');
      assert.equal(g.mug.myPlayerId, g.playerIndex);
      const fb = g.events.filter((e) => e.type === 'fallback');
      assert.ok(fb.length >= 1, `player ${g.playerIndex} fell back: ${JSON.stringify(g.events)}`);
      assert.ok(g.p2pMetrics.inputsReceivedViaP2P > 100, 'P2P carried episode 1');
      assert.ok(g.p2pMetrics.inputsReceivedViaSocketIO > 50, `the relay carried the rest: ${JSON.stringify(g.p2pMetrics)}`);
      assert.equal(g.p2pMetrics.connectionType, 'direct');
    }
    const p0 = games.find((g) => g.playerIndex === 0);
    assert.ok(p0.events.some((e) => e.type === 'fallback' && e.reason === 'channel-closed'));
    const st = await srv.stats();
    assert.ok(st.signalTypes.offer >= 1 && st.signalTypes['ice-candidate'] >= 1, JSON.stringify(st));
    assert.ok(st.signalTypes.p2psync > 0, 'control packets tunnelled after the cut');
    assert.ok(st.relayed.pyodide_player_action > 50 && st.relayed.p2p_state_sync > 0);
    assert.deepEqual(st.dropped, {}, 'nothing the server would drop');
    console.log(`# mug browser, P2P cut in episode 2 (${((Date.now() - t0) / 1000).toFixed(1)} s): relayed ${JSON.stringify(st.relayed)}, ` +
      `signal types ${JSON.stringify(st.signalTypes)}, P2P/relay inputs received ${games.map((g) => `${g.p2pMetrics.inputsReceivedViaP2P}/${g.p2pMetrics.inputsReceivedViaSocketIO}`).join(' ')}`);
  } finally {
    await closePages(pages);
  }
});

test('mug protocol, string ids, turn_config force_relay with an unreachable TURN server: P2P never opens, the relay plays 2 episodes, data identical', async () => {
  const srv = await startMugServer({ ids: 'agent_right,agent_left', turn: { username: 'u', credential: 'c', forceRelay: true } });
  servers.push(srv);
  const t0 = Date.now();
  const { pages, games } = await runPair(srv, {
    auto: '9', frames: '150', episodes: '2', fps: '60', connectTimeout: '2500', turnUrls: 'turn:127.0.0.1:9',
  });
  try {
    const shared = assertSameData(games, 2);
    assert.ok(shared.includes('action.agent_left') && shared.includes('action.agent_right'), `columns ${shared}`);
    for (const g of games) {
      assert.deepEqual(g.joinIds, ['agent_left', 'agent_right']);
      assert.equal(g.rtcConfig.iceTransportPolicy, 'relay', 'turn_config.force_relay');
      assert.deepEqual(g.rtcConfig.iceServers, [{ urls: 'turn:127.0.0.1:9', username: 'u', credential: 'c' }]);
      assert.equal(g.p2pMetrics.inputsReceivedViaP2P, 0, 'P2P never carried an input');
      assert.ok(g.p2pMetrics.inputsReceivedViaSocketIO > 250, JSON.stringify(g.p2pMetrics));
      assert.ok(g.events.some((e) => e.type === 'fallback' && e.reason === 'connection-failed'));
      assert.ok(g.transport.channels.every((c) => !c.everOpened));
    }
    const st = await srv.stats();
    assert.ok(st.signalTypes.p2psync > 0 && st.relayed.p2p_state_sync > 0, JSON.stringify(st));
    assert.deepEqual(st.dropped, {});
    console.log(`# mug browser, relay only (${((Date.now() - t0) / 1000).toFixed(1)} s; load ${os.loadavg()[0].toFixed(1)}): relayed ${JSON.stringify(st.relayed)}, signal types ${JSON.stringify(st.signalTypes)}`);
  } finally {
    await closePages(pages);
  }
});
