// sweep.mjs — netcode-quality sweeps over the simulator (scripts/sweep; not part of scripts/test):
//   fairness   wifi / mobile / bad, 2-4 players, N seeds: the largest share of a session's
//              rollbacks taken by one peer (goal: 2 players <= 60%, N players <= 1.2/N), the
//              frame advantage between every pair, total rollbacks, stalls and WAITs
//   delay      lan / wifi / mobile / bad, 2-4 players: fixed input delay 2 against 'auto' — the
//              delays chosen, rollbacks and stalls
//
//   node web/sweep.mjs [--only fairness,delay] [--seeds N] [--frames N] [--json [FILE]]
// Every run is a full scripts/demo session (web/sim_session.js runSession) and must be healthy.
import { loadP2PSync } from './p2psync.js';
import { runSession } from './sim_session.js';
import { createRng } from './netsim.js';

const FAIRNESS_PROFILES = ['wifi', 'mobile', 'bad'];
const DELAY_PROFILES = ['lan', 'wifi', 'mobile', 'bad'];
const PLAYERS = [2, 3, 4];

function parseArgs(argv) {
  const o = { only: new Set(['fairness', 'delay']), seeds: 8, frames: 3000, delayFrames: 1500, json: false, jsonFile: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--only') o.only = new Set(argv[++i].split(','));
    else if (a === '--seeds') o.seeds = Number(argv[++i]);
    else if (a === '--frames') o.frames = Number(argv[++i]);
    else if (a === '--delay-frames') o.delayFrames = Number(argv[++i]);
    else if (a === '--json') { o.json = true; if (argv[i + 1] && !argv[i + 1].startsWith('--')) o.jsonFile = argv[++i]; }
    else {
      console.error('usage: node web/sweep.mjs [--only fairness,delay] [--seeds N] [--frames N] [--delay-frames N] [--json [FILE]]');
      process.exit(2);
    }
  }
  return o;
}

/** The fairness bound of the goal: 60% for 2 players, 1.2/N for N players. */
export function fairnessBound(players) { return players === 2 ? 0.6 : 1.2 / players; }

/**
 * How likely a perfectly fair split — each of `total` rollbacks taken by a peer chosen by a fair
 * die — gives a largest share of at least `share` (Monte Carlo, seeded). A short session has few
 * rollbacks, and then chance alone makes one peer's share large: a small value here means the
 * split is not fair, a large one that the share is what fair dice give.
 */
export function fairSplitPValue(players, total, share, draws = 4000) {
  if (total <= 0) return 1;
  const rng = createRng(`fair/${players}/${total}`);
  const counts = new Array(players);
  let atLeast = 0;
  for (let d = 0; d < draws; d++) {
    counts.fill(0);
    for (let k = 0; k < total; k++) counts[Math.floor(rng() * players)]++;
    if (Math.max(...counts) / total >= share - 1e-12) atLeast++;
  }
  return atLeast / draws;
}

async function fairness(lib, o, log) {
  const rows = [];
  for (const profile of FAIRNESS_PROFILES) {
    for (const players of PLAYERS) {
      const row = { profile, players, seeds: o.seeds, frames: o.frames, bound: +fairnessBound(players).toFixed(3), worstShare: 0, worstSeed: null, sharesBySeed: [], fairPValueBySeed: [], totalRollbacks: 0, rollbacksBySeed: [], meanAbsAdvantage: 0, worstP95Advantage: 0, beyondOneShare: 0, stalls: 0, waits: 0, unhealthy: 0 };
      let advSum = 0, advN = 0, beyond = 0, beyondN = 0;
      for (let seed = 1; seed <= o.seeds; seed++) {
        const r = await runSession({ lib, profile, players, seed, frames: o.frames });
        if (!r.healthy) row.unhealthy++;
        const per = r.rollbacks.perPeer, sum = per.reduce((a, b) => a + b, 0);
        const share = sum > 0 ? Math.max(...per) / sum : 0;
        row.sharesBySeed.push(+share.toFixed(3));
        const pv = fairSplitPValue(players, sum, share);
        row.fairPValueBySeed.push(+pv.toFixed(3));
        row.rollbacksBySeed.push(per);
        if (share > row.worstShare) { row.worstShare = +share.toFixed(3); row.worstSeed = seed; }
        row.totalRollbacks += sum;
        row.stalls += r.stalls;
        row.waits += r.waits;
        for (const a of r.frameAdvantage.flat()) {
          advSum += Math.abs(a.mean); advN++;
          beyond += a.shareBeyondOne; beyondN++;
          row.worstP95Advantage = Math.max(row.worstP95Advantage, a.p95);
        }
      }
      row.meanAbsAdvantage = advN ? +(advSum / advN).toFixed(3) : 0;
      row.minFairPValue = Math.min(...row.fairPValueBySeed);
      row.beyondOneShare = beyondN ? +(beyond / beyondN).toFixed(4) : 0;
      rows.push(row);
      log(`fairness ${profile} ${players}p: worst share ${row.worstShare} (bound ${row.bound}), rollbacks ${row.totalRollbacks}, |advantage| ${row.meanAbsAdvantage}, stalls ${row.stalls}, waits ${row.waits}`);
    }
  }
  return rows;
}

async function delay(lib, o, log) {
  const rows = [];
  for (const profile of DELAY_PROFILES) {
    for (const players of PLAYERS) {
      const row = { profile, players, seeds: o.seeds, framesPerEpisode: o.delayFrames, episodes: 2 };
      for (const d of [2, 'auto']) {
        const cell = { rollbacks: 0, stalls: 0, waits: 0, delays: [], unhealthy: 0 };
        const seen = new Set();
        for (let seed = 1; seed <= o.seeds; seed++) {
          const r = await runSession({ lib, profile, players, seed, frames: o.delayFrames, episodes: 2, inputDelay: d });
          if (!r.healthy) cell.unhealthy++;
          cell.rollbacks += r.rollbacks.count;
          cell.stalls += r.stalls;
          cell.waits += r.waits;
          for (const x of r.inputDelayByEpisode) seen.add(x);
        }
        cell.delays = [...seen].sort((a, b) => a - b);
        row[d === 'auto' ? 'auto' : 'fixed2'] = cell;
      }
      rows.push(row);
      log(`delay ${profile} ${players}p: fixed 2 -> ${row.fixed2.rollbacks} rollbacks, ${row.fixed2.stalls} stalls; auto (${row.auto.delays.join('/')}) -> ${row.auto.rollbacks} rollbacks, ${row.auto.stalls} stalls`);
    }
  }
  return rows;
}

function table(rows, cols) {
  const widths = cols.map(([h, f]) => Math.max(h.length, ...rows.map((r) => String(f(r)).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join('  ');
  return [line(cols.map((c) => c[0])), ...rows.map((r) => line(cols.map(([, f]) => f(r))))].join('\n');
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const lib = await loadP2PSync();
  const log = (m) => process.stderr.write(`[sweep] ${m}\n`);
  const out = { date: new Date().toISOString().slice(0, 10), seeds: o.seeds };
  if (o.only.has('fairness')) out.fairness = await fairness(lib, o, log);
  if (o.only.has('delay')) out.delay = await delay(lib, o, log);
  const text = [];
  if (out.fairness) {
    text.push(`Fairness (${o.seeds} seeds x ${o.frames} frames; share = the largest share of a session's rollbacks taken by one peer;`);
    text.push('fair dice p = over the seeds, the smallest chance that rollbacks split by fair dice give so large a share)');
    text.push(table(out.fairness, [
      ['profile', (r) => r.profile], ['players', (r) => r.players], ['worst share', (r) => r.worstShare], ['bound', (r) => r.bound],
      ['ok', (r) => (r.worstShare <= r.bound ? 'yes' : 'NO')], ['fair dice p', (r) => r.minFairPValue], ['rollbacks', (r) => r.totalRollbacks], ['mean |adv|', (r) => r.meanAbsAdvantage],
      ['p95 adv', (r) => r.worstP95Advantage], ['>1 frame', (r) => `${(100 * r.beyondOneShare).toFixed(2)}%`], ['stalls', (r) => r.stalls],
      ['waits', (r) => r.waits], ['unhealthy', (r) => r.unhealthy],
    ]));
  }
  if (out.delay) {
    text.push('', `Input delay (${o.seeds} seeds x 2 episodes x ${o.delayFrames} frames): fixed 2 against auto`);
    text.push(table(out.delay, [
      ['profile', (r) => r.profile], ['players', (r) => r.players], ['auto delay', (r) => r.auto.delays.join('/')],
      ['rollbacks d=2', (r) => r.fixed2.rollbacks], ['rollbacks auto', (r) => r.auto.rollbacks], ['stalls d=2', (r) => r.fixed2.stalls],
      ['stalls auto', (r) => r.auto.stalls], ['unhealthy', (r) => r.fixed2.unhealthy + r.auto.unhealthy],
    ]));
  }
  if (o.json && !o.jsonFile) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  else {
    process.stdout.write(`${text.join('\n')}\n`);
    if (o.jsonFile) (await import('node:fs')).writeFileSync(o.jsonFile, `${JSON.stringify(out, null, 2)}\n`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
