#!/usr/bin/env node
// demo-cli.mjs — the main job: one simulated multi-peer session over the NetSim, every peer running
// the real p2psync .wasm engine (web/sim_session.js). Normally started through scripts/demo, which
// first runs scripts/setup and scripts/build wasm.
//
//   node web/demo-cli.mjs [options]
//     --players N            2..4 (2)
//     --profile NAME         lan | wifi | mobile | bad | hostile (wifi)
//     --frames N             the most frames of one episode: it is truncated there (900)
//     --episodes N           episodes to play (1); each starts after the previous end is synced
//     --end-on-score K       the env ends an episode when a player's score reaches K (0: never)
//     --fps N                (30)
//     --seed S               number or string (1)
//     --env js|pyodide       the JS grid game or the Python gridworld in Pyodide (js)
//     --input-delay N|auto   engine inputDelay (engine default 2); auto: agreed per episode from the link
//     --cut-p2p-at F         close every P2P channel once every peer executed F frames
//     --restore-p2p-at F     reopen them once every peer executed F frames
//     --stall-peer P:MS@F    peer P does not tick for MS ms (virtual) after its frame F
//     --corrupt-at F         corrupt one peer's env right after it steps frame F
//     --corrupt-peer P       the peer to corrupt (1)
//     --desync-policy report|resync   after a desync: report it (default), or agree on one peer's
//                            state and load it by state transfer
//     --rejoin-peer P@F[:MS] peer P's page is gone (reloaded) once it executed F frames and comes back
//                            MS ms later (3000): it rejoins by state transfer
//     --sync-test K          sync-test mode with checkDistance K
//     --nondeterministic     the deliberately nondeterministic Python env (needs --env pyodide)
//     --json                 print exactly one JSON object (the session result) on stdout
//     --dump-traffic DIR     also write a bounded sample of received packets to DIR (fuzz corpus seeds)
//     --data-out DIR         write each peer's research data: DIR/peer<i>.csv (the columns every peer
//                            shares: diff them) and DIR/peer<i>.local.csv (its own experience:
//                            predictions, rollbacks, wall clock)
//     --serve                run the local server instead (node web/server.mjs; --host/--port pass through)
//     --help
// Exit status: 0 healthy session, 1 unhealthy, 2 bad arguments.
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { PROFILES } from './netsim.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BROADCAST_SAMPLE = 10;   // print at least every 10th "[P2P Sync] ... broadcast" line per player
const MAX_BROADCAST_LINES = 12;
const MAX_OTHER_LINES = 40;

const USAGE = `usage: scripts/demo [--players N] [--profile lan|wifi|mobile|bad|hostile] [--frames N] [--fps N]
                   [--episodes N] [--end-on-score K]
                   [--seed S] [--env js|pyodide] [--input-delay N|auto] [--cut-p2p-at F] [--restore-p2p-at F]
                   [--stall-peer P:MS@F] [--corrupt-at F] [--corrupt-peer P] [--desync-policy report|resync]
                   [--rejoin-peer P@F[:MS]] [--sync-test K]
                   [--nondeterministic] [--json] [--dump-traffic DIR] [--data-out DIR] | --serve [--host H] [--port P]
exit status: 0 healthy, 1 unhealthy, 2 bad arguments`;

class ArgError extends Error {}

function intArg(v, name, lo, hi) {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v)) throw new ArgError(`--${name} needs an integer (got '${v}')`);
  const n = Number(v);
  if (n < lo || n > hi) throw new ArgError(`--${name} must be in ${lo}..${hi} (got ${n})`);
  return n;
}

function parse(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        players: { type: 'string' }, profile: { type: 'string' }, frames: { type: 'string' }, fps: { type: 'string' },
        episodes: { type: 'string' }, 'end-on-score': { type: 'string' },
        seed: { type: 'string' }, env: { type: 'string' }, 'input-delay': { type: 'string' },
        'cut-p2p-at': { type: 'string' }, 'restore-p2p-at': { type: 'string' }, 'stall-peer': { type: 'string' },
        'corrupt-at': { type: 'string' }, 'corrupt-peer': { type: 'string' }, 'sync-test': { type: 'string' },
        'desync-policy': { type: 'string' }, 'rejoin-peer': { type: 'string' },
        nondeterministic: { type: 'boolean' }, json: { type: 'boolean' }, serve: { type: 'boolean' },
        'dump-traffic': { type: 'string' }, 'data-out': { type: 'string' },
        host: { type: 'string' }, port: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new ArgError(e.message);
  }
  if (values.help) return { help: true };
  if (values.serve) return { serve: true, host: values.host, port: values.port };
  if (values.host !== undefined || values.port !== undefined) throw new ArgError('--host/--port only go with --serve');
  const o = {};
  o.players = intArg(values.players, 'players', 2, 4) ?? 2;
  o.profile = values.profile ?? 'wifi';
  if (!PROFILES[o.profile]) throw new ArgError(`--profile must be one of ${Object.keys(PROFILES).join(', ')} (got '${o.profile}')`);
  o.frames = intArg(values.frames, 'frames', 1, 1_000_000) ?? 900;
  o.fps = intArg(values.fps, 'fps', 1, 240) ?? 30;
  o.episodes = intArg(values.episodes, 'episodes', 1, 1000) ?? 1;
  o.endOnScore = intArg(values['end-on-score'], 'end-on-score', 0, 1_000_000) ?? 0;
  if (values.seed !== undefined) o.seed = /^\d+$/.test(values.seed) ? Number(values.seed) : values.seed;
  else o.seed = 1;
  o.env = values.env ?? 'js';
  if (o.env !== 'js' && o.env !== 'pyodide') throw new ArgError(`--env must be js or pyodide (got '${o.env}')`);
  o.inputDelay = values['input-delay'] === 'auto' ? 'auto' : intArg(values['input-delay'], 'input-delay', 0, 30);
  o.cutP2PAt = intArg(values['cut-p2p-at'], 'cut-p2p-at', 0, 1_000_000);
  o.restoreP2PAt = intArg(values['restore-p2p-at'], 'restore-p2p-at', 0, 1_000_000);
  if (o.restoreP2PAt !== undefined && o.cutP2PAt === undefined) throw new ArgError('--restore-p2p-at needs --cut-p2p-at');
  if (o.restoreP2PAt !== undefined && o.restoreP2PAt <= o.cutP2PAt) throw new ArgError('--restore-p2p-at must be after --cut-p2p-at');
  if (values['stall-peer'] !== undefined) {
    const m = /^(\d+):(\d+)@(\d+)$/.exec(values['stall-peer']);
    if (!m) throw new ArgError(`--stall-peer needs P:MS@F, e.g. 1:2000@300 (got '${values['stall-peer']}')`);
    o.stallPeer = { peer: Number(m[1]), ms: Number(m[2]), atFrame: Number(m[3]) };
    if (o.stallPeer.ms > 600000) throw new ArgError('--stall-peer: MS must be at most 600000');
    if (o.stallPeer.peer >= o.players) throw new ArgError(`--stall-peer: peer ${o.stallPeer.peer} does not exist with ${o.players} players`);
  }
  o.corruptAt = intArg(values['corrupt-at'], 'corrupt-at', 0, 1_000_000);
  o.corruptPeer = intArg(values['corrupt-peer'], 'corrupt-peer', 0, 3);
  if (o.corruptPeer !== undefined && o.corruptPeer >= o.players) throw new ArgError(`--corrupt-peer: peer ${o.corruptPeer} does not exist with ${o.players} players`);
  if (o.corruptPeer !== undefined && o.corruptAt === undefined) throw new ArgError('--corrupt-peer needs --corrupt-at');
  if (o.corruptAt !== undefined && o.corruptAt >= o.frames) throw new ArgError('--corrupt-at must be below --frames');
  if (values['desync-policy'] !== undefined) {
    if (values['desync-policy'] !== 'report' && values['desync-policy'] !== 'resync') throw new ArgError("--desync-policy must be 'report' or 'resync'");
    o.desyncPolicy = values['desync-policy'];
  }
  if (values['rejoin-peer'] !== undefined) {
    const m = /^(\d+)@(\d+)(?::(\d+))?$/.exec(values['rejoin-peer']);
    if (!m) throw new ArgError(`--rejoin-peer needs P@F or P@F:MS, e.g. 1@300 (got '${values['rejoin-peer']}')`);
    o.rejoinPeer = { peer: Number(m[1]), atFrame: Number(m[2]), downMs: m[3] === undefined ? 3000 : Number(m[3]) };
    if (o.rejoinPeer.peer >= o.players) throw new ArgError(`--rejoin-peer: peer ${o.rejoinPeer.peer} does not exist with ${o.players} players`);
    if (o.rejoinPeer.atFrame < 1) throw new ArgError('--rejoin-peer: F must be at least 1');
    if (o.rejoinPeer.downMs > 600000) throw new ArgError('--rejoin-peer: MS must be at most 600000');
    if (o.env === 'pyodide') throw new ArgError('--rejoin-peer needs --env js');
  }
  o.syncTest = intArg(values['sync-test'], 'sync-test', 1, 60);
  o.nondeterministic = !!values.nondeterministic;
  if (o.nondeterministic && o.env !== 'pyodide') throw new ArgError('--nondeterministic needs --env pyodide');
  o.json = !!values.json;
  if (values['dump-traffic'] !== undefined) {
    if (!values['dump-traffic']) throw new ArgError('--dump-traffic needs a directory');
    o.dumpTraffic = values['dump-traffic'];
  }
  if (values['data-out'] !== undefined) {
    if (!values['data-out']) throw new ArgError('--data-out needs a directory');
    o.dataOut = values['data-out'];
  }
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

function serve({ host, port }) {
  const args = [path.join(HERE, 'server.mjs')];
  if (host) args.push('--host', host);
  if (port) args.push('--port', port);
  process.stderr.write(`[demo] starting the local server: node ${path.relative(process.cwd(), args[0])}${host ? ` --host ${host}` : ''}${port ? ` --port ${port}` : ''} (it prints its URL)\n`);
  const child = spawn(process.execPath, args, { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 0 : 1)));
}

function fmt(n, d = 0) { return n == null ? 'n/a' : Number(n).toFixed(d); }

function table(rows) {
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n');
}

async function main() {
  let o;
  try {
    o = parse(process.argv.slice(2));
  } catch (e) {
    if (e instanceof ArgError) {
      process.stderr.write(`demo: ${e.message}\n${USAGE}\n`);
      process.exit(2);
    }
    throw e;
  }
  if (o.help) { process.stdout.write(`${USAGE}\n`); return 0; }
  if (o.serve) { serve(o); return null; }

  const json = o.json;
  delete o.json;
  const out = (s) => process.stdout.write(`${s}\n`);
  if (json) {
    // stdout carries exactly one JSON object: route any library chatter (Pyodide, Emscripten) to stderr
    console.log = (...a) => console.error(...a);
    console.info = (...a) => console.error(...a);
  }
  const tty = !!process.stderr.isTTY;
  let broadcastSeen = 0, broadcastPrinted = 0, otherPrinted = 0, otherSuppressed = 0;
  const perPlayerSeen = {};
  let broadcastCapped = false;
  // spread the sampled lines over the whole run (a hash broadcast every 5 frames per player)
  const stride = Math.max(BROADCAST_SAMPLE, Math.ceil(o.frames / 5 / Math.max(1, Math.floor(MAX_BROADCAST_LINES / o.players))));
  const opts = {
    ...o,
    onLog: json ? undefined : (line) => {
      if (line.startsWith('[P2P Sync]')) {
        broadcastSeen++;
        const who = /Player (\d+)/.exec(line)?.[1] ?? '?';
        const k = (perPlayerSeen[who] = (perPlayerSeen[who] || 0) + 1);
        if ((k - 1) % stride === 0 && broadcastPrinted >= MAX_BROADCAST_LINES) broadcastCapped = true;
        else if ((k - 1) % stride === 0) {
          broadcastPrinted++;
          clearProgress();
          out(line);
        }
      } else if (otherPrinted < MAX_OTHER_LINES) {
        otherPrinted++;
        clearProgress();
        out(line);
      } else otherSuppressed++;
    },
    onProgress: (p) => {
      const pct = Math.floor((100 * p.frame) / p.frames);
      if (!tty && !p.done) { // not a terminal: one line per quarter
        const q = Math.floor(pct / 25);
        if (q <= lastQuarter) return;
        lastQuarter = q;
      }
      const line = `[demo] frame ${p.frame}/${p.frames} (${pct}%)  virtual ${(p.virtualMs / 1000).toFixed(1)}s  wall ${(p.wallMs / 1000).toFixed(1)}s`;
      if (tty) process.stderr.write(`\r${line}\x1b[K`);
      else if (!p.done) process.stderr.write(`${line}\n`);
      progressShown = tty;
    },
  };
  let progressShown = false;
  let lastQuarter = -1;
  function clearProgress() {
    if (progressShown) { process.stderr.write('\r\x1b[K'); progressShown = false; }
  }

  const ends = o.endOnScore > 0 ? `ending at score ${o.endOnScore} or after ${o.frames} frames` : `of ${o.frames} frames`;
  process.stderr.write(`[demo] session: ${o.players} players, profile ${o.profile}, ${o.episodes} episode(s) ${ends} @ ${o.fps} fps, seed ${o.seed}, env ${o.env}${o.nondeterministic ? ' (nondeterministic)' : ''} — every peer runs build/wasm/p2psync.wasm over the network simulator (virtual time)\n`);
  let r;
  try {
    const { runSession } = await import('./sim_session.js');
    r = await runSession(opts);
  } catch (e) {
    clearProgress();
    process.stderr.write(`demo: the session could not run: ${e && e.stack ? e.stack : e}\n`);
    return 1;
  }
  if (tty) process.stderr.write('\r\x1b[K');

  if (json) {
    // wait for the write: a pipe may take a large object in several chunks
    await new Promise((resolve) => process.stdout.write(`${JSON.stringify(r)}\n`, resolve));
    return r.healthy ? 0 : 1;
  }

  if (broadcastSeen > broadcastPrinted) {
    out(`(hash broadcast lines sampled: printed ${broadcastPrinted} of ${broadcastSeen}, every ${stride}th per player${broadcastCapped ? `, capped at ${MAX_BROADCAST_LINES}` : ''})`);
  }
  if (otherSuppressed) out(`(${otherSuppressed} further event lines not printed)`);
  out('');
  r.episodeSummaries.forEach((s, i) => out(`Player ${i}: ${s}`));
  out('');
  const fb = r.fallback.length
    ? r.fallback.map((f) => `P${f.peer}→P${f.remotePeer} @${f.frame} (${f.reason})`).join(', ')
    : 'none';
  const desync = r.desyncs
    ? `${r.desyncs} (first at frame ${Math.min(...r.desyncEvents.map((d) => d.frame))})`
    : '0';
  const same = (a) => a.every((x) => x === a[0]);
  const rows = [
    ['frames', `executed ${r.framesRun.join('/')} per peer (confirmed up to ${r.confirmedFrames.join('/')}); virtual ${fmt(r.virtualMs / 1000, 1)}s, wall ${fmt(r.wallMs / 1000, 1)}s`],
    ...r.episodes.map((e) => [`episode ${e.index}`,
      `${same(e.episodeEndFramesByPeer) ? `ended at episode frame ${e.episodeEndFramesByPeer[0]} on every peer` : `ENDED ON DIFFERENT FRAMES ${e.episodeEndFramesByPeer.join('/')}`}` +
      `${e.truncated[0] ? ' (truncated)' : ''}; final state ${same(e.finalStateHashes) ? `all ${e.finalStateHashes[0]}` : e.finalStateHashes.join(' ')}`]),
    ['action logs', `${r.actionLogsIdentical ? 'identical' : 'DIFFERENT'} over ${r.comparedFrames} confirmed frames`],
    ['research data', r.episodes.every((e) => same(e.dataDigestByPeer)) ? `equal on every peer (${r.episodes.map((e) => `${e.rowsByPeer[0]} rows`).join(', ')})` : 'DIFFERENT between peers'],
    ['desyncs', desync],
    ['rollbacks', `${r.rollbacks.count} (per peer ${r.rollbacks.perPeer.join('/')}; p99 depth ${r.rollbacks.p99Frames}, max ${r.rollbacks.maxFrames} frames)`],
    ['input delay', `${r.inputDelayByEpisode.join(', ')} frame(s) by episode${o.inputDelay === 'auto' ? ' (auto: agreed by every peer)' : ''}`],
    ['frame advantage', r.frameAdvantage.flat().filter((a) => a.peer < a.remotePeer)
      .map((a) => `P${a.peer}-P${a.remotePeer} mean ${fmt(a.mean, 2)}, p95 ${fmt(a.p95, 2)}, >1 frame ${fmt(100 * a.shareBeyondOne, 1)}%`).join('; ') || 'n/a'],
    ['stalls', `${r.stalls} ticks (waits ${r.waits})`],
    ['P2P ratio', r.p2pRatio == null ? 'n/a' : `${fmt(100 * r.p2pRatio, 1)}% of received inputs came by P2P first`],
    ['fallback', fb],
  ];
  if (r.rejoin) {
    const g = r.rejoin.gapsByPeer.map((gs) => gs.find((x) => x.peer === r.rejoin.peer));
    const rec = r.rejoin.recovered.reduce((a, x) => a + x.rows, 0);
    rows.push(['rejoin', `player ${r.rejoin.peer}: back at frame ${g[r.rejoin.peer]?.frame ?? '?'} after ${g.find((x, i) => x && i !== r.rejoin.peer)?.downMs ?? '?'} ms away; ` +
      `gap in the data of ${g.filter(Boolean).length}/${g.length} peers; ${rec} rows recovered; logs compared from frame ${r.rejoin.logsComparedFrom}`]);
  }
  if (r.resync) {
    // the rule as the peers applied it (the source may record 'requested' instead)
    const all = r.resync.byPeer.map((rs) => rs[0]).filter(Boolean);
    const first = all.find((x) => x.reason !== 'requested') ?? all[0];
    const recorded = r.resync.byPeer.filter((rs) => rs.length > 0).length;
    rows.push(['resync', first
      ? `at hash frame ${first.frame}: the state of player ${first.source} (${first.reason}), loaded by player(s) ${r.resync.loadedBy.join(', ') || 'none'}; recorded in the data of ${recorded}/${r.resync.byPeer.length} peers`
      : 'none (no desync to recover from)']);
  }
  if (r.dataFiles) rows.push(['data files', r.dataFiles.join(' ')]);
  if (r.nondeterminism.length) rows.push(['nondeterminism', r.nondeterminism.map((n) => `P${n.peer} frame ${n.frame} (detected at ${n.detectedAtFrame})`).join(', ')]);
  out(`Verdict (${r.players} players, ${r.profile}, seed ${r.seed}, env ${r.env}):`);
  out(table(rows));
  out(r.healthy ? 'HEALTHY' : `NOT HEALTHY: ${r.verdict.reasons.join('; ')}`);
  return r.healthy ? 0 : 1;
}

// Exit explicitly: a loaded Pyodide may keep the event loop alive (stdout/stderr writes to
// files and pipes are synchronous on Linux, so nothing is lost).
main().then((code) => {
  if (code !== null && code !== undefined) process.exit(code);
}, (e) => {
  process.stderr.write(`demo: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
