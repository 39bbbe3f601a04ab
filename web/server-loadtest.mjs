// Load test of web/server.mjs (run it through scripts/loadtest).
//
//   node web/server-loadtest.mjs [--rooms N] [--seconds S] [--processes 1|2] [--json]
//                                [--fps F] [--hash-every K] [--warmup S] [--sample S] [--workers W]
//                                [--client ws|socket.io] [--server-args "ARGS"] [--server-node-args "ARGS"]
//
// N rooms x 2 clients. Each client sends `pyodide_player_action` at F fps and a `p2p_state_sync`
// every K frames for S seconds; the server relays each to the other player. With --processes 2
// the script also starts a private redis-server, and each room's two players connect to
// different server processes (the room state and the relay go through Redis).
// Everything runs on 127.0.0.1; redis-server and the servers are started and stopped here.
// Every loop is bounded in count and time.
//
// Figures: relayed events/s, relay latency p50/p99 (sender's clock to receiver's clock, both in
// this process), events lost (sent but never received after a drain of up to 10 s), server RSS
// at the start and the end of the measured interval (after --warmup), server CPU seconds in it.
// The load generator runs in W worker threads (default 1); its own CPU and event-loop delay are
// reported too, since an overloaded generator would show up as relay latency.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import os from 'node:os';
import { startRedis, spawnServer, procUsage } from './server-procs.mjs';

const HIST_MAX_MS = 10000;
const HIST_STEP = 0.05; // ms per bucket
const now = () => performance.timeOrigin + performance.now();

function parseArgs(argv) {
  const o = { rooms: 200, seconds: 30, processes: 1, json: false, fps: 30, hashEvery: 5, warmup: 5, sample: 10, workers: 1, client: 'ws' };
  const num = (a, v, lo, hi, int = true) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < lo || n > hi || (int && !Number.isInteger(n))) throw new Error(`${a} must be ${int ? 'an integer ' : ''}${lo}..${hi}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) throw new Error(`${a} needs a value`); return argv[++i]; };
    if (a === '--rooms') o.rooms = num(a, val(), 1, 5000);
    else if (a === '--seconds') o.seconds = num(a, val(), 1, 3600, false);
    else if (a === '--processes') o.processes = num(a, val(), 1, 2);
    else if (a === '--json') o.json = true;
    else if (a === '--fps') o.fps = num(a, val(), 1, 120);
    else if (a === '--hash-every') o.hashEvery = num(a, val(), 1, 1000);
    else if (a === '--warmup') o.warmup = num(a, val(), 0, 600, false);
    else if (a === '--sample') o.sample = num(a, val(), 1, 600, false);
    else if (a === '--workers') o.workers = num(a, val(), 1, 8);
    else if (a === '--server-args') o.serverArgs = val().split(' ').filter(Boolean);
    else if (a === '--server-node-args') o.serverNodeArgs = val().split(' ').filter(Boolean);
    else if (a === '--client') { o.client = val(); if (!['ws', 'socket.io'].includes(o.client)) throw new Error('--client is ws or socket.io'); }
    else if (a === '-h' || a === '--help') o.help = true;
    else throw new Error(`unknown argument: ${a}`);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// clients

/**
 * A Socket.IO client that speaks the wire protocol (engine.io v4 over WebSocket, socket.io v5
 * text packets) directly on `ws`: what a browser sends, at a fraction of socket.io-client's CPU
 * cost, so that the load generator disturbs the server less on a small machine. Text events
 * and acks only (the load test sends no binary).
 */
class RawClient {
  constructor(WebSocket, url) {
    this.handlers = new Map();
    this.acks = new Map();
    this.ackSeq = 0;
    this.connected = false;
    const u = new URL(url);
    this.ws = new WebSocket(`ws://${u.host}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: false });
    this.ws.on('message', (data) => this._onMessage(String(data)));
    this.ws.on('close', () => { if (this.connected) { this.connected = false; this._fire('disconnect', 'transport close'); } });
    this.ws.on('error', (e) => this._fire('connect_error', e));
  }
  _fire(ev, arg) { const hs = this.handlers.get(ev); if (hs) for (const h of [...hs]) h(arg); }
  _onMessage(m) {
    const t = m.charCodeAt(0);
    if (t === 50 /* '2' ping */) { this.ws.send('3'); return; }
    if (t === 48 /* '0' open */) { this.ws.send('40'); return; }
    if (t !== 52 /* '4' message */) return;
    const k = m.charCodeAt(1);
    if (k === 50 /* '42' event */) {
      const [ev, payload] = JSON.parse(m.slice(2));
      this._fire(ev, payload);
    } else if (k === 51 /* '43' ack */) {
      let i = 2;
      while (m.charCodeAt(i) >= 48 && m.charCodeAt(i) <= 57) i++;
      const id = Number(m.slice(2, i));
      const fn = this.acks.get(id);
      if (fn) { this.acks.delete(id); fn(JSON.parse(m.slice(i))[0]); }
    } else if (k === 48 /* '40' connected */) {
      this.connected = true;
      this.id = JSON.parse(m.slice(2)).sid;
      this._fire('connect');
    } else if (k === 52 /* '44' connect error */) {
      this._fire('connect_error', new Error(m.slice(2)));
    } else if (k === 49 /* '41' disconnect */) {
      this.connected = false;
      this._fire('disconnect', 'io server disconnect');
    }
  }
  on(ev, fn) { if (!this.handlers.has(ev)) this.handlers.set(ev, new Set()); this.handlers.get(ev).add(fn); return this; }
  once(ev, fn) { const w = (a) => { this.handlers.get(ev).delete(w); fn(a); }; return this.on(ev, w); }
  emit(ev, payload) { this.ws.send(`42${JSON.stringify([ev, payload])}`); }
  emitWithAck(ev, payload, ms) {
    return new Promise((resolve, reject) => {
      const id = this.ackSeq++;
      const t = setTimeout(() => { this.acks.delete(id); reject(new Error(`no ack for ${ev}`)); }, ms);
      this.acks.set(id, (v) => { clearTimeout(t); resolve(v); });
      this.ws.send(`42${id}${JSON.stringify([ev, payload])}`);
    });
  }
  close() { this.ws.close(); }
}

/** The same interface on socket.io-client (--client socket.io). */
class LibClient {
  constructor(connect, url) { this.s = connect(url, { transports: ['websocket'], forceNew: true, reconnection: false }); }
  on(ev, fn) { this.s.on(ev, fn); return this; }
  once(ev, fn) { this.s.once(ev, fn); return this; }
  emit(ev, payload) { this.s.emit(ev, payload); }
  emitWithAck(ev, payload, ms) { return this.s.timeout(ms).emitWithAck(ev, payload); }
  close() { this.s.close(); }
}

// ---------------------------------------------------------------------------------------------
// worker: drives a share of the rooms

async function runWorker({ urls, rooms, firstRoom, runId, fps, hashEvery, client }) {
  const makeClient = client === 'socket.io'
    ? await import('socket.io-client').then(({ io }) => (url) => new LibClient(io, url))
    : await import('ws').then(({ WebSocket }) => (url) => new RawClient(WebSocket, url));
  const hist = new Uint32Array(Math.ceil(HIST_MAX_MS / HIST_STEP) + 1);
  let measuring = false;
  let sending = false;
  const st = { sent: 0, received: 0, receivedMeasured: 0, outOfOrder: 0, maxLatency: 0, sendLagMax: 0, dropsAcked: 0 };
  const clients = [];
  const withTimeout = (p, ms, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timeout: ${what}`)), ms))]);

  // connect in bounded batches
  for (let r = 0; r < rooms; r++) {
    for (let seat = 0; seat < 2; seat++) {
      const url = urls[seat % urls.length];
      clients.push({ room: `lt-${runId}-${firstRoom + r}`, seat, url, sock: null, sent: 0, got: 0, lastFrame: { a: -1, h: -1 }, frame: 0, next: 0 });
    }
  }
  const BATCH = 50;
  for (let i = 0; i < clients.length; i += BATCH) {
    await withTimeout(Promise.all(clients.slice(i, i + BATCH).map((c) => new Promise((resolve, reject) => {
      c.sock = makeClient(c.url);
      c.sock.once('connect', resolve);
      c.sock.once('connect_error', (e) => reject(new Error(`connect: ${e.message}`)));
    }))), 30000, 'connect');
  }
  // receivers
  for (const c of clients) {
    const onEvent = (kind, ts, frame) => {
      st.received++;
      c.got++;
      if (frame <= c.lastFrame[kind]) st.outOfOrder++;
      c.lastFrame[kind] = frame;
      if (measuring) {
        st.receivedMeasured++;
        const lat = now() - ts;
        if (lat > st.maxLatency) st.maxLatency = lat;
        hist[Math.min(hist.length - 1, Math.max(0, Math.round(lat / HIST_STEP)))]++;
      }
    };
    c.sock.on('pyodide_other_player_action', (m) => onEvent('a', m.timestamp, m.frame_number));
    c.sock.on('p2p_state_sync', (m) => onEvent('h', m.sent_at, m.frame_number));
  }
  // join: player 0 then player 1 of every room; wait for every room_ready
  const readies = clients.map((c) => new Promise((resolve) => c.sock.once('room_ready', resolve)));
  for (let i = 0; i < clients.length; i += BATCH) {
    const res = await withTimeout(Promise.all(clients.slice(i, i + BATCH).filter((c) => c.seat === 0)
      .map((c) => c.sock.emitWithAck('join', { room: c.room, players: 2 }, 20000))), 30000, 'join');
    for (const r of res) if (!r.ok) throw new Error(`join refused: ${r.error}`);
  }
  for (let i = 0; i < clients.length; i += BATCH) {
    const res = await withTimeout(Promise.all(clients.slice(i, i + BATCH).filter((c) => c.seat === 1)
      .map((c) => c.sock.emitWithAck('join', { room: c.room, players: 2 }, 20000))), 30000, 'join');
    for (const r of res) if (!r.ok) throw new Error(`join refused: ${r.error}`);
  }
  await withTimeout(Promise.all(readies), 30000, 'room_ready');
  for (const c of clients) {
    c.sock.on('penalty', () => { st.penalized = (st.penalized || 0) + 1; });
    c.sock.on('disconnect', () => { st.disconnects = (st.disconnects || 0) + 1; });
  }

  const period = 1000 / fps;
  let timer = null;
  function tick() {
    const t = now();
    for (const c of clients) {
      let n = 0;
      while (c.next <= t && n < 3) { // at most 3 frames of catch-up per tick
        const lag = t - c.next;
        if (measuring && lag > st.sendLagMax) st.sendLagMax = lag;
        const ts = now();
        const f = c.frame++;
        c.sock.emit('pyodide_player_action', { player_id: c.seat, action: f % 5, frame_number: f, timestamp: ts, game_id: c.room });
        st.sent++;
        c.sent++;
        if (f % hashEvery === 0) {
          c.sock.emit('p2p_state_sync', { game_id: c.room, sender_id: c.seat, frame_number: f, state_hash: (f * 2654435761 >>> 0).toString(16), action_counts: null, sent_at: ts });
          st.sent++;
          c.sent++;
        }
        c.next += period;
        n++;
      }
      if (c.next <= t - period * 3) c.next = t; // fell far behind: do not burst
    }
    if (sending) timer = setTimeout(tick, 1);
  }

  parentPort.on('message', async (m) => {
    if (m.cmd === 'start') {
      const t0 = now();
      clients.forEach((c, i) => { c.next = t0 + (i * period * 0.618) % period; });
      sending = true;
      tick();
    } else if (m.cmd === 'measure') {
      measuring = true;
    } else if (m.cmd === 'stop') {
      measuring = false;
      sending = false;
      clearTimeout(timer);
      // drain: every client should receive what its peer sent
      const expected = () => clients.reduce((n, c, i) => n + clients[i ^ 1].sent, 0);
      const t0 = Date.now();
      while (st.received < expected() && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50));
      parentPort.postMessage({ cmd: 'result', st, expected: expected(), hist });
    } else if (m.cmd === 'close') {
      for (const c of clients) c.sock.close();
      parentPort.postMessage({ cmd: 'closed' });
    }
  });
  parentPort.postMessage({ cmd: 'ready' });
}

if (!isMainThread && workerData?.loadtestWorker) {
  runWorker(workerData).catch((e) => parentPort.postMessage({ cmd: 'error', message: e.message }));
}

// ---------------------------------------------------------------------------------------------
// main

function percentile(hist, total, q) {
  if (total === 0) return null;
  const want = Math.ceil(total * q);
  let acc = 0;
  for (let i = 0; i < hist.length; i++) {
    acc += hist[i];
    if (acc >= want) return Math.round(i * HIST_STEP * 100) / 100;
  }
  return HIST_MAX_MS;
}

async function main() {
  let o;
  try { o = parseArgs(process.argv.slice(2)); } catch (e) {
    console.error(`loadtest: ${e.message}`); process.exit(2);
  }
  if (o.help) {
    console.log('usage: scripts/loadtest [--rooms N] [--seconds S] [--processes 1|2] [--json] [--fps F] [--hash-every K] [--warmup S] [--sample S] [--workers W] [--client ws|socket.io]');
    return;
  }
  const say = (m) => { if (!o.json) console.log(`[loadtest] ${m}`); else console.error(`[loadtest] ${m}`); };
  const started = new Date();
  let redis = null;
  const servers = [];
  const workers = [];
  const cleanup = async () => {
    for (const w of workers) await w.terminate().catch(() => {});
    for (const s of servers) await s.stop().catch(() => {});
    if (redis) await redis.stop().catch(() => {});
  };
  process.on('SIGINT', () => { cleanup().then(() => process.exit(130)); });
  try {
    const args = ['--quiet', '--max-connections', '100000', '--max-connections-per-ip', '100000', '--max-rooms', '1000000'];
    if (o.serverArgs) args.push(...o.serverArgs);
    if (o.processes === 2) {
      redis = await startRedis();
      say(`redis-server on ${redis.url} (pid ${redis.pid})`);
      args.push('--redis', redis.url);
    }
    for (let i = 0; i < o.processes; i++) servers.push(await spawnServer(args, { nodeArgs: o.serverNodeArgs || [] }));
    say(`${o.processes} server process(es): ${servers.map((s) => `${s.url} (pid ${s.pid})`).join(', ')}`);
    const urls = servers.map((s) => s.url);
    const runId = Date.now().toString(36);

    // workers, each with a share of the rooms
    const shares = Array.from({ length: o.workers }, (_, k) => Math.floor(o.rooms / o.workers) + (k < o.rooms % o.workers ? 1 : 0));
    let firstRoom = 0;
    const results = [];
    for (const rooms of shares) {
      if (rooms === 0) continue;
      const w = new Worker(new URL(import.meta.url), { workerData: { loadtestWorker: true, urls, rooms, firstRoom, runId, fps: o.fps, hashEvery: o.hashEvery, client: o.client } });
      firstRoom += rooms;
      workers.push(w);
    }
    const waitMsg = (w, cmd, ms) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`worker: timeout waiting for ${cmd}`)), ms);
      const on = (m) => {
        if (m.cmd === 'error') { clearTimeout(t); w.off('message', on); reject(new Error(m.message)); }
        else if (m.cmd === cmd) { clearTimeout(t); w.off('message', on); resolve(m); }
      };
      w.on('message', on);
      w.once('error', (e) => { clearTimeout(t); reject(e); });
    });
    const tSetup = Date.now();
    await Promise.all(workers.map((w) => waitMsg(w, 'ready', 180000)));
    say(`${o.rooms} rooms, ${o.rooms * 2} clients connected and paired in ${((Date.now() - tSetup) / 1000).toFixed(1)} s`);

    const usage = () => servers.map((s) => procUsage(s.pid));
    const sum = (arr, k) => arr.reduce((n, u) => n + (u ? u[k] : 0), 0);
    const rssAtConnect = sum(usage(), 'rssMB');
    for (const w of workers) w.postMessage({ cmd: 'start' });
    say(`sending at ${o.fps} fps (+ a state hash every ${o.hashEvery} frames); warm-up ${o.warmup} s, then ${o.seconds} s measured`);
    await new Promise((r) => setTimeout(r, o.warmup * 1000));

    const eld = monitorEventLoopDelay({ resolution: 5 });
    eld.enable();
    const u0 = usage();
    const r0 = redis ? procUsage(redis.pid) : null;
    const lg0 = process.cpuUsage();
    const t0 = Date.now();
    for (const w of workers) w.postMessage({ cmd: 'measure' });
    const samples = [{ t: 0, rssMB: Math.round(sum(u0, 'rssMB') * 10) / 10 }];
    const end = t0 + o.seconds * 1000;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, Math.min(o.sample * 1000, end - Date.now())));
      const u = usage();
      samples.push({ t: Math.round((Date.now() - t0) / 100) / 10, rssMB: Math.round(sum(u, 'rssMB') * 10) / 10, cpuSeconds: Math.round((sum(u, 'cpuSeconds') - sum(u0, 'cpuSeconds')) * 100) / 100 });
      if (!o.json) say(`t=${samples.at(-1).t}s server RSS ${samples.at(-1).rssMB} MB, CPU ${samples.at(-1).cpuSeconds} s`);
    }
    const u1 = usage();
    const r1 = redis ? procUsage(redis.pid) : null;
    const lg1 = process.cpuUsage(lg0);
    const elapsed = (Date.now() - t0) / 1000;
    eld.disable();
    for (const w of workers) w.postMessage({ cmd: 'stop' });
    const parts = await Promise.all(workers.map((w) => waitMsg(w, 'result', 30000)));
    for (const w of workers) { w.postMessage({ cmd: 'close' }); await waitMsg(w, 'closed', 10000).catch(() => {}); }

    const hist = new Uint32Array(parts[0].hist.length);
    const st = { sent: 0, received: 0, receivedMeasured: 0, outOfOrder: 0, maxLatency: 0, sendLagMax: 0, expected: 0, penalized: 0, disconnects: 0 };
    for (const p of parts) {
      for (let i = 0; i < hist.length; i++) hist[i] += p.hist[i];
      for (const k of ['sent', 'received', 'receivedMeasured', 'outOfOrder', 'penalized', 'disconnects']) st[k] += p.st[k] || 0;
      st.expected += p.expected;
      st.maxLatency = Math.max(st.maxLatency, p.st.maxLatency);
      st.sendLagMax = Math.max(st.sendLagMax, p.st.sendLagMax);
    }
    results.push(st);
    const perProcess = servers.map((s, i) => ({
      pid: s.pid,
      rssStartMB: Math.round((u0[i]?.rssMB ?? 0) * 10) / 10,
      rssEndMB: Math.round((u1[i]?.rssMB ?? 0) * 10) / 10,
      cpuSeconds: Math.round(((u1[i]?.cpuSeconds ?? 0) - (u0[i]?.cpuSeconds ?? 0)) * 100) / 100,
    }));
    const cpuSeconds = Math.round((sum(u1, 'cpuSeconds') - sum(u0, 'cpuSeconds')) * 100) / 100;
    const out = {
      date: started.toISOString(),
      host: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version, loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100), nice: os.getPriority() },
      rooms: o.rooms,
      clients: o.rooms * 2,
      processes: o.processes,
      fps: o.fps,
      hashEvery: o.hashEvery,
      seconds: Math.round(elapsed * 10) / 10,
      warmupSeconds: o.warmup,
      eventsSent: st.sent,
      eventsReceived: st.received,
      lostEvents: st.expected - st.received,
      outOfOrder: st.outOfOrder,
      relayLatencyMs: { p50: percentile(hist, st.receivedMeasured, 0.5), p99: percentile(hist, st.receivedMeasured, 0.99), p999: percentile(hist, st.receivedMeasured, 0.999), max: Math.round(st.maxLatency * 100) / 100 },
      eventsPerSecond: Math.round(st.receivedMeasured / elapsed),
      rssAtConnectMB: Math.round(rssAtConnect * 10) / 10,
      rssStartMB: Math.round(sum(u0, 'rssMB') * 10) / 10,
      rssEndMB: Math.round(sum(u1, 'rssMB') * 10) / 10,
      cpuSeconds,
      serverCpuPercent: Math.round((cpuSeconds / elapsed) * 1000) / 10,
      perProcess,
      rssSamplesMB: samples,
      redis: redis ? { cpuSeconds: Math.round(((r1?.cpuSeconds ?? 0) - (r0?.cpuSeconds ?? 0)) * 100) / 100, rssEndMB: Math.round((r1?.rssMB ?? 0) * 10) / 10 } : null,
      loadGenerator: {
        client: o.client,
        workers: workers.length,
        cpuSeconds: Math.round(((lg1.user + lg1.system) / 1e6) * 100) / 100,
        maxSendLagMs: Math.round(st.sendLagMax * 10) / 10,
        mainEventLoopDelayP99Ms: Math.round(eld.percentile(99) / 1e4) / 100,
      },
      penalized: st.penalized,
      disconnects: st.disconnects,
    };
    out.serverLog = servers.flatMap((s, i) => s.lines.filter((l) => !l.startsWith('[server] rooms in Redis')).slice(-20).map((l) => `${i}: ${l}`));
    if (o.json) {
      console.log(JSON.stringify(out, null, 2));
    } else {
      console.log('');
      console.log(`load test ${out.date}: ${out.rooms} rooms / ${out.clients} clients, ${out.processes} process(es)${redis ? ' + Redis' : ''}, ${out.fps} fps + hash every ${out.hashEvery} frames, ${out.seconds} s measured`);
      console.log(`  relayed events/s        ${out.eventsPerSecond}`);
      console.log(`  relay latency p50 / p99 ${out.relayLatencyMs.p50} / ${out.relayLatencyMs.p99} ms (p99.9 ${out.relayLatencyMs.p999}, max ${out.relayLatencyMs.max})`);
      console.log(`  events lost             ${out.lostEvents} of ${out.eventsSent} (out of order: ${out.outOfOrder})`);
      console.log(`  server RSS start / end  ${out.rssStartMB} / ${out.rssEndMB} MB (at connect ${out.rssAtConnectMB} MB)`);
      console.log(`  server CPU              ${out.cpuSeconds} s (${out.serverCpuPercent}% of one core)${perProcess.length > 1 ? `; per process ${perProcess.map((p) => p.cpuSeconds).join(' / ')} s` : ''}`);
      if (out.redis) console.log(`  redis-server            ${out.redis.cpuSeconds} s CPU, RSS ${out.redis.rssEndMB} MB`);
      console.log(`  load generator          ${out.loadGenerator.cpuSeconds} s CPU (${out.loadGenerator.workers} worker(s), ${out.loadGenerator.client} clients), max send lag ${out.loadGenerator.maxSendLagMs} ms`);
      if (out.serverLog.length) console.log(`  server log (last lines)\n    ${out.serverLog.join('\n    ')}`);
      console.log(`  machine load average    ${out.host.loadavg.join(' ')} (${out.host.cpus} CPUs)${out.host.nice ? `, run at nice ${out.host.nice}` : ''}`);
    }
    await cleanup();
    return out;
  } catch (e) {
    await cleanup();
    console.error(`loadtest: ${e.stack || e.message}`);
    process.exit(1);
  }
}

if (isMainThread) {
  const isMain = process.argv[1] && new URL(import.meta.url).pathname === (await import('node:fs')).realpathSync(process.argv[1]);
  if (isMain) await main();
}
