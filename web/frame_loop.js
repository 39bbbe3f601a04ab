// frame_loop.js — a page's frame loop for P2PSyncSession: one session.step() per frame, scheduled
// by deadline (not setInterval) so that the engine's pacing hint is applied.
//
// Time sync (wasm/src/time_sync.hpp) balances the frame advantage between the peers with a small
// stretch (> 0) or shrink (< 0) of this page's next frame interval: step() returns it as
// `pacingMs` (at most 10% of a frame). A loop that adds it to its next deadline keeps the peers
// within a fraction of a frame of each other with no visible change of speed; a loop that ignores
// it (a plain setInterval) still works — the engine then corrects a lead of more than a frame with
// an occasional WAIT frame, which a participant may notice as a stutter.
//
//   import { startFrameLoop } from './frame_loop.js';
//   const loop = startFrameLoop({ session, fps: 30, action: () => currentKey(), onFrame: render });
//   ...
//   loop.stop();
//
// One step at a time: the next is scheduled when the previous one (an async env may replay) has
// finished. A step that ran late does not cause a burst of catch-up steps: the engine's own
// catch-up (several frames in one step) makes up for lost time.

const defaultClock = {
  now: () => (typeof performance !== 'undefined' ? performance.now() : Date.now()),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

/**
 * @param {object} o
 * @param {{step(action: number): Promise<object>, finished?: boolean}} o.session
 * @param {number} [o.fps=30]
 * @param {() => number} o.action                 the local action for this frame
 * @param {(result: object) => void} [o.onFrame]  after each step, with step()'s result
 * @param {(error: Error) => void} [o.onError]    a step threw: the loop stops
 * @param {boolean} [o.pacing=true]               apply the engine's pacing hint
 * @param {{now(): number, setTimeout: Function, clearTimeout: Function}} [o.clock]
 * @param {number} [o.startDelayMs=0]             the first step after this many ms
 * @returns {{stop(): void, readonly steps: number, readonly running: boolean}}
 */
export function startFrameLoop({ session, fps = 30, action, onFrame = null, onError = null, pacing = true, clock = defaultClock, startDelayMs = 0 }) {
  if (!session || typeof session.step !== 'function') throw new TypeError('startFrameLoop: session.step is required');
  if (typeof action !== 'function') throw new TypeError('startFrameLoop: action must be a function returning the local action');
  if (!(fps > 0)) throw new RangeError('startFrameLoop: fps must be > 0');
  const frameMs = 1000 / fps;
  let running = true, timer = null, steps = 0;
  let deadline = clock.now() + startDelayMs;

  const schedule = () => {
    if (!running) return;
    timer = clock.setTimeout(tick, Math.max(0, deadline - clock.now()));
  };
  const tick = async () => {
    timer = null;
    if (!running) return;
    if (session.finished) { running = false; return; }
    let result;
    try {
      result = await session.step(action());
    } catch (e) {
      running = false;
      if (onError) onError(e);
      else throw e;
      return;
    }
    steps++;
    if (onFrame) onFrame(result);
    const stretch = pacing && result && Number.isFinite(result.pacingMs) ? result.pacingMs : 0;
    deadline += frameMs + stretch;
    // Late by more than a frame (a busy tab, a long replay): restart the schedule from now.
    const now = clock.now();
    if (deadline < now - frameMs) deadline = now;
    schedule();
  };
  schedule();
  return {
    stop() {
      running = false;
      if (timer !== null) clock.clearTimeout(timer);
      timer = null;
    },
    get steps() { return steps; },
    get running() { return running; },
  };
}
