// P2PSyncSession over mug's server protocol (web/transport_mug.js) against the Python test server
// (web/mug_server.py: Flask-SocketIO + eventlet), with a real socket.io-client and in-process fake
// RTCDataChannels in real time (node has no WebRTC; tests/compat/*browser* use Chromium's).
//   node --test tests/compat/mug_node.test.mjs      (or: scripts/test compat)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { createGridGame } from '../../web/envs/grid_game.js';
import {
  startMugServer, rtcWorld, openPages, playPages, assertSameResearchData, describePages, closeAll, sleep,
} from './helpers.mjs';

const servers = [];
after(async () => { for (const s of servers) await s.close(); });
async function server(o) {
  const s = await startMugServer(o);
  servers.push(s);
  return s;
}

const OK_RESULTS = new Set(['OK', 'DUPLICATE', 'UNSOLICITED_PONG', 'OUT_OF_WINDOW', 'STALE_EPISODE', 'UNVERIFIABLE']);
function assertCleanReceives(pages) {
  for (const p of pages) {
    const bad = Object.entries(p.session.rx).filter(([k]) => !OK_RESULTS.has(k.split(':').pop()));
    assert.deepEqual(bad, [], `page ${p.i}: receive results ${JSON.stringify(p.session.rx)}`);
  }
}

test('the test server behaves like mug\'s: unknown events are dropped, webrtc_signal carries any type, actions keep only four fields', async () => {
  const srv = await server({ ids: '0,1' });
  const socks = [0, 1].map((i) => io(srv.url, { transports: ['websocket'], reconnection: false }));
  const got = [[], []];
  socks.forEach((s, i) => s.onAny((ev, d) => got[i].push([ev, d])));
  try {
    for (const [i, s] of socks.entries()) {
      if (!s.connected) await new Promise((r) => s.once('connect', r));
      s.emit('join_game', { session_id: `s${i}` });
      await sleep(100);
    }
    await sleep(400);
    const assigned = got.map((g) => g.find(([e]) => e === 'pyodide_player_assigned')?.[1]);
    assert.deepEqual(assigned.map((a) => a.player_id), [0, 1], 'the socket that waited longest gets the first id (a number)');
    const gid = assigned[0].game_id;
    socks[0].emit('p2psync_packet', { to: 1, bytes: new Uint8Array([1, 2]) });
    socks[0].emit('signal', { to: 1, data: { type: 'offer', sdp: 'x' } });
    socks[0].emit('pyodide_player_action', { player_id: 0, action: 3, frame_number: 9, timestamp: 1 }); // no game_id
    socks[0].emit('pyodide_player_action', { game_id: gid, player_id: 0, action: 259, frame_number: 9, timestamp: 1, focused: false, from: 0 });
    socks[0].emit('webrtc_signal', { game_id: gid, target_player_id: '1', type: 'p2psync', payload: new Uint8Array([7, 8, 9]) });
    await sleep(400);
    const st = await srv.stats();
    assert.deepEqual(st.dropped, { p2psync_packet: 1, signal: 1 });
    assert.equal(st.refused['pyodide_player_action:unknown game'], 1);
    const actions = got[1].filter(([e]) => e === 'pyodide_other_player_action').map(([, d]) => d);
    assert.equal(actions.length, 1);
    assert.deepEqual(Object.keys(actions[0]).sort(), ['action', 'frame_number', 'player_id', 'timestamp']);
    assert.equal(actions[0].action, 259);
    assert.ok(actions[0].timestamp > 1e9 && actions[0].timestamp < 1e11, 'server time in seconds');
    const sig = got[1].filter(([e]) => e === 'webrtc_signal').map(([, d]) => d);
    assert.equal(sig.length, 1, 'target "1" found as the int key 1');
    assert.equal(sig[0].type, 'p2psync');
    assert.equal(sig[0].from_player_id, 0);
    assert.deepEqual([...sig[0].payload], [7, 8, 9], 'binary payload untouched');
    assert.equal(got[0].filter(([e]) => e === 'pyodide_other_player_action').length, 0, 'no echo to the sender');
  } finally {
    for (const s of socks) s.close();
  }
});

test('numeric ids, 2 players, 2 episodes, P2P cut in episode 2: the relay and the packet tunnel carry it, research data identical', async () => {
  const srv = await server({ ids: '0,1' });
  const world = rtcWorld({ latencyMs: 5 });
  let pages = null;
  let cutAt = null;
  let statsAtCut = null;
  try {
    pages = await openPages({
      url: srv.url, world, makeEnv: () => createGridGame({ numPlayers: 2, seed: 3 }),
      sessionOptions: () => ({ episodes: 2, episodeFrames: 150, config: { inputDelay: 2 } }),
    });
    // mug's ids, their type and mug's index order
    for (const p of pages) {
      assert.deepEqual(p.session.joinInfo.playerIds, [0, 1]);
      assert.equal(p.session.playerIndex, p.transport.assigned.player_id, 'ids 0/1 sort to indices 0/1');
      assert.equal(p.session.engine.exportSessionMetrics().engine.config.gameId, p.transport.assigned.game_id);
    }
    const p0 = pages.find((p) => p.session.playerIndex === 0);
    const r = await playPages(pages, {
      during: () => {
        if (cutAt === null && p0.session.episode >= 1 && p0.session.frame - p0.session.episodeStart >= 50) {
          cutAt = p0.session.frame;
          srv.stats().then((s) => { statsAtCut = s; });
          p0.session.closeP2P();
        }
      },
    });
    assert.ok(r.done, `both pages finished: ${describePages(pages)}`);
    assert.ok(cutAt !== null, 'P2P was cut');
    const { data } = assertSameResearchData(pages, 2);
    for (const p of pages) {
      assert.deepEqual(p.ends.map((e) => e.reason), ['synced', 'synced'], `both ends agreed (END over the tunnel in episode 2): ${describePages(pages)}`);
      const fb = p.session.events.filter((e) => e.type === 'fallback');
      assert.ok(fb.length >= 1 && fb.every((e) => e.frame >= cutAt - 5), `page ${p.i}: fell back at the cut: ${JSON.stringify(fb)}`);
      assert.ok(p.p2pMetrics.inputsReceivedViaSocketIO > 50, `relay carried episode 2: ${JSON.stringify(p.p2pMetrics)}`);
    }
    assertCleanReceives(pages);
    assert.deepEqual(data[0].columns.filter((c) => c.startsWith('action.')), ['action.0', 'action.1']);
    const st = await srv.stats();
    // while P2P was up, nothing but signaling went through the server (as with mug HEAD)
    assert.ok(statsAtCut, 'stats read at the cut');
    assert.equal(statsAtCut.relayed.pyodide_player_action ?? 0, 0, `no relayed input before the cut: ${JSON.stringify(statsAtCut)}`);
    assert.equal(statsAtCut.relayed.p2p_state_sync ?? 0, 0, 'no relayed hash before the cut');
    assert.ok(st.relayed.pyodide_player_action > 100, `inputs relayed after the cut: ${JSON.stringify(st)}`);
    assert.ok(st.relayed.p2p_state_sync > 0, 'hashes over the relay while P2P is unusable');
    assert.ok(st.signalTypes.p2psync > 0, 'control packets tunnelled in webrtc_signal');
    assert.deepEqual(st.dropped, {}, 'the transport sent no event mug\'s server drops');
    console.log(`# P2P cut in episode 2 (${r.ms} ms): cut at frame ${cutAt}; server relayed ${JSON.stringify(st.relayed)}, signal types ${JSON.stringify(st.signalTypes)}`);
  } finally {
    await closeAll(pages);
  }
});

test('string ids, P2P never opens (relay only), a page hidden in episode 2: ends synced, focus bit kept, research data identical', async () => {
  const srv = await server({ ids: 'agent_right,agent_left' });
  const world = rtcWorld({ never: true });
  let pages = null;
  try {
    pages = await openPages({
      url: srv.url, world, makeEnv: () => createGridGame({ numPlayers: 2, seed: 5 }), connectTimeoutMs: 1500,
      sessionOptions: () => ({ episodes: 2, episodeFrames: 150, config: { inputDelay: 2 } }),
    });
    // slot order: agent_right (waited longest), agent_left; engine index: mug's sorted order
    const byId = Object.fromEntries(pages.map((p) => [p.transport.assigned.player_id, p]));
    assert.deepEqual(Object.keys(byId).sort(), ['agent_left', 'agent_right']);
    assert.equal(pages[0].transport.assigned.player_id, 'agent_right', 'FIFO: the first page got the first slot');
    for (const p of pages) assert.deepEqual(p.session.joinInfo.playerIds, ['agent_left', 'agent_right']);
    assert.equal(byId.agent_left.session.playerIndex, 0);
    assert.equal(byId.agent_right.session.playerIndex, 1);
    const hidden = byId.agent_right;
    let hiddenAt = null;
    let hiddenFrame = null;
    const r = await playPages(pages, {
      during: () => {
        const s = hidden.session;
        if (hiddenAt === null && s.episode >= 1 && s.frame - s.episodeStart >= 40) {
          hiddenAt = Date.now();
          hiddenFrame = s.frame;
          hidden.unfocused = true;
          s.setFocus(false); // (its loop keeps stepping, as a Worker timer does in a hidden tab)
        } else if (hidden.unfocused && Date.now() - hiddenAt >= 500) {
          hidden.unfocused = false;
          s.setFocus(true);
        }
      },
    });
    assert.ok(r.done, `both pages finished: ${describePages(pages)}`);
    const { data } = assertSameResearchData(pages, 2);
    assert.deepEqual(data[0].columns.filter((c) => c.startsWith('isFocused.')), ['isFocused.agent_left', 'isFocused.agent_right']);
    const unfocused = data.map((d) => d.episodes[1].rows.filter((row) => row['isFocused.agent_right'] === false).length);
    assert.ok(unfocused[0] > 0, `the hidden span is in the data of both pages (${unfocused}; hidden at ${hiddenFrame}; ` +
      `focus events ${JSON.stringify(pages.map((p) => p.session.events.filter((e) => e.type === 'focus')))})`);
    for (const p of pages) {
      assert.deepEqual(p.ends.map((e) => e.reason), ['synced', 'synced'], `ends agreed over the tunnel: ${describePages(pages)}`);
      assert.equal(p.p2pMetrics.inputsReceivedViaP2P, 0, 'P2P never carried anything');
      assert.ok(p.session.events.some((e) => e.type === 'fallback' && e.reason === 'connection-failed'));
      assert.ok(p.session.events.some((e) => e.type === 'focus' && e.focused === false) || p === hidden, `page ${p.i} saw the partner's focus change`);
    }
    assertCleanReceives(pages);
    const st = await srv.stats();
    assert.ok(st.relayed.pyodide_player_action > 300, JSON.stringify(st));
    assert.ok(st.relayed.p2p_state_sync > 0);
    assert.ok(st.signalTypes.p2psync > 0 && st.signalTypes.offer > 0);
    assert.deepEqual(st.dropped, {});
    console.log(`# relay only (${r.ms} ms): server relayed ${JSON.stringify(st.relayed)}, signal types ${JSON.stringify(st.signalTypes)}; unfocused rows ${unfocused}`);
  } finally {
    await closeAll(pages);
  }
});
