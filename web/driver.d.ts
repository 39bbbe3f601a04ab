// TypeScript declarations for web/driver.js, the one JS frame driver.
import type { Plan, SyncEngine } from './p2psync.js';

/** What an env's step() may return: `true` = terminated; an object; or nothing. */
export type StepReturn = void | boolean | {
  terminated?: boolean;
  truncated?: boolean;
  /** alias of terminated */
  done?: boolean;
  /** this step's reward per actor (players then bots), or {actorIndex: reward} */
  rewards?: ArrayLike<number> | Record<number, number>;
};

export interface StepInfo {
  frame: number;
  episodeFrame: number;
  /** a frame re-simulated after a rollback */
  replay: boolean;
  predictedMask: number;
}

export interface StepResult { terminated: boolean; truncated: boolean; rewards: ArrayLike<number> | Record<number, number> | null }

/** The env adapter a plan runs against. Any method may return a Promise (runPlan then does too). */
export interface EnvAdapter {
  /** Steps once (actions: a view valid during the call; info: a reused object). */
  step(actions: Uint8Array, info: StepInfo): StepReturn | Promise<StepReturn>;
  /** The state before the next step (JSON text, or bytes). */
  getState(): string | Uint8Array | Promise<string | Uint8Array>;
  /** Restores a snapshot. */
  setState(state: string): void | Promise<void>;
  /** Optional batched replay: every frame in order in one call; states[k] = the pre-step state of
   * frame k when saveFlags[k]; results[k] its step result. Stops after the first ending step. */
  replay?(actionsList: number[][], saveFlags: boolean[], infos: StepInfo[]):
    { states: (string | null)[]; results: StepReturn[] } | Promise<{ states: (string | null)[]; results: StepReturn[] }>;
  /** Optional: starts a new episode (SessionPeer calls it after each synced end). */
  reset?(...args: any[]): void | Promise<void>;
  /** Optional: cumulative rewards for the episode summary line. */
  rewards?(): object | Promise<object>;
}

export interface PlanSummary {
  loads: number;
  saves: number;
  steps: number;
  replayed: number;
  /** the engine voided the rest of the plan (a step ended the episode) */
  cut: boolean;
  /** the new (non-replay) frames stepped */
  frames: { frame: number; episodeFrame: number; actions: number[]; predictedMask: number; result: StepResult }[];
}

export interface RunPlanOptions {
  onStep?(frame: number, result: StepResult, replay: boolean): void;
  /** use env.replay for replays when the env has it (default true) */
  batchReplay?: boolean;
}

export declare function normalizeStepResult(r: StepReturn): StepResult;
export declare function runPlan(engine: SyncEngine, plan: Plan, env: EnvAdapter, opts?: RunPlanOptions): PlanSummary | Promise<PlanSummary>;
export default runPlan;
