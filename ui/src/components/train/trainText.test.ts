import { describe, expect, it } from "vitest";
import type { RoundProgress } from "../../lib/types";
import { formatDuration, pillText, resultText, stageLabel } from "./trainText";

const p = (stage: string, done: number, total: number | null): RoundProgress => ({
  round: 3,
  stage,
  done,
  total,
  message: null,
  metrics: {},
  elapsedSeconds: 1,
  etaSeconds: null,
});

describe("training words", () => {
  it("names stages and passes unknown ones through", () => {
    expect(stageLabel("train")).toBe("training");
    expect(stageLabel("predict")).toBe("predicting the pool");
    expect(stageLabel("warmup")).toBe("warmup");
  });

  it("writes the pill text with a percentage when the total is known", () => {
    expect(pillText(3, p("train", 45, 100))).toBe("Training round 3 · training · 45%");
    expect(pillText(3, p("snapshot", 0, null))).toBe("Training round 3 · preparing");
    expect(pillText(null, null)).toBe("Training · starting");
  });

  it("formats durations", () => {
    expect(formatDuration(4.25)).toBe("4.3 s");
    expect(formatDuration(42)).toBe("42 s");
    expect(formatDuration(185)).toBe("3 min 05 s");
    expect(formatDuration(3720)).toBe("1 h 02 min");
    expect(formatDuration(null)).toBe("–");
  });

  it("says how a round ended", () => {
    const done = resultText({
      round: 4,
      summary: {
        round: 4,
        strategy: "unisal",
        trained: true,
        device: "cpu",
        labeled: 1200,
        queries: [1, 2, 3],
        toppedUp: 1,
        note: null,
        totalSeconds: 95,
        metrics: {},
      },
      cancelled: false,
      error: null,
    });
    expect(done).toBe("Round 4 done: 1,200 labeled, trained on cpu, 1 min 35 s, 3 patches queried (unisal), 1 topped up at random.");
    expect(resultText({ round: 2, summary: null, cancelled: true, error: null })).toMatch(/^Round cancelled/);
    expect(resultText({ round: 2, summary: null, cancelled: false, error: { code: "oom", message: "CUDA out of memory: lower the batch" } })).toBe(
      "Round failed: CUDA out of memory: lower the batch",
    );
  });
});
