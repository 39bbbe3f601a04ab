// P2PSyncSession itself — the code a page runs — over fake RTCDataChannels and a fake Socket.IO
// server in virtual time (tests/node/fakes.mjs), with the real .wasm engine and the JS grid game.
//   node --test tests/node/page_session.test.mjs        (needs build/wasm: scripts/build wasm)
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadP2PSync } from '../../web/p2psync.js';
import { P2PSyncSession } from '../../web/session.js';
import { createGridGame } from '../../web/envs/grid_game.js';
import { createRng } from '../../web/netsim.js';
import { startFrameLoop } from '../../web/frame_loop.js';
import { FakeWorld } from './fakes.mjs';

let lib;
before(async () => { lib = await loadP2PSync(); });

const FRAME_MS = 1000 / 30;

/**
 * Connects `players` pages in one FakeWorld and plays until every page has ended `episodes`
 * episodes (or `maxMs` of virtual time pass). Each page steps every frame with its own seeded
 * policy, like a page's setInterval loop. Returns the sessions and what the pages saw.
 */
async function playPages({ seed, players = 2, latencyMs, jitterMs, loss, config = {}, episodes = 1, sessionOptions = () => ({}), envOptions = {}, maxMs = 180000, during = null, makeEnv = null, fpsOf = () => 1000 / FRAME_MS, pacing = true }) {
  const world = new FakeWorld({ seed, latencyMs, jitterMs, loss });
  const pages = [];
  for (let i = 0; i < players; i++) {
    const env = makeEnv ? await makeEnv(i) : createGridGame({ numPlayers: players, seed: 7, ...envOptions });
    const page = { env, session: null, connected: false, error: null, ends: [], rng: createRng(`${seed}/${i}`), action: 0, steps: 0, results: [] };
    pages.push(page);
    P2PSyncSession.connect({
      lib, socket: world.socket(), env, room: `r${seed}`, players, clock: world.clock,
      RTCPeerConnection: world.RTCPeerConnection, log: () => {}, barrierTimeoutMs: 3000, settleRttMs: 2000,
      config: { inputDelay: 0, ...config }, episodes, ...sessionOptions(page, i),
    }).then((s) => {
      page.session = s;
      page.connected = true;
      s.addEventListener('episodeEnd', (e) => page.ends.push(e.detail));
    }, (e) => { page.error = e; });
  }
  await world.clock.run(() => pages.every((p) => p.connected || p.error), 60000);
  for (const p of pages) if (p.error) throw p.error;
  // the pages' frame loops (web/frame_loop.js: deadlines with the engine's pacing), phase-shifted;
  // a hidden page is a frozen tab: its loop's steps do nothing
  pages.forEach((p, i) => {
    const page = {
      get finished() { return p.session.finished; },
      step: (a) => (p.hidden ? Promise.resolve({}) : p.session.step(a).then((r) => { p.steps++; p.results.push(r); return r; })),
    };
    p.loop = startFrameLoop({
      session: page, fps: fpsOf(i), pacing, clock: world.clock, startDelayMs: (i * FRAME_MS) / players,
      action: () => { if (p.rng() < 0.3) p.action = p.rng.int(5); return p.action; },
      onError: (e) => { p.error = e; },
    });
  });
  if (during) during(world, pages);
  const done = await world.clock.run(() => pages.every((p) => p.session.finished) || pages.some((p) => p.error), maxMs);
  for (const p of pages) if (p.error) throw p.error;
  return { world, pages, done };
}

function describePages(pages) {
  return JSON.stringify(pages.map((p) => ({
    status: p.session.status, frame: p.session.frame, confirmed: p.session.confirmedFrame, steps: p.steps,
    ends: p.ends.map((e) => `${e.episode}@${e.episodeFrame}`), finished: p.session.finished,
  })));
}

function assertSameEpisodes(pages, episodes) {
  const s = describePages(pages);
  for (const p of pages) assert.equal(p.ends.length, episodes, `every page saw ${episodes} episodeEnd: ${s}`);
  for (let e = 0; e < episodes; e++) {
    const frames = pages.map((p) => p.ends[e].frame);
    assert.ok(frames.every((f) => f === frames[0]), `episode ${e} ended on one frame: ${s}`);
    const hashes = pages.map((p) => p.ends[e].finalStateHash);
    assert.ok(hashes.every((h) => /^[0-9a-f]{16}$/.test(h) && h === hashes[0]), `episode ${e}: equal final states ${JSON.stringify(hashes)}`);
  }
  const logs = pages.map((p) => p.session.actionLogHex());
  const n = Math.min(...logs.map((l) => l.length));
  assert.ok(n > 0, 'confirmed frames were logged');
  for (const l of logs) assert.equal(l.slice(0, n), logs[0].slice(0, n), 'confirmed action logs identical');
  for (const p of pages) assert.equal(p.session.counters.desyncs, 0, `no desync: ${s}`);
}

test('isDone (an end decided on the simulated state), 150 ± 60 ms, 30% loss, input delay 0: 20 of 20 runs end on one frame', async () => {
  for (let seed = 1; seed <= 20; seed++) {
    const { pages, done } = await playPages({
      seed, latencyMs: 150, jitterMs: 120, loss: 0.3,
      sessionOptions: () => ({ isDone: (env) => env.state.players.some((pl) => pl.score >= 3) }),
    });
    assert.equal(done, true, `seed ${seed}: both pages finished the episode: ${describePages(pages)}`);
    assertSameEpisodes(pages, 1);
    for (const p of pages) assert.ok(p.ends[0].rewards && Object.values(p.ends[0].rewards).some((v) => v >= 3), `seed ${seed}: the end is the score condition`);
  }
});

test('an env whose step() reports terminated: 3 episodes, 3 players, lossy link, every episode on one frame', async () => {
  for (const seed of [101, 102]) {
    const { pages, done } = await playPages({
      seed, players: 3, latencyMs: 80, jitterMs: 60, loss: 0.15, episodes: 3, envOptions: { endOnScore: 2 },
    });
    assert.equal(done, true, `seed ${seed}: every page played 3 episodes: ${describePages(pages)}`);
    assertSameEpisodes(pages, 3);
  }
});

// ------------------------------------------------------------------------------------------------
// Research sessions (issue 13): many episodes, per-frame data equal on every peer.

/** Checks the research data of every page: shared columns identical, one row per frame, rewards. */
function assertResearchData(pages, episodes) {
  const s = describePages(pages);
  const data = pages.map((p) => p.session.exportSessionData({ format: 'json' }));
  const shared = data[0].columns.filter((c) => !data[0].localColumns.includes(c));
  assert.ok(shared.includes('isFocused.0') && shared.includes('reward.0') && !shared.includes('timestamp'), `columns: ${data[0].columns}`);
  for (let e = 0; e < episodes; e++) {
    const csvs = pages.map((p) => p.session.exportEpisodeData({ episode: p.ends[e].episode, format: 'csv' }));
    const sharedCsv = (p) => {
      const j = p.session.exportEpisodeData({ episode: p.ends[e].episode, format: 'json' });
      return j.rows.map((r) => shared.map((c) => String(r[c])).join(',')).join('\n');
    };
    const texts = pages.map(sharedCsv);
    for (const t of texts) assert.equal(t, texts[0], `episode ${e}: shared columns identical on every page: ${s}`);
    for (const [i, p] of pages.entries()) {
      const j = p.session.exportEpisodeData({ episode: p.ends[e].episode, format: 'json' });
      assert.equal(j.rows.length, p.ends[e].episodeFrame + 1, `page ${i} episode ${e}: one row per frame`);
      assert.deepEqual(j.rows.map((r) => r.episodeFrame), j.rows.map((_, k) => k), 'rows in frame order, none twice');
      const env = p.ends[e].rewards;
      for (const [pl, v] of Object.entries(env)) {
        const sum = j.rows.reduce((a, r) => a + r[`reward.${pl}`], 0);
        assert.equal(sum, v, `page ${i} episode ${e}: reward.${pl} sums to the env's episode reward`);
      }
      assert.ok(csvs[i].startsWith('episode,episodeFrame,frame,'), 'CSV header');
      assert.equal(csvs[i].trimEnd().split('\n').length, j.rows.length + 1, 'CSV: a line per row');
    }
  }
}

for (const players of [2, 3, 4]) {
  test(`${players} players, 300 ± 100 ms, 15% loss, 3 episodes: every episode on one frame, research data equal`, async () => {
    const { pages, done } = await playPages({
      seed: 300 + players, players, latencyMs: 300, jitterMs: 200, loss: 0.15, episodes: 3,
      envOptions: { endOnScore: 2 }, config: { inputDelay: 2 }, sessionOptions: () => ({ keepData: 'session' }), maxMs: 400000,
    });
    assert.equal(done, true, `every page played 3 episodes: ${describePages(pages)}`);
    assertSameEpisodes(pages, 3);
    assertResearchData(pages, 3);
  });
}

// ------------------------------------------------------------------------------------------------
// Pacing (issue 17): the page loop (web/frame_loop.js) applies step()'s pacingMs. A page whose
// clock runs 5% fast is paced back without WAIT frames; a loop that ignores the hint is held back
// by WAITs instead.

for (const pacing of [true, false]) {
  test(`a page whose clock runs 5% fast, ${pacing ? 'with' : 'without'} the loop's pacing: the frame counters stay together`, async () => {
    const diffs = [];
    const { pages, done } = await playPages({
      seed: 41, latencyMs: 40, jitterMs: 10, loss: 0, episodes: 1, config: { inputDelay: 2, maxEpisodeFrames: 1800 },
      fpsOf: (i) => (i === 1 ? 31.5 : 30), pacing, maxMs: 200000,
      during: (world, ps) => world.clock.setInterval(() => {
        if (ps.every((p) => p.session.status === 'RUN')) diffs.push(ps[1].session.frame - ps[0].session.frame);
      }, 100),
    });
    assert.equal(done, true, describePages(pages));
    assertSameEpisodes(pages, 1);
    const late = diffs.slice(diffs.length / 4);
    const worst = Math.max(...late.map(Math.abs));
    const waits = pages[1].session.counters.waits;
    const stretch = pages[1].results.slice(600).map((r) => r.pacingMs ?? 0);
    const meanStretch = stretch.reduce((a, b) => a + b, 0) / stretch.length;
    if (pacing) {
      assert.ok(meanStretch > 0.3, `the fast page's frames are stretched (mean ${meanStretch.toFixed(2)} ms)`);
      assert.ok(waits <= 6, `hardly a WAIT: ${waits}`);
      assert.ok(worst <= 2, `frame counters within 2: ${worst}`);
    } else {
      assert.ok(waits >= 40, `WAITs hold the fast page back: ${waits}`);
      assert.ok(worst <= 4, `frame counters within 4: ${worst}`);
    }
  });
}

// ------------------------------------------------------------------------------------------------
// Focus: a page hidden for 10 s (it does not step: a frozen tab), then shown again.

async function hiddenPage(focusPolicy) {
  const hideAtFrame = 150, hiddenMs = 10000;
  let resumedAt = null, caughtUpAt = null;
  const focusEvents = [];
  const run = await playPages({
    seed: 77, latencyMs: 60, jitterMs: 30, loss: 0.05, episodes: 1, config: { inputDelay: 2, focusPolicy },
    envOptions: { endOnScore: 4 }, sessionOptions: (page, i) => ({ keepData: 'session', trackVisibility: false }),
    maxMs: 400000,
    during: (world, pages) => {
      const [p0, p1] = pages;
      p0.session.addEventListener('focus', (e) => focusEvents.push({ at: world.clock.now(), ...e.detail }));
      world.clock.setInterval(() => {
        if (!p1.hiddenDone && !p1.hidden && p1.session.frame >= hideAtFrame) {
          p1.hidden = true;
          p1.session.setFocus(false);
          world.clock.setTimeout(() => {
            p1.hidden = false;
            p1.hiddenDone = true;
            p1.session.setFocus(true);
            resumedAt = world.clock.now();
          }, hiddenMs);
        }
        if (resumedAt !== null && caughtUpAt === null && p1.session.frame >= p0.session.frame - 2) caughtUpAt = world.clock.now();
      }, 5);
    },
  });
  return { ...run, resumedAt, caughtUpAt, focusEvents, hideAtFrame };
}

for (const focusPolicy of ['predict', 'pause']) {
  test(`a page hidden for 10 s (focusPolicy ${focusPolicy}): both finish with identical data, the hidden span is in it, catch-up within 2 s`, async () => {
    const r = await hiddenPage(focusPolicy);
    const { pages } = r;
    assert.equal(r.done, true, `both pages finished: ${describePages(pages)}`);
    assertSameEpisodes(pages, 1);
    assertResearchData(pages, 1);
    // the partner learned of both changes at once, while the hidden page was not stepping
    assert.deepEqual(r.focusEvents.filter((e) => e.peer === 1).map((e) => e.focused), [false, true], JSON.stringify(r.focusEvents));
    const rows = pages[0].session.exportEpisodeData({ episode: pages[0].ends[0].episode, format: 'json' }).rows;
    const hidden = rows.filter((row) => row['isFocused.1'] === false);
    if (focusPolicy === 'predict') {
      // the partner ran on predicting, the hidden page caught up: the frames it did not choose live
      assert.ok(hidden.length > 0, 'frames of the hidden span are marked in the data');
    } else {
      // everyone paused: no frame was played while the page was hidden (the span is the pause
      // below); at most the few frames the partner had run before it paused are the hidden page's
      // catch-up when it is back
      assert.ok(hidden.length <= 5, `no frame ran while hidden: ${hidden.map((row) => row.episodeFrame)}`);
    }
    assert.ok(hidden.every((row) => row.episodeFrame >= r.hideAtFrame - 5), `the marked frames are at or after the hide (${hidden[0]?.episodeFrame})`);
    assert.ok(rows.every((row) => row['isFocused.0'] === true), 'the other page stayed focused');
    assert.ok(r.caughtUpAt !== null && r.caughtUpAt - r.resumedAt <= 2000, `caught up in ${r.caughtUpAt - r.resumedAt} ms`);
    if (focusPolicy === 'pause') {
      const d = pages[0].session.exportEpisodeData({ episode: pages[0].ends[0].episode, format: 'json' });
      assert.deepEqual(d.pauses.map((x) => x.type), ['pause', 'resume'], JSON.stringify(d.pauses));
      assert.ok(d.pauses[1].ms >= 9000, `the pause lasted the hidden span: ${JSON.stringify(d.pauses)}`);
      assert.equal(pages[0].session.counters.stalls > 0, true);
    }
  });
}

test('the Python env in Pyodide: 2 players, 300 ± 100 ms, 15% loss, 3 episodes, research data equal', async () => {
  const { loadPyodide } = await import('pyodide');
  const { createPyodideEnv } = await import('../../web/envs/pyodide_env.js');
  const pyodide = await loadPyodide();
  const envs = [];
  try {
    const { pages, done } = await playPages({
      seed: 500, latencyMs: 300, jitterMs: 200, loss: 0.15, episodes: 3, config: { inputDelay: 2 },
      sessionOptions: () => ({ keepData: 'session' }), maxMs: 400000,
      makeEnv: async () => { const e = await createPyodideEnv({ pyodide, numPlayers: 2, seed: 7, endOnScore: 2 }); envs.push(e); return e; },
    });
    assert.equal(done, true, `both pages played 3 episodes: ${describePages(pages)}`);
    assertSameEpisodes(pages, 3);
    assertResearchData(pages, 3);
  } finally {
    for (const e of envs) e.destroy();
  }
});
