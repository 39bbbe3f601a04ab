// Rejoin after a reload (issue 16), at the page-session level: P2PSyncSession over the fake
// Socket.IO server and fake RTCDataChannels of tests/node/fakes.mjs, in virtual time, with the real
// .wasm engine and the JS grid game. Page 1 of 2 "reloads" mid-episode: its session is gone
// without finish(), a new P2PSyncSession.connect() runs in the same tab (the same tokenStore).
//   * transport level: the stored token reclaims the seat (`rejoined`), the other page hears
//     peer_rejoined, drops its dead connection and answers the rejoined page's offer, a new
//     DataChannel opens both ways; signals of the old connection (an ICE restart still in flight)
//     do not disturb the new one; a stale token joins afresh; a duplicated tab takes the seat over;
//     the token is forgotten when the session ends normally;
//   * engine level (needs the engine's rejoin: SessionPeer option `rejoin`, config `rejoin`): the
//     rejoined page gets the state from the live one and both finish the episode with identical
//     shared research data from the rejoin frame on.
//   node --test tests/node/rejoin_session.test.mjs        (needs build/wasm: scripts/build wasm)
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadP2PSync } from '../../web/p2psync.js';
import { P2PSyncSession } from '../../web/session.js';
import { createGridGame } from '../../web/envs/grid_game.js';
import { createRng } from '../../web/netsim.js';
import { startFrameLoop } from '../../web/frame_loop.js';
import { FakeWorld } from './fakes.mjs';

let lib;
before(async () => {
  lib = await loadP2PSync();
});

const FRAME_MS = 1000 / 30;
const EPISODE_FRAMES = 600;   // the episode ends by truncation: both pages must reach it
const RELOAD_AT = 200;        // page 1 reloads at this frame

/** One page load in `world`: its socket, RTC class, session and frame loop. */
async function openPage(world, i, { room, tokenStore, logs, options = {} }) {
  const fp = world.page();
  const page = {
    index: i, fp, tokenStore, logs, session: null, error: null, ends: [], events: [], rng: createRng(`${room}/${i}/${logs.length}`), action: 0, loop: null,
  };
  const env = createGridGame({ numPlayers: 2, seed: 7 });
  page.env = env;
  const session = await P2PSyncSession.connect({
    lib, socket: fp.socket, env, room, players: 2, clock: world.clock, RTCPeerConnection: fp.RTCPeerConnection,
    log: (m) => logs.push(`${world.clock.now().toFixed(0)} p${i}: ${m}`), barrierTimeoutMs: 3000, settleRttMs: 2000,
    config: { inputDelay: 2, maxEpisodeFrames: EPISODE_FRAMES }, episodes: 1, keepData: 'session', trackVisibility: false,
    tokenStore, ...options,
  });
  page.session = session;
  session.addEventListener('episodeEnd', (e) => page.ends.push(e.detail));
  for (const t of ['peerRejoined', 'seatReclaimed', 'stateLoaded', 'rejoin', 'fallback', 'recovery', 'desync', 'error']) {
    session.addEventListener(t, (e) => page.events.push({ type: t, at: world.clock.now(), ...e.detail }));
  }
  return page;
}

/** Starts a page's frame loop (web/frame_loop.js), as the page does once connect() resolved. */
function play(world, page) {
  page.loop = startFrameLoop({
    session: page.session, fps: 30, clock: world.clock, startDelayMs: page.index * FRAME_MS / 2,
    action: () => { if (page.rng() < 0.3) page.action = page.rng.int(5); return page.action; },
    onError: (e) => { page.error = e; },
  });
}

/** Two pages of one room, connected concurrently, each with its own tokenStore (two tabs). */
async function openRoom(world, room, logs) {
  const stores = [new Map(), new Map()];
  const pages = [null, null];
  const errors = [];
  stores.forEach((tokenStore, i) => {
    openPage(world, i, { room, tokenStore, logs }).then((p) => { pages[i] = p; }, (e) => errors.push(e));
  });
  await world.clock.run(() => pages.every(Boolean) || errors.length > 0, 60000);
  if (errors.length) throw errors[0];
  assert.ok(pages.every(Boolean), 'both pages connected');
  // index by player index
  pages.sort((a, b) => a.session.playerIndex - b.session.playerIndex);
  pages.forEach((p, k) => { p.index = k; });
  return { pages, stores: pages.map((p) => p.tokenStore) };
}

function describe(pages, logs) {
  return `${JSON.stringify(pages.map((p) => p && p.session && ({
    player: p.session.playerIndex, state: p.session.state, status: p.session.status, frame: p.session.frame,
    confirmed: p.session.confirmedFrame, ends: p.ends.map((e) => `${e.episode}@${e.episodeFrame}`),
    channels: [...p.session.peers.values()].map((st) => ({ peer: st.peer, open: st.open, dc: st.dc && st.dc.readyState, pc: st.pc.id })),
    events: p.events.map((e) => `${e.type}${e.peer !== undefined ? `:${e.peer}` : ''}${e.frame !== undefined ? `@${e.frame}` : ''}`),
  })))}\n${logs.slice(-60).join('\n')}`;
}

/** The only stored token of a store (the store holds one room). */
function storedToken(store) {
  const v = [...store.values()];
  assert.ok(v.length <= 1, `one token per room: ${JSON.stringify([...store])}`);
  return v[0] ?? null;
}

/** The channel state of `page` towards `peer`: open, with a DataChannel that is open. */
function channelOpen(page, peer) {
  const st = page.session.peers.get(peer);
  return !!(st && st.open && st.dc && st.dc.readyState === 'open');
}

/**
 * Engine part: both pages finish the episode; the end, the final state and the shared research
 * columns of every frame from the rejoin frame on are identical.
 */
async function assertFinishTogether(world, pages, logs) {
  const [p0, p1] = pages;
  const done = await world.clock.run(() => pages.every((p) => p.session.finished) || pages.some((p) => p.error), 240000);
  for (const p of pages) if (p.error) throw p.error;
  assert.equal(done, true, `both pages finished the episode: ${describe(pages, logs)}`);
  const loaded = p1.events.find((e) => e.type === 'stateLoaded');
  assert.ok(loaded, `the rejoined page loaded a state: ${describe(pages, logs)}`);
  assert.equal(loaded.peer, 0, 'from the live page');
  assert.ok(p0.events.some((e) => e.type === 'rejoin' && e.peer === 1), `the live page saw the rejoin: ${describe(pages, logs)}`);
  const from = loaded.frame;
  assert.ok(from >= RELOAD_AT - 10, `the state is from around the reload or later (frame ${from})`);
  assert.equal(p0.ends.length, 1);
  assert.equal(p1.ends.length, 1);
  assert.equal(p1.ends[0].frame, p0.ends[0].frame, 'the episode ended on one frame');
  assert.equal(p1.ends[0].episode, p0.ends[0].episode, 'the same episode');
  assert.match(p0.ends[0].finalStateHash, /^[0-9a-f]{16}$/);
  assert.equal(p1.ends[0].finalStateHash, p0.ends[0].finalStateHash, 'equal final states');
  for (const p of pages) assert.equal(p.session.counters.desyncs, 0, `no desync: ${describe(pages, logs)}`);
  const data = pages.map((p) => p.session.exportEpisodeData({ episode: p.ends[0].episode, format: 'json' }));
  const shared = data[0].columns.filter((c) => !data[0].localColumns.includes(c));
  const r1 = data[1].rows.filter((r) => r.frame >= from);
  assert.ok(r1.length > 0, 'the rejoined page has rows from the rejoin frame on');
  const start = r1[0].frame;
  assert.ok(start <= from + 1, `its rows start at the rejoin frame ${from} (first: ${start})`);
  assert.deepEqual(r1.map((r) => r.frame), Array.from({ length: r1.length }, (_, k) => start + k), 'one row per frame from the rejoin frame, none twice');
  assert.equal(r1[r1.length - 1].frame, p1.ends[0].frame, 'up to the last frame of the episode');
  const r0 = data[0].rows.filter((r) => r.frame >= start);
  const text = (rows) => rows.map((r) => shared.map((c) => String(r[c])).join(',')).join('\n');
  assert.equal(text(r1), text(r0), 'shared research columns identical from the rejoin frame on');
  console.log(`# state of frame ${from} loaded from player ${loaded.peer}; ${r1.length} identical rows to the end of the episode (frame ${p1.ends[0].frame})`);
  // the tab's token is forgotten: a later visit joins afresh
  for (const p of pages) assert.equal(storedToken(p.tokenStore), null, `page ${p.index}: token forgotten after the end`);
}

test('a page reloads mid-episode: it rejoins its seat with the stored token, the other page renegotiates, a new DataChannel opens both ways, the episode continues', async (t) => {
  const world = new FakeWorld({ seed: 16, latencyMs: 40, jitterMs: 10, loss: 0.05 });
  const logs = [];
  const room = 'rejoin-a';
  const { pages, stores } = await openRoom(world, room, logs);
  const [p0, p1] = pages;
  const tok0 = storedToken(stores[0]), tok1 = storedToken(stores[1]);
  assert.ok(tok0 && tok1 && tok0 !== tok1, 'each tab stored its own token');
  assert.ok([...stores[1].keys()][0].includes(room), 'the key names the room');
  pages.forEach((p) => play(world, p));
  assert.equal(await world.clock.run(() => p1.session.frame >= RELOAD_AT || pages.some((p) => p.error), 60000), true, describe(pages, logs));
  const oldPc0 = p0.session.peers.get(1).pc;
  const oldNonce1 = p1.session.nonce;

  // the reload: the page is gone (its channels close, its socket drops); nothing calls finish()
  p1.loop.stop();
  p1.session.destroy();
  p1.fp.socket.disconnect();
  assert.equal(storedToken(stores[1]), tok1, 'the token survives the page');
  await world.clock.advance(1500);
  assert.ok(logs.some((l) => /p0: \[P2P\] player 1 left the room/.test(l)), 'the other page heard peer_left');

  // the new page load, same tab
  let p1b = null, err = null;
  openPage(world, 1, { room, tokenStore: stores[1], logs }).then((p) => { p1b = p; }, (e) => { err = e; });
  await world.clock.run(() => p1b || err, 30000);
  if (err) throw err;
  assert.ok(p1b, 'connect() resolved for the reloaded page');
  const s1 = p1b.session;
  assert.equal(s1.rejoined, true, 'the server answered rejoined');
  assert.equal(s1.playerIndex, 1, 'its old seat');
  assert.notEqual(s1.nonce, oldNonce1, 'a new page identity');
  assert.equal(world.server.rejoins, 1);
  const tok1b = storedToken(stores[1]);
  assert.ok(tok1b && tok1b !== tok1, 'the new token from `joined` is stored');
  assert.equal(s1.barrier.skipped, 'rejoin', 'no start barrier for a rejoin');

  // WebRTC renegotiated: the rejoined page offered, the other page answered on a new connection
  const opened = await world.clock.run(() => channelOpen(p0, 1) && channelOpen(p1b, 0), 20000);
  assert.equal(opened, true, `a new DataChannel is open both ways: ${describe([p0, p1b], logs)}`);
  assert.ok(p0.events.some((e) => e.type === 'peerRejoined' && e.peer === 1), 'peerRejoined on the other page');
  await world.clock.advance(500); // the answer reaches the offerer (the fake opens channels a bit before)
  const st0 = p0.session.peers.get(1), st1 = s1.peers.get(0);
  assert.notEqual(st0.pc, oldPc0, 'the other page uses a new RTCPeerConnection');
  assert.equal(oldPc0.connectionState, 'closed', 'and closed the old one');
  assert.equal(st0.pc.offers.length, 0, 'the other page did not offer');
  assert.equal(st1.pc.offers.length, 1, 'the rejoined page offered once');
  assert.equal(st0.pc.remoteOffers, 1, 'the other page answered that offer');
  assert.ok(st1.pc.remote === st0.pc && st0.pc.remote === st1.pc, 'the two new connections are each other\'s');
  assert.equal(st0.remoteNonce, s1.nonce);
  assert.equal(p0.session.counters.peersRenewed, 1, 'one connection renewed');
  play(world, p1b);
  pages[1] = p1b;

  await t.test('engine: the rejoined page loads the state and both finish the episode with identical data from the rejoin frame on', async () => {
    await assertFinishTogether(world, [p0, p1b], logs);
  });
  for (const p of [p0, p1b]) { p.loop.stop(); p.session.destroy(); }
});

test('the reloading tab vanishes silently; its new page\'s offer comes before peer_rejoined; an ICE restart of the old connection is still in flight: the new connection is not disturbed', async (t) => {
  const world = new FakeWorld({ seed: 161, latencyMs: 40, jitterMs: 10, loss: 0.05 });
  const logs = [];
  const room = 'rejoin-b';
  const { pages, stores } = await openRoom(world, room, logs);
  const [p0, p1] = pages;
  pages.forEach((p) => play(world, p));
  assert.equal(await world.clock.run(() => p1.session.frame >= RELOAD_AT || pages.some((p) => p.error), 60000), true, describe(pages, logs));

  // the tab dies: nothing closes on the other side; ICE notices after 2 s, the socket drop is seen
  p1.loop.stop();
  p1.fp.crash({ iceTimeoutMs: 2000, socketGone: true });
  p1.session.destroy();
  const oldSt = p0.session.peers.get(1);
  const oldPc0 = oldSt.pc;
  assert.equal(oldSt.open, true, 'the other page still counts the dead channel open');
  // the other page falls back and restarts ICE towards the dead page (the lower index restarts)
  assert.equal(await world.clock.run(() => oldSt.iceRestartsTotal >= 1, 20000), true, `ICE restart towards the dead page: ${describe(pages, logs)}`);
  assert.ok(p0.events.some((e) => e.type === 'fallback' && e.peer === 1), 'fallback to the relay');

  // peer_rejoined takes a slow path (4 s): the new page's offer arrives first. At the moment the
  // server gives the seat to the new page, the old connection's next ICE restart goes out (as its
  // timer would): an offer meant for the page that is gone, routed to the new one.
  world.server.peerRejoinedDelayMs = 4000;
  let staleSent = false;
  const rejoin = world.server.rejoin.bind(world.server);
  world.server.rejoin = (sock, d, reply) => {
    rejoin(sock, d, reply);
    if (!oldSt.retired) { staleSent = true; p0.session._negotiate(oldSt, { iceRestart: true }); }
  };
  let p1b = null, err = null;
  openPage(world, 1, { room, tokenStore: stores[1], logs }).then((p) => { p1b = p; }, (e) => { err = e; });
  await world.clock.run(() => p1b || err, 30000);
  if (err) throw err;
  assert.ok(staleSent, 'the stale ICE-restart offer went out after the seat changed hands');
  assert.equal(p1b.session.rejoined, true);
  const opened = await world.clock.run(() => channelOpen(p0, 1) && channelOpen(p1b, 0), 20000);
  assert.equal(opened, true, `a new DataChannel is open both ways: ${describe([p0, p1b], logs)}`);
  assert.ok(logs.some((l) => /p0: \[WebRTC\] player 1 is a new page/.test(l)), 'the other page recognised the new page by its offer');
  // let the late peer_rejoined arrive: it must not tear the new connection down
  await world.clock.advance(6000);
  assert.ok(p0.events.some((e) => e.type === 'peerRejoined'), 'peer_rejoined arrived');
  const st0 = p0.session.peers.get(1), st1 = p1b.session.peers.get(0);
  assert.ok(channelOpen(p0, 1) && channelOpen(p1b, 0), `still open after peer_rejoined: ${describe([p0, p1b], logs)}`);
  assert.notEqual(st0.pc, oldPc0);
  assert.equal(p0.session.counters.peersRenewed, 1, 'renewed once, not again on peer_rejoined');
  assert.equal(st1.pc.remoteOffers, 0, 'the rejoined page took no offer (the stale one was dropped)');
  assert.ok(st1.pc.remote === st0.pc && st0.pc.remote === st1.pc, 'the two new connections are each other\'s');
  assert.equal(st0.pc.offers.length, 0, 'no ICE restart on the new connection');
  assert.equal(oldPc0.connectionState, 'closed');
  play(world, p1b);

  await t.test('engine: both finish the episode with identical data from the rejoin frame on', async () => {
    await assertFinishTogether(world, [p0, p1b], logs);
  });
  for (const p of [p0, p1b]) { p.loop.stop(); p.session.destroy(); }
});

test('a stored token the server does not accept (expired, spent) joins afresh; the token is forgotten when the session ends', async () => {
  const world = new FakeWorld({ seed: 162, latencyMs: 30 });
  const logs = [];
  const room = 'rejoin-c';
  // both tabs "remember" a token from an old visit
  const stale = () => ({ m: new Map(), get(k) { return this.m.has(k) ? this.m.get(k) : 'tok-from-last-week'; }, set(k, v) { this.m.set(k, v); }, delete(k) { this.m.delete(k); this.gone = true; } });
  const stores = [stale(), stale()];
  const pages = [null, null];
  const errors = [];
  stores.forEach((tokenStore, i) => openPage(world, i, { room, tokenStore, logs, options: { config: { inputDelay: 2, maxEpisodeFrames: 90 } } })
    .then((p) => { pages[i] = p; }, (e) => errors.push(e)));
  await world.clock.run(() => pages.every(Boolean) || errors.length > 0, 60000);
  if (errors.length) throw errors[0];
  for (const p of pages) {
    assert.equal(p.session.rejoined, false, 'a fresh join');
    assert.ok(p.tokenStore.gone, 'the stale token was deleted');
    assert.match([...p.tokenStore.m.values()][0] ?? '', /^tok/, 'the new token is stored');
  }
  assert.equal(logs.filter((l) => /stored reconnect token not accepted \(bad_token\)/.test(l)).length, 2);
  pages.forEach((p) => play(world, p));
  const done = await world.clock.run(() => pages.every((p) => p.session.finished) || pages.some((p) => p.error), 60000);
  for (const p of pages) if (p.error) throw p.error;
  assert.equal(done, true, describe(pages, logs));
  for (const p of pages) assert.equal(p.tokenStore.m.size, 0, 'forgotten once every episode has ended');
  for (const p of pages) { p.loop.stop(); p.session.destroy(); }
});

test('a duplicated tab (a copy of the tab\'s sessionStorage) takes the seat over: the first session gets seatReclaimed and closes; the other page renegotiates with the new one', async () => {
  const world = new FakeWorld({ seed: 163, latencyMs: 30 });
  const logs = [];
  const room = 'rejoin-d';
  const { pages, stores } = await openRoom(world, room, logs);
  const [p0, p1] = pages;
  pages.forEach((p) => play(world, p));
  await world.clock.run(() => p1.session.frame >= 60, 30000);
  let dup = null, err = null;
  openPage(world, 1, { room, tokenStore: new Map(stores[1]), logs }).then((p) => { dup = p; }, (e) => { err = e; });
  await world.clock.run(() => dup || err, 30000);
  if (err) throw err;
  assert.equal(dup.session.rejoined, true);
  assert.equal(dup.session.playerIndex, 1);
  await world.clock.run(() => p1.session.state === 'closed', 5000);
  assert.equal(p1.session.state, 'closed', 'the first tab\'s session closed');
  assert.ok(p1.events.some((e) => e.type === 'seatReclaimed' && e.playerIndex === 1), 'seatReclaimed event');
  assert.equal(storedToken(stores[1]), p1.session.transport.token, 'the first tab left its own store alone');
  const opened = await world.clock.run(() => channelOpen(p0, 1) && channelOpen(dup, 0), 20000);
  assert.equal(opened, true, `the other page renegotiated with the new tab: ${describe([p0, dup], logs)}`);
  assert.equal(p0.session.counters.peersRenewed, 1);
  for (const p of [p0, p1, dup]) { if (p.loop) p.loop.stop(); p.session.destroy(); }
});

test('two sessions of one tab (one tokenStore) in one room: the second does not take the first one\'s seat', async () => {
  const world = new FakeWorld({ seed: 164, latencyMs: 30 });
  const logs = [];
  const room = 'rejoin-e';
  const store = new Map();
  const a = await (async () => {
    let p = null, e = null;
    openPage(world, 0, { room, tokenStore: store, logs }).then((x) => { p = x; }, (x) => { e = x; });
    // the first one waits for the room to fill: open the second once the first has joined
    await world.clock.run(() => store.size > 0 || e, 10000);
    if (e) throw e;
    let q = null, e2 = null;
    openPage(world, 1, { room, tokenStore: store, logs }).then((x) => { q = x; }, (x) => { e2 = x; });
    await world.clock.run(() => (p && q) || e || e2, 60000);
    if (e || e2) throw e || e2;
    return [p, q];
  })();
  const [s0, s1] = a.map((p) => p.session);
  assert.equal(s0.rejoined, false);
  assert.equal(s1.rejoined, false, 'the second joined as a new player');
  assert.deepEqual([s0.playerIndex, s1.playerIndex].sort(), [0, 1]);
  assert.equal(world.server.rejoins, 0);
  for (const p of a) p.session.destroy();
});

test('the Socket.IO connection drops and comes back mid-episode (no reload): the transport joins again with its token, the others keep their DataChannel, the relay works again', async () => {
  const world = new FakeWorld({ seed: 163, latencyMs: 40, jitterMs: 10, loss: 0.05 });
  const logs = [];
  const room = 'rejoin-socket';
  const { pages, stores } = await openRoom(world, room, logs);
  const [p0, p1] = pages;
  for (const p of pages) {
    for (const t of ['peerRelayBack', 'relayRejoined']) p.session.addEventListener(t, (e) => p.events.push({ type: t, at: world.clock.now(), ...e.detail }));
  }
  pages.forEach((p) => play(world, p));
  assert.equal(await world.clock.run(() => p1.session.frame >= RELOAD_AT || pages.some((p) => p.error), 60000), true, describe(pages, logs));
  const tok1 = storedToken(stores[1]);
  const pc0 = p0.session.peers.get(1).pc;

  // a blip: the socket drops; Socket.IO's client reconnects 2 s later (a new connection, in no room)
  p1.fp.socket.drop();
  await world.clock.advance(2000);
  assert.ok(logs.some((l) => /p0: \[P2P\] player 1 left the room/.test(l)), 'the server told the other page');
  p1.fp.socket.reconnect();
  assert.equal(await world.clock.run(() => p1.session.transport.socketRejoins === 1, 5000), true, `the transport joined again: ${describe(pages, logs)}`);
  assert.ok(p1.events.some((e) => e.type === 'relayRejoined'));
  const tok1b = storedToken(stores[1]);
  assert.ok(tok1b && tok1b !== tok1, 'the new token is stored');
  assert.equal(await world.clock.run(() => p0.events.some((e) => e.type === 'peerRelayBack' && e.peer === 1), 5000), true, 'the other page: the same page is back on the server');
  assert.equal(p0.session.counters.peersRenewed, 0, 'its DataChannel was kept (the page did not reload)');
  assert.equal(p0.session.peers.get(1).pc, pc0);
  assert.ok(channelOpen(p0, 1) && channelOpen(p1, 0), 'still open');

  // now P2P goes: only the relay carries the inputs; the episode must still end on both pages
  p0.session.closeP2P();
  const done = await world.clock.run(() => pages.every((p) => p.session.finished) || pages.some((p) => p.error), 240000);
  for (const p of pages) if (p.error) throw p.error;
  assert.equal(done, true, `both pages finished over the relay: ${describe(pages, logs)}`);
  assert.equal(p1.ends[0].finalStateHash, p0.ends[0].finalStateHash, 'equal final states');
  for (const p of pages) assert.equal(p.session.counters.desyncs, 0);
  for (const p of pages) { p.loop.stop(); p.session.destroy(); }
});
