// demo.js — the p2psync demo page: a 2–4 player grid game on a canvas, keyboard controlled,
// synchronized by the p2psync engine over RTCDataChannel (Socket.IO relay as fallback), with a
// live metrics panel. URL parameters: see index.html. Tests drive it through window.game.
// Served by web/server.mjs it speaks p2psync's server protocol; served by web/mug_server.py
// (scripts/demo --serve --mug-protocol) it speaks mug's, through web/transport_mug.js.
import { loadP2PSync } from '/web/p2psync.js';
import { createGridGame } from '/web/envs/grid_game.js';
import { P2PSyncSession } from '/web/session.js';
import { MugTransport } from '/web/transport_mug.js';
import { startFrameLoop } from '/web/frame_loop.js';

const q = new URLSearchParams(location.search);
const num = (k, d) => {
  const v = q.get(k);
  if (v === null || v === '') return d;
  const n = Number(v);
  return Number.isFinite(n) ? n : d;
};
const P = {
  room: q.get('room') || 'demo',
  players: Math.min(4, Math.max(2, num('players', 2) | 0)),
  env: q.get('env') === 'pyodide' ? 'pyodide' : 'grid',
  auto: q.has('auto') ? (num('auto', 1) | 0) || 1 : 0,
  frames: Math.max(0, num('frames', 0) | 0),
  episodes: Math.max(1, num('episodes', 1) | 0),
  latency: Math.max(0, num('latency', 0)),
  loss: Math.max(0, num('loss', 0)),
  fps: Math.min(120, Math.max(5, num('fps', 30))),
  delay: q.has('delay') ? Math.max(0, num('delay', 2) | 0) : undefined,
  cut: q.has('cut') ? num('cut', -1) | 0 : -1,
  cutEp: Math.max(0, num('cutEp', 0) | 0),
  connectTimeout: Math.max(500, num('connectTimeout', 15000)),
  proto: q.get('proto') || null,
  turnUrls: q.has('turnUrls') ? q.get('turnUrls').split(',').filter(Boolean) : null,
  seed: num('seed', 1) >>> 0,
  recover: Math.max(0, num('recover', 0)),
  recoverBelow: Math.max(1, num('recoverBelow', 100)),
  // research rows kept in memory (session keepData): episode (default) | session | none | N episodes
  keep: ['episode', 'session', 'none'].includes(q.get('keep')) ? q.get('keep') : q.has('keep') ? Math.max(0, num('keep', 2) | 0) : undefined,
};

const $ = (id) => document.getElementById(id);
const statusEl = $('status');
const logEl = $('log');
const logLines = [];
function uiLog(msg) {
  logLines.push(msg);
  if (logLines.length > 8) logLines.shift();
  logEl.textContent = logLines.join('\n');
}
function setStatus(text, cls = '') {
  statusEl.textContent = text;
  statusEl.className = `status ${cls}`;
}

const COLORS = ['#4fc3f7', '#ef5350', '#66bb6a', '#ba68c8', '#ffd54f'];

// ------------------------------------------------------------------ window.game (tests, console)
let session = null;
let env = null;
const game = {
  params: P,
  ready: false,
  done: false,
  error: null,
  playerIndex: -1,
  session: null,
  get frame() { return session ? session.frame - session.episodeStart : 0; },
  get globalFrame() { return session ? session.frame : 0; },
  get status() { return session ? session.status : 'INIT'; },
  get confirmedFrame() { return session ? session.confirmedFrame : -1; },
  get verifiedFrame() { return session ? session.verifiedFrame : -1; },
  get loggedFrame() { return session ? session.loggedFrame : -1; },
  get p2pMetrics() { return session ? session.p2pMetrics : null; },
  get finalStateHash() { return session ? session.finalStateHash : null; },
  get episodeSummary() { return session ? session.episodeSummaryLine : null; },
  actionLog(from, to) { return session.actionLog(from, to); },
  actionLogHex(from, to) { return session.actionLogHex(from, to); },
  exportSessionMetrics() { return session.exportSessionMetrics(); },
  stateHashAt(frame) { return session.stateHashAt(frame); },
  closeP2P() { session.closeP2P(); },
  restoreP2P() { session.restoreP2P(); },
  protocol: null,
  mug: null,
  get finished() { return session ? session.finished : false; },
  get episode() { return session ? session.episode : 0; },
  researchData() { return session.exportSessionData({ format: 'json' }); },
  impair(o) { const r = session.impair(o); syncSliders(); return r; },
  /** emit any event on the socket and resolve with the server's ack (tests of server validation) */
  emitRaw(event, payload) {
    return new Promise((resolve) => game.socket.timeout(3000).emit(event, payload, (err, res) => resolve(err ? { ok: false, error: String(err) } : res)));
  },
  events: [],
};
window.game = game;

// ------------------------------------------------------------------ input
const KEYS = { ArrowUp: 1, KeyW: 1, ArrowDown: 2, KeyS: 2, ArrowLeft: 3, KeyA: 3, ArrowRight: 4, KeyD: 4 };
const held = [];
addEventListener('keydown', (e) => {
  const a = KEYS[e.code];
  if (!a) return;
  e.preventDefault();
  if (!held.includes(a)) held.push(a);
});
addEventListener('keyup', (e) => {
  const a = KEYS[e.code];
  const i = held.indexOf(a);
  if (i >= 0) held.splice(i, 1);
});
addEventListener('blur', () => { held.length = 0; });

// scripted random inputs (auto=SEED): mulberry32 per player, changes direction now and then
function makeAuto(seed, player) {
  let a = (seed * 0x9e3779b1 + player * 0x85ebca6b + 1) | 0;
  const rnd = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let cur = 0;
  return () => {
    if (rnd() < 0.2) cur = Math.floor(rnd() * 5);
    return cur;
  };
}
let autoAction = null;
const localAction = () => (autoAction ? autoAction() : held.length ? held[held.length - 1] : 0);

// ------------------------------------------------------------------ rendering
const board = $('board');
const ctx = board.getContext('2d');
function currentState() {
  if (env.state && typeof env.state === 'object') return env.state;
  return JSON.parse(env.getState());
}
let background = null; // the empty grid, drawn once
function drawBackground(S, cw, ch) {
  background = document.createElement('canvas');
  background.width = board.width;
  background.height = board.height;
  const g = background.getContext('2d');
  g.fillStyle = '#0d0f14';
  g.fillRect(0, 0, board.width, board.height);
  g.strokeStyle = '#1f2330';
  g.lineWidth = 1;
  g.beginPath();
  for (let x = 0; x <= S.width; x++) { g.moveTo(x * cw + 0.5, 0); g.lineTo(x * cw + 0.5, S.height * ch); }
  for (let y = 0; y <= S.height; y++) { g.moveTo(0, y * ch + 0.5); g.lineTo(S.width * cw, y * ch + 0.5); }
  g.stroke();
}
let lastScores = '';
function render() {
  const S = currentState();
  const cw = Math.floor(board.width / S.width), ch = Math.floor(board.height / S.height);
  if (!background) drawBackground(S, cw, ch);
  ctx.drawImage(background, 0, 0);
  ctx.fillStyle = '#ffd54f';
  for (const [x, y] of S.coins) {
    if (x < 0) continue;
    ctx.beginPath();
    ctx.arc(x * cw + cw / 2, y * ch + ch / 2, Math.min(cw, ch) * 0.28, 0, Math.PI * 2);
    ctx.fill();
  }
  S.bots.forEach((b) => { ctx.fillStyle = '#78909c'; ctx.fillRect(b.x * cw + 5, b.y * ch + 5, cw - 10, ch - 10); });
  S.players.forEach((p, i) => {
    ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.fillRect(p.x * cw + 3, p.y * ch + 3, cw - 6, ch - 6);
    if (i === game.playerIndex) {
      ctx.strokeStyle = '#ffffff';
      ctx.lineWidth = 2;
      ctx.strokeRect(p.x * cw + 2, p.y * ch + 2, cw - 4, ch - 4);
    }
    ctx.fillStyle = '#0d0f14';
    ctx.font = `bold ${Math.floor(ch * 0.5)}px system-ui`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(String(i), p.x * cw + cw / 2, p.y * ch + ch / 2 + 1);
  });
  const scores = S.players
    .map((p, i) => `<span><i style="background:${COLORS[i % COLORS.length]}"></i>P${i}${i === game.playerIndex ? ' (you)' : ''}: ${p.score}</span>`)
    .join('');
  if (scores !== lastScores) { lastScores = scores; $('scores').innerHTML = scores; }
}

// ------------------------------------------------------------------ metrics panel
const rttHist = []; // [p50, p95], one sample per panel refresh (2 Hz)
function fmt(v, d = 0) { return v == null || !Number.isFinite(v) ? '–' : v.toFixed(d); }
function drawSpark() {
  const c = $('rtt'), g = c.getContext('2d');
  g.fillStyle = '#0d0f14';
  g.fillRect(0, 0, c.width, c.height);
  const vals = rttHist.flat().filter((v) => v != null);
  if (!vals.length) return;
  const max = Math.max(20, ...vals) * 1.15;
  const W = c.width, H = c.height, n = 120; // 60 s of history
  g.strokeStyle = '#2c3040';
  g.beginPath(); g.moveTo(0, H - 0.5); g.lineTo(W, H - 0.5); g.stroke();
  for (const [k, color] of [[1, '#ffb74d'], [0, '#4fc3f7']]) {
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    let started = false;
    rttHist.forEach((s, i) => {
      const v = s[k];
      if (v == null) return;
      const x = W - (rttHist.length - 1 - i) * (W / (n - 1));
      const y = H - 2 - (v / max) * (H - 4);
      if (!started) { g.moveTo(x, y); started = true; } else g.lineTo(x, y);
    });
    g.stroke();
  }
  g.fillStyle = '#8a90a0';
  g.font = '10px system-ui';
  g.fillText(`${Math.round(max)} ms`, 3, 10);
}
function drawHist(counts) {
  const c = $('hist'), g = c.getContext('2d');
  g.fillStyle = '#0d0f14';
  g.fillRect(0, 0, c.width, c.height);
  if (!counts || !counts.length) return;
  let last = 0;
  counts.forEach((v, i) => { if (v) last = i; });
  const allBins = counts.length; // the engine's last bin counts every depth >= allBins
  counts = counts.slice(0, Math.max(16, last + 1)); // show depth 1..N
  const bins = counts.length, W = c.width, H = c.height - 10;
  const max = Math.max(1, ...counts);
  const bw = W / bins;
  counts.forEach((v, i) => {
    const h = v ? Math.max(1, (v / max) * H) : 0;
    g.fillStyle = '#4fc3f7';
    g.fillRect(i * bw + 1, H - h, Math.max(1, bw - 2), h);
  });
  g.fillStyle = '#8a90a0';
  g.font = '9px system-ui';
  g.textAlign = 'left';
  g.fillText('depth 1', 1, c.height - 1);
  g.textAlign = 'right';
  g.fillText(`${bins}${bins === allBins ? '+' : ''} frames`, W - 2, c.height - 1);
  g.textAlign = 'left';
}
function updatePanel() {
  if (!session || !session.engine) return;
  const m = session.exportSessionMetrics();
  const pm = session.p2pMetrics;
  const peers = (m.quality && m.quality.peers) || [];
  const max = (k) => peers.reduce((a, p) => (p[k] == null ? a : Math.max(a ?? 0, p[k])), null);
  const p50 = max('p50Ms'), p95 = max('p95Ms');
  rttHist.push([p50, p95]);
  if (rttHist.length > 120) rttHist.shift();
  drawSpark();
  $('m-player').textContent = `${session.playerIndex} of ${session.numPlayers} · ${session.room}`;
  const chans = m.transport.channels.map((c) => `${c.peer}:${c.state}`).join(' ');
  $('m-conn').textContent = `${session.connectionType} · ${chans}`;
  $('m-frames').textContent = `${game.frame} / ${session.confirmedFrame - session.episodeStart} / ${session.verifiedFrame < 0 ? '–' : session.verifiedFrame - session.episodeStart}`;
  $('m-rtt').textContent = `${fmt(p50)} / ${fmt(p95)} ms`;
  const rp = pm.inputsReceivedViaP2P, rs = pm.inputsReceivedViaSocketIO;
  $('m-ratio').textContent = rp + rs ? `${((rp / (rp + rs)) * 100).toFixed(1)}% (${rp}/${rp + rs})` : '–';
  const fd = (m.inputs && m.inputs.firstDelivery) || { p2p: rp, relay: rs };
  const tot = fd.p2p + fd.relay;
  $('m-first').textContent = `${fd.p2p} / ${fd.relay}`;
  $('m-split-p2p').style.width = tot ? `${(fd.p2p / tot) * 100}%` : '0';
  $('m-split-relay').style.width = tot ? `${(fd.relay / tot) * 100}%` : '0';
  const rb = m.rollbacks || {};
  $('m-rollbacks').textContent = `${rb.count ?? 0} (max ${rb.maxFrames ?? 0})`;
  drawHist(rb.depthHistogram);
  const fb = (m.quality && m.quality.fallback) || {};
  const fbEl = $('m-fallback');
  fbEl.textContent = fb.triggered ? `RELAY since frame ${fb.frame - session.episodeStart} (${fb.reason})` : 'no (P2P)';
  fbEl.className = fb.triggered ? 'bad' : 'good';
  const ds = m.sync || {};
  const dsEl = $('m-desync');
  dsEl.textContent = ds.desyncs ? `${ds.desyncs} DESYNC (frame ${ds.desyncEvents && ds.desyncEvents[0] ? ds.desyncEvents[0].frame : '?'})` : `none (${ds.matches ?? 0} hash matches)`;
  dsEl.className = ds.desyncs ? 'bad' : 'good';
  $('m-stalls').textContent = `${m.quality.stalls} / ${m.quality.waits} · ${session.status}`;
  game.lastMetrics = m;
}

// sliders + button
function syncSliders() {
  if (!session) return;
  $('s-latency').value = session.impairment.latencyMs;
  $('s-loss').value = session.impairment.lossPct;
  $('o-latency').textContent = `${session.impairment.latencyMs} ms`;
  $('o-loss').textContent = `${session.impairment.lossPct} %`;
}
$('s-latency').addEventListener('input', (e) => { if (session) { session.impair({ latencyMs: Number(e.target.value) }); syncSliders(); } });
$('s-loss').addEventListener('input', (e) => { if (session) { session.impair({ lossPct: Number(e.target.value) }); syncSliders(); } });
$('cut').addEventListener('click', () => {
  if (!session) return;
  session.closeP2P();
  $('cut').disabled = true;
  $('restore').disabled = false;
  uiLog(`Cut P2P at frame ${game.frame}`);
});
$('restore').addEventListener('click', () => {
  if (!session) return;
  session.restoreP2P(); // with ?recover=MS the engine returns to P2P once the new channel is healthy
  $('restore').disabled = true;
  $('cut').disabled = false;
  uiLog(`Restore P2P at frame ${game.frame}`);
});

// ------------------------------------------------------------------ main
async function createEnv() {
  if (P.env === 'pyodide') {
    setStatus('loading Pyodide…');
    const { createPyodideEnv } = await import('/web/envs/pyodide_env.js');
    const { loadPyodide } = await import('/pyodide/pyodide.mjs');
    return createPyodideEnv({ loadPyodide, indexURL: '/pyodide/', numPlayers: P.players, seed: P.seed });
  }
  return createGridGame({ numPlayers: P.players, seed: P.seed });
}

/** Which server protocol: ?proto=mug|p2psync, else what the server marked the page with
 * (web/mug_server.py adds <meta name="p2psync-protocol" content="mug">; web/server.mjs nothing).
 * Over mug's protocol the server's /server-info.json says how many players its games have. */
async function serverProtocol() {
  const meta = document.querySelector('meta[name="p2psync-protocol"]');
  const protocol = P.proto === 'mug' || P.proto === 'p2psync' ? P.proto : meta ? meta.content : 'p2psync';
  if (protocol !== 'mug') return { protocol };
  try {
    const r = await fetch('/server-info.json', { cache: 'no-store' });
    if (r.ok) return { ...(await r.json()), protocol };
  } catch { /* not there */ }
  return { protocol };
}

/** mug's pairing, as mug's index.js does it: register_subject, then join_game; the server pairs
 * the players (FIFO) and the MugTransport takes pyodide_player_assigned / pyodide_game_ready. */
function mugJoin(socket) {
  const subjectId = q.get('subject') || `demo-${Math.random().toString(36).slice(2, 10)}`;
  const transport = new MugTransport(socket, { turnUrls: P.turnUrls || undefined, log: (m, l) => console[l === 'warn' ? 'warn' : 'log'](m) });
  const join = () => {
    socket.emit('register_subject', { subject_id: subjectId });
    socket.emit('join_game', { session_id: subjectId });
  };
  if (socket.connected) join(); else socket.once('connect', join);
  return transport;
}

async function main() {
  setStatus('loading engine…');
  const info = await serverProtocol();
  game.protocol = info.protocol;
  if (info.protocol === 'mug' && Array.isArray(info.ids)) P.players = info.ids.length; // mug's scene decides
  const [lib, e] = await Promise.all([loadP2PSync({ wasmUrl: '/build/wasm/p2psync.wasm' }), createEnv()]);
  env = e;
  render();
  const socket = window.io({ transports: ['websocket'], upgrade: false });
  game.socket = socket;
  const config = {};
  if (P.delay !== undefined) config.inputDelay = P.delay;
  if (P.recover > 0) config.fallbackRecovery = { healthyForMs: P.recover, latencyBelowMs: P.recoverBelow };
  const where = info.protocol === 'mug' ? { transport: mugJoin(socket) } : { socket, room: P.room };
  setStatus(info.protocol === 'mug' ? `waiting for mug's server to pair ${P.players} players…` : `waiting for ${P.players} players in room "${P.room}"…`);
  session = await P2PSyncSession.connect({
    lib, ...where, env, players: P.players, config, episodeFrames: P.frames, episodes: P.episodes, iceServers: [],
    connectTimeoutMs: P.connectTimeout, ...(P.keep !== undefined ? { keepData: P.keep } : {}),
    log: (msg, level) => {
      (level === 'warn' ? console.warn : level === 'error' ? console.error : console.log)(msg);
      if (!msg.startsWith('[P2P Sync] Player')) uiLog(msg);
    },
  });
  game.session = session;
  game.playerIndex = session.playerIndex;
  if (session.joinInfo && session.joinInfo.mug) game.mug = session.joinInfo.mug;
  if (P.auto) autoAction = makeAuto(P.auto, session.playerIndex);
  session.impair({ latencyMs: P.latency, lossPct: P.loss });
  syncSliders();
  // rejoin (issue 16): a reloaded page reclaims its seat by itself (the session keeps the reconnect
  // token in sessionStorage under the room); these record what happened around it
  for (const t of ['rollback', 'desync', 'fallback', 'stall', 'episodeEnd', 'recovery', 'disconnected', 'reconnected', 'stateLoaded', 'rejoin', 'peerRejoined', 'seatReclaimed']) {
    session.addEventListener(t, (ev) => {
      if (t !== 'rollback' && game.events.length < 500) game.events.push(ev.detail);
    });
  }
  session.addEventListener('episodeEnd', () => {
    if (session.finished) game.done = true; // every episode (?episodes=N) has ended
    setStatus(`episode${session.finished ? '' : ` ${session.episode}`} complete · ${session.episodeSummaryLine}`, 'ok');
    updatePanel();
  });
  session.addEventListener('desync', (ev) => setStatus(`DESYNC at frame ${ev.detail.frame}`, 'err'));
  session.addEventListener('seatReclaimed', () => { if (game.loop) game.loop.stop(); setStatus('this seat was taken over by another tab', 'err'); });
  updatePanel(); // first (slow, cold-code) panel refresh before frame 0, not during the first frames
  game.ready = true;
  setStatus(`${session.rejoined ? 'rejoined' : 'playing'} as player ${session.playerIndex}`, 'ok');

  let cutDone = false;
  let lastPanel = 0;
  const failed = (err) => {
    game.error = String(err && err.stack || err);
    console.error('[demo] step failed:', err);
    setStatus(`error: ${err && err.message}`, 'err');
    if (game.loop) game.loop.stop();
  };
  // One step per frame, by deadline: the loop applies the engine's pacing hint (web/frame_loop.js).
  game.loop = startFrameLoop({
    session, fps: P.fps, action: localAction, onError: failed,
    onFrame: (r) => {
      try {
        if (r.status === 'RUN' || r.rollback) render();
        if (P.cut >= 0 && !cutDone && session.playerIndex === 0 && session.episode >= P.cutEp && game.frame >= P.cut) {
          cutDone = true;
          session.closeP2P();
          $('cut').disabled = true;
          $('restore').disabled = false;
          uiLog(`Cut P2P at frame ${game.frame}`);
        }
        const t = performance.now();
        if (t - lastPanel > 500) { lastPanel = t; updatePanel(); }
      } catch (err) {
        failed(err);
      }
    },
  });
}

main().catch((err) => {
  game.error = String(err && err.stack || err);
  console.error('[demo] failed:', err);
  setStatus(`error: ${err && err.message}`, 'err');
});
