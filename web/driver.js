// driver.js — the one JS frame driver: runs a SyncEngine plan (its ordered Load / Save / Advance
// requests) against an env adapter. P2PSyncSession, the simulator behind scripts/demo, the
// benchmarks and every node test that drives an engine use it; what a frame does is decided by
// the engine and executed here, nowhere else.
//
//   import { runPlan } from './driver.js';
//   const plan = engine.advance(now, localAction, botActions, bufferedAmount);
//   for (const m of plan.outgoing) send(m);
//   const ran = runPlan(engine, plan, env);          // a summary, or a Promise when env is async
//
// The env adapter (any method may return a Promise; then runPlan returns one):
//   step(actions, info) -> StepResult | boolean | void
//       actions: Uint8Array view (players then bots), valid during the call
//       info: {frame, episodeFrame, replay, predictedMask} (reused object, valid during the call)
//       StepResult: {terminated?, truncated?, done?, rewards?}; `true` = terminated. A step that
//       ends the episode makes the engine void the rest of the plan.
//       rewards: number[] per actor, or {actorIndex: number}; recorded by the engine.
//   getState() -> string | Uint8Array        the state before the next step
//   setState(state: string)                   restore a snapshot
//   replay?(actionsList, saveFlags, infos) -> {states, results}   optional batched replay:
//       steps every frame in order in one call; states[k] = the pre-step state of frame k when
//       saveFlags[k] (else null); results[k] = frame k's StepResult. It MUST stop after the first
//       frame whose step ends the episode (results may then be shorter than actionsList).
//
// Summary: {loads, saves, steps, replayed, cut, frames: [{frame, episodeFrame, actions: number[],
//   predictedMask, result}]} — `frames` are the new (non-replay) frames stepped, in order.

const isThenable = (v) => v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function';

const NOT_DONE = Object.freeze({ terminated: false, truncated: false, rewards: null });
const TERMINATED = Object.freeze({ terminated: true, truncated: false, rewards: null });

/** A StepResult in its normal form {terminated, truncated, rewards}. */
export function normalizeStepResult(r) {
  if (r === undefined || r === null || r === false) return NOT_DONE;
  if (r === true) return TERMINATED;
  if (typeof r !== 'object') return NOT_DONE;
  const terminated = !!(r.terminated ?? r.done);
  const truncated = !!r.truncated;
  const rewards = r.rewards ?? null;
  if (!terminated && !truncated && rewards === null) return NOT_DONE;
  return { terminated, truncated, rewards };
}

class PlanRun {
  constructor(engine, plan, env, opts) {
    this.REQ = engine.REQUEST;
    this.STEP = engine.STEP;
    this.engine = engine;
    this.plan = plan;
    this.env = env;
    this.onStep = opts.onStep || null;
    this.useReplay = opts.batchReplay !== false && typeof env.replay === 'function';
    this.n = plan.requests;
    this.i = 0;
    this.pending = null;       // the completion of the env call in flight
    this.preState = null;      // state of the Save just before an Advance
    this.info = { frame: 0, episodeFrame: 0, replay: false, predictedMask: 0 };
    this.summary = { loads: 0, saves: 0, steps: 0, replayed: 0, cut: false, frames: [] };
  }

  run() {
    while (this.i < this.n) {
      const v = this.start();
      if (isThenable(v)) return this.runAsync(v);
      this.complete(v);
    }
    return this.summary;
  }

  async runAsync(first) {
    this.complete(await first);
    while (this.i < this.n) {
      let v = this.start();
      if (isThenable(v)) v = await v;
      this.complete(v);
    }
    return this.summary;
  }

  // Starts request i: calls the env and returns what it returned (maybe a Promise).
  start() {
    const { plan, REQ } = this;
    const i = this.i;
    const kind = plan.kind(i);
    if (kind === REQ.LOAD) {
      const frame = plan.frameOf(i);
      const text = this.engine.snapshotText(frame);
      if (text === null) throw new Error(`runPlan: the engine holds no snapshot of frame ${frame} to load`);
      this.pending = 'load';
      return this.env.setState(text);
    }
    if (kind === REQ.SAVE) {
      this.pending = 'save';
      return this.env.getState();
    }
    if (kind === REQ.ADVANCE) {
      if (this.useReplay && plan.isReplay(i)) return this.startReplay();
      const info = this.info;
      info.frame = plan.frameOf(i);
      info.episodeFrame = plan.episodeFrameOf(i);
      info.replay = plan.isReplay(i);
      info.predictedMask = plan.predictedMaskOf(i);
      this.pending = 'step';
      this.actions = info.replay ? null : Array.from(plan.actionsOf(i));
      return this.env.step(plan.actionsOf(i), info);
    }
    throw new Error(`runPlan: unknown request kind ${kind}`);
  }

  complete(value) {
    const p = this.pending;
    this.pending = null;
    if (p === 'load') {
      this.summary.loads++;
      this.i++;
    } else if (p === 'save') {
      this.summary.saves++;
      this.i++;
      // Handed to the engine with the step of this frame (one call), unless no step follows.
      const next = this.i < this.n && this.plan.kind(this.i) === this.REQ.ADVANCE &&
        this.plan.frameOf(this.i) === this.plan.frameOf(this.i - 1);
      if (next && !(this.useReplay && this.plan.isReplay(this.i))) this.preState = value;
      else this.engine.saveSnapshot(this.plan.frameOf(this.i - 1), value);
    } else if (p === 'step') {
      const go = this.finishStep(this.info.frame, this.info.episodeFrame, this.info.replay, this.info.predictedMask, value, this.preState);
      this.preState = null;
      this.i++;
      if (!go) this.endPlan(this.i);
    } else if (p === 'replay') {
      this.completeReplay(value);
    }
  }

  // The engine voided the plan after request index `next - 1`.
  endPlan(next) {
    this.summary.cut = next < this.n;
    this.i = this.n;
  }

  // Reports one step to the engine. Returns whether the plan goes on.
  finishStep(frame, episodeFrame, replay, predictedMask, raw, preState) {
    const s = this.summary;
    const r = normalizeStepResult(raw);
    let flags = 0;
    if (r.terminated) flags |= this.STEP.TERMINATED;
    if (r.truncated) flags |= this.STEP.TRUNCATED;
    if (r.rewards) {
      const out = this.engine.stepRewards;
      out.fill(0);
      if (Array.isArray(r.rewards) || ArrayBuffer.isView(r.rewards)) {
        for (let a = 0; a < out.length && a < r.rewards.length; a++) out[a] = +r.rewards[a] || 0;
      } else {
        for (const k of Object.keys(r.rewards)) if (k >= 0 && k < out.length) out[k] = +r.rewards[k] || 0;
      }
      flags |= this.STEP.REWARDS;
    }
    s.steps++;
    if (replay) s.replayed++;
    else s.frames.push({ frame, episodeFrame, actions: this.actions, predictedMask, result: r });
    if (this.onStep) this.onStep(frame, r, replay);
    return this.engine.stepped(frame, flags, preState);
  }

  // A run of replayed frames (with their Saves) in one env.replay call.
  startReplay() {
    const { plan, REQ } = this;
    const frames = [], actions = [], flags = [], infos = [], at = [];
    let j = this.i;
    let save = false;
    for (; j < this.n; j++) {
      const k = plan.kind(j);
      if (k === REQ.SAVE) { save = true; continue; }
      if (k !== REQ.ADVANCE || !plan.isReplay(j)) break;
      const f = plan.frameOf(j);
      frames.push(f);
      at.push(j);
      actions.push(Array.from(plan.actionsOf(j)));
      flags.push(save);
      infos.push({ frame: f, episodeFrame: plan.episodeFrameOf(j), replay: true, predictedMask: plan.predictedMaskOf(j) });
      save = false;
    }
    // A trailing Save belongs to the first frame after the replay: leave it to the normal path.
    if (save) j--;
    this.batch = { frames, flags, infos, at, end: j };
    this.pending = 'replay';
    return this.env.replay(actions, flags, infos);
  }

  completeReplay(res) {
    const b = this.batch;
    this.batch = null;
    const states = (res && res.states) || [];
    const results = (res && res.results) || [];
    const n = b.frames.length;
    for (let k = 0; k < n; k++) {
      if (b.flags[k]) this.summary.saves++;
      if (k >= results.length) {
        const last = k > 0 ? normalizeStepResult(results[k - 1]) : NOT_DONE;
        if (last.terminated || last.truncated) break;
        throw new Error(`runPlan: env.replay returned ${results.length} results for ${n} frames without ending the episode`);
      }
      const info = b.infos[k];
      const go = this.finishStep(info.frame, info.episodeFrame, true, info.predictedMask, results[k], b.flags[k] ? states[k] ?? null : null);
      if (!go) {
        this.endPlan(b.at[k] + 1);
        return;
      }
    }
    this.i = b.end;
  }
}

/**
 * Runs `plan` (the engine's last advance()) against `env`. Returns the summary, or a Promise of
 * it when an env method returned a Promise. opts: {onStep(frame, result, replay), batchReplay
 * (default true: use env.replay when the env has it)}.
 */
export function runPlan(engine, plan, env, opts = {}) {
  return new PlanRun(engine, plan, env, opts).run();
}

export default runPlan;
