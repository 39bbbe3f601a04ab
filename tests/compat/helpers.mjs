// Helpers of the mug-protocol compatibility suite (scripts/test compat): the Python test server
// (web/mug_server.py: Flask-SocketIO + eventlet from Debian) started on 127.0.0.1 and stopped,
// pages of P2PSyncSession over web/transport_mug.js with a real socket.io-client, and the
// comparisons every test makes. Real time throughout (a real server): short episodes at 60 fps.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';
import { loadP2PSync } from '../../web/p2psync.js';
import { P2PSyncSession } from '../../web/session.js';
import { MugTransport } from '../../web/transport_mug.js';
import { FakeWorld } from '../node/fakes.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Debian's python3 (python3-flask-socketio, python3-eventlet), not a pyenv/venv one on PATH. */
export const PYTHON = process.env.P2PSYNC_PYTHON || '/usr/bin/python3';

let libPromise = null;
export function loadLib() {
  libPromise ??= loadP2PSync();
  return libPromise;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts web/mug_server.py on 127.0.0.1 and a free port. Resolves with
 * {url, stats(), log: string[], close()} once it listens.
 * @param {{ids?: string, countdown?: number, turn?: {username, credential, forceRelay?}, scene?: object}} [o]
 */
export function startMugServer({ ids = '0,1', countdown = 0.2, turn = null, scene = null } = {}) {
  const args = [path.join(REPO, 'web', 'mug_server.py'), '--host', '127.0.0.1', '--port', '0', '--ids', ids, '--countdown', String(countdown)];
  if (turn) {
    args.push('--turn-username', turn.username, '--turn-credential', turn.credential);
    if (turn.forceRelay) args.push('--force-relay');
  }
  if (scene) args.push('--scene', JSON.stringify(scene));
  const proc = spawn(PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  proc.stderr.on('data', (d) => { for (const l of String(d).split('\n')) if (l) log.push(l); });
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => { proc.kill(); reject(new Error(`mug_server did not start within 20 s:\n${log.join('\n')}`)); }, 20000);
    proc.on('exit', (code) => { clearTimeout(t); reject(new Error(`mug_server exited (${code}):\n${log.join('\n')}`)); });
    proc.stdout.on('data', (d) => {
      out += String(d);
      const m = /mug_server listening on (\S+)/.exec(out);
      if (!m) return;
      clearTimeout(t);
      proc.removeAllListeners('exit');
      const url = m[1];
      resolve({
        url,
        log,
        proc,
        async stats() { return (await fetch(`${url}__mug/stats`)).json(); },
        close() {
          return new Promise((r) => {
            if (proc.exitCode !== null) return r();
            proc.once('exit', () => r());
            proc.kill('SIGTERM');
          });
        },
      });
    });
  });
}

/** A Socket.IO client as mug's page makes it (websocket only), registered and queued for a game
 * the way mug's index.js does it (register_subject, then join_game). */
export function mugSocket(url, subjectId) {
  const socket = io(url, { transports: ['websocket'], upgrade: false, reconnection: false });
  socket.on('connect', () => {
    socket.emit('register_subject', { subject_id: subjectId });
    socket.emit('join_game', { session_id: subjectId });
  });
  return socket;
}

export const realClock = Object.freeze({
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (t) => clearInterval(t),
});

/**
 * The fake RTCPeerConnection / RTCDataChannel pair of tests/node/fakes.mjs, in real time (node has
 * no WebRTC): signaling goes through the real server, the channel is in-process.
 * never: the connection never opens (no DataChannel: P2P is never usable).
 */
export function rtcWorld({ latencyMs = 5, never = false } = {}) {
  const world = new FakeWorld({ latencyMs });
  world.clock = realClock;
  if (never) {
    const Base = world.RTCPeerConnection;
    world.RTCPeerConnection = class extends Base { _maybeConnect() {} };
  }
  return world;
}

/**
 * Opens `n` pages on the mug server: each a socket (register_subject + join_game), a MugTransport
 * and P2PSyncSession.connect. Resolves with the pages once every page is connected.
 * page: {i, socket, transport, session, env, ends: [], error, steps, action}
 */
export async function openPages({ url, n = 2, world, makeEnv, sessionOptions = () => ({}), connectTimeoutMs = 4000, stagger = 150 }) {
  const lib = await loadLib();
  const pages = [];
  for (let i = 0; i < n; i++) {
    const socket = mugSocket(url, `subject-${process.pid}-${Date.now()}-${i}`);
    const transport = new MugTransport(socket, { log: () => {} });
    const env = await makeEnv(i);
    pages.push({ i, socket, transport, env, session: null, ends: [], error: null, steps: 0, action: 0, busy: false, logs: [] });
    if (stagger) await sleep(stagger); // FIFO matching: page 0 waited longest, gets the first slot
  }
  await Promise.all(pages.map(async (p) => {
    p.session = await P2PSyncSession.connect({
      lib, transport: p.transport, env: p.env, RTCPeerConnection: world.RTCPeerConnection, connectTimeoutMs,
      barrierTimeoutMs: 3000, settleRttMs: 250, trackVisibility: false, keepData: 'session',
      log: (m) => { if (p.logs.length < 2000) p.logs.push(m); },
      ...sessionOptions(p),
    });
    p.session.addEventListener('episodeEnd', (e) => p.ends.push(e.detail));
  }));
  return pages;
}

/**
 * Each page steps at `fps` (a page's setInterval loop) with its own seeded policy until every page
 * has finished (or timeoutMs). during(pages) runs every tick of page 0's loop.
 */
export async function playPages(pages, { fps = 60, timeoutMs = 60000, during = null } = {}) {
  const timers = [];
  for (const p of pages) {
    let s = (p.i + 1) * 7919;
    const rnd = () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s / 4294967296; };
    timers.push(setInterval(() => {
      if (p.busy || p.session.finished || p.hidden || p.error) return;
      if (rnd() < 0.25) p.action = Math.floor(rnd() * 5);
      p.busy = true;
      p.session.step(p.action).then(() => { p.busy = false; p.steps++; }, (e) => { p.error = e; p.busy = false; });
    }, 1000 / fps));
  }
  const t0 = Date.now();
  try {
    while (!pages.every((p) => p.session.finished) && !pages.some((p) => p.error) && Date.now() - t0 < timeoutMs) {
      if (during) during(pages);
      await sleep(10);
    }
  } finally {
    for (const t of timers) clearInterval(t);
  }
  for (const p of pages) if (p.error) throw p.error;
  // what the tests read from the engine, before finish() frees it
  for (const p of pages) {
    p.p2pMetrics = p.session.p2pMetrics;
    p.metrics = p.session.exportSessionMetrics();
  }
  // service END/READY answers a little longer, then close
  await Promise.all(pages.map((p) => p.session.finish({ lingerMs: 300, timeoutMs: 3000, frameMs: 1000 / fps })));
  return { done: pages.every((p) => p.session.finished), ms: Date.now() - t0 };
}

export function describePages(pages) {
  return JSON.stringify(pages.map((p) => ({
    index: p.session?.playerIndex, state: p.session?.state, status: p.session?.status, frame: p.session?.frame,
    confirmed: p.session?.confirmedFrame, steps: p.steps, ends: p.ends.map((e) => `${e.episode}@${e.episodeFrame}/${e.reason}`),
  })));
}

/** Research data of every page: per episode, the shared columns identical row by row. Returns the
 * JSON session exports. */
export function assertSameResearchData(pages, episodes) {
  const s = describePages(pages);
  const data = pages.map((p) => p.session.exportSessionData({ format: 'json' }));
  const shared = data[0].columns.filter((c) => !data[0].localColumns.includes(c));
  for (const d of data) assert.deepEqual(d.columns, data[0].columns, 'same columns on every page');
  for (const p of pages) assert.equal(p.ends.length, episodes, `every page ended ${episodes} episodes: ${s}`);
  for (let e = 0; e < episodes; e++) {
    const rows = data.map((d) => d.episodes[e].rows);
    assert.ok(rows[0].length > 0, `episode ${e} has rows`);
    const text = (rs) => rs.map((r) => shared.map((c) => String(r[c])).join(',')).join('\n');
    for (let k = 1; k < rows.length; k++) {
      if (text(rows[k]) !== text(rows[0])) {
        const a = rows[0], b = rows[k];
        let i = 0;
        while (i < Math.min(a.length, b.length) && text([a[i]]) === text([b[i]])) i++;
        assert.fail(`episode ${e}: shared research columns differ between page 0 and page ${k} at row ${i} ` +
          `(${a.length} vs ${b.length} rows): ${JSON.stringify(a[i])} vs ${JSON.stringify(b[i])}`);
      }
    }
    for (const [i, p] of pages.entries()) {
      assert.equal(rows[i].length, p.ends[e].episodeFrame + 1, `page ${i} episode ${e}: one row per frame`);
      assert.deepEqual(rows[i].map((r) => r.episodeFrame), rows[i].map((_, k) => k), 'rows in frame order');
    }
  }
  for (const p of pages) assert.equal(p.session.counters.desyncs, 0, `no desync: ${s}`);
  return { data, shared };
}

export async function closeAll(pages) {
  for (const p of pages || []) {
    try { p.session?.destroy(); } catch { /* closed */ }
    try { p.socket.close(); } catch { /* closed */ }
  }
}
