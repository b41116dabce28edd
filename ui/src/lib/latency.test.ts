// Tests of the label latency marks: names, start times, and that paint waits for a frame.
import { describe, expect, it, vi } from "vitest";
import { COMMIT, PAINT, labelCommitted, labelPainted } from "./latency";

function fakeClock(now: number) {
  return { now: () => now, measure: vi.fn() };
}

describe("label latency", () => {
  it("measures the commit from the action's start to now", () => {
    const clock = fakeClock(12.5);
    labelCommitted(10, clock as unknown as Performance);
    expect(clock.measure).toHaveBeenCalledWith(COMMIT, { start: 10, end: 12.5 });
  });

  it("measures the paint only after a frame and a task", async () => {
    const clock = fakeClock(20);
    let frame: (() => void) | null = null;
    labelPainted(5, clock as unknown as Performance, (cb) => (frame = cb));
    expect(clock.measure).not.toHaveBeenCalled();
    expect(frame).not.toBeNull();
    frame!();
    expect(clock.measure).not.toHaveBeenCalled();
    await new Promise((r) => setTimeout(r, 0));
    expect(clock.measure).toHaveBeenCalledWith(PAINT, { start: 5, end: 20 });
  });

  it("never throws when the webview lacks User Timing", () => {
    const clock = { now: () => 1, measure: () => { throw new TypeError("no"); } };
    expect(() => labelCommitted(0, clock as unknown as Performance)).not.toThrow();
  });
});
