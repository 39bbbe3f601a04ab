// Types for web/frame_loop.js.
import type { StepOutcome } from './session.js';

export interface FrameLoopClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

export interface FrameLoop {
  stop(): void;
  readonly steps: number;
  readonly running: boolean;
}

/** One session.step() per frame, by deadline, applying step()'s pacingMs (time sync). */
export function startFrameLoop(o: {
  session: { step(action: number): Promise<StepOutcome>; finished?: boolean };
  fps?: number;
  action: () => number;
  onFrame?: (result: StepOutcome) => void;
  onError?: (error: unknown) => void;
  pacing?: boolean;
  clock?: FrameLoopClock;
  startDelayMs?: number;
}): FrameLoop;
