// Label latency, recorded with the standard User Timing API so that a benchmark (benches/ui.rs, through
// WebDriver) or the browser's developer tools can read it: `unisal:label-commit` spans a label action from
// the key press or click to the reply that it is committed; `unisal:label-paint` to the first frame
// painted after it. Costs a few microseconds a label; the browser keeps a bounded buffer.

export const COMMIT = "unisal:label-commit";
export const PAINT = "unisal:label-paint";

type Clock = Pick<Performance, "now" | "measure">;

/** Records the commit of a label action that started at `start` (a `performance.now()` time). */
export function labelCommitted(start: number, clock: Clock = performance): void {
  measure(clock, COMMIT, start);
}

/** Records, after the next painted frame, the paint of a label action that started at `start`. */
export function labelPainted(
  start: number,
  clock: Clock = performance,
  frame: (cb: () => void) => void = (cb) => requestAnimationFrame(cb),
): void {
  // requestAnimationFrame runs just before the frame is painted; a task queued from it runs after.
  frame(() => setTimeout(() => measure(clock, PAINT, start), 0));
}

function measure(clock: Clock, name: string, start: number): void {
  try {
    clock.measure(name, { start, end: clock.now() });
  } catch {
    // A webview without User Timing level 3 records nothing; labeling is unaffected.
  }
}
