import { beforeEach, describe, expect, it, vi } from "vitest";
import type { RoundFinished, RoundProgress } from "../types";

const invoke = vi.fn();
const handlers = new Map<string, (e: { payload: unknown }) => void>();
const listen = vi.fn(async (name: string, handler: (e: { payload: unknown }) => void) => {
  handlers.set(name, handler);
  return () => handlers.delete(name);
});
vi.mock("@tauri-apps/api/core", () => ({ invoke: (...args: unknown[]) => invoke(...args) }));
vi.mock("@tauri-apps/api/event", () => ({ listen: (...args: Parameters<typeof listen>) => listen(...args) }));

import {
  MAX_LOSS_POINTS,
  appendLoss,
  applyFinished,
  applyProgress,
  applyState,
  emptySeries,
  imagesPerSecondOf,
  initTraining,
  lossPoint,
  markStarted,
  resetTraining,
  training,
  type LossPoint,
} from "./training.svelte";

function progress(round: number, done: number, metrics: Record<string, number> = {}, stage = "train"): RoundProgress {
  return { round, stage, done, total: 100, message: null, metrics, elapsedSeconds: done, etaSeconds: 100 - done };
}

function point(i: number): LossPoint {
  return { iteration: i, total: i, sup: null, cps: null, con: null };
}

function finished(round: number): RoundFinished {
  return {
    round,
    summary: {
      round,
      strategy: "unisal",
      trained: true,
      device: "cpu",
      labeled: 40,
      queries: [1, 2],
      toppedUp: 0,
      note: null,
      totalSeconds: 12,
      metrics: {},
    },
    cancelled: false,
    error: null,
  };
}

describe("lossPoint", () => {
  it("reads the trainer's metric names and the short aliases", () => {
    const p = lossPoint(progress(1, 5, { loss: 2, supervised: 1, pseudo_a: 0.25, pseudo_b: 0.5, contrastive: 0.1, lr: 0.01 }));
    expect(p).toEqual({ iteration: 5, total: 2, sup: 1, cps: 0.75, con: 0.1 });
    const q = lossPoint(progress(1, 6, { loss: 3, loss_sup: 2, loss_cps: 0.5, loss_con: 0.2 }));
    expect(q).toEqual({ iteration: 6, total: 3, sup: 2, cps: 0.5, con: 0.2 });
  });

  it("is null for events without losses (validation, prediction) and drops non-finite values", () => {
    expect(lossPoint(progress(1, 10, { validation_accuracy: 0.8 }, "validate"))).toBeNull();
    expect(lossPoint(progress(1, 10, {}, "predict"))).toBeNull();
    expect(lossPoint(progress(1, 10, { loss: NaN, supervised: 1 }))?.total).toBeNull();
  });

  it("reads images/s under either name", () => {
    expect(imagesPerSecondOf(progress(1, 1, { images_per_s: 42 }))).toBe(42);
    expect(imagesPerSecondOf(progress(1, 1, { img_per_s: 7 }))).toBe(7);
    expect(imagesPerSecondOf(progress(1, 1, {}))).toBeNull();
  });
});

describe("appendLoss", () => {
  it("keeps every point below the limit", () => {
    let s = emptySeries();
    for (let i = 0; i < 10; i++) s = appendLoss(s, point(i), 16);
    expect(s.points.map((p) => p.iteration)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(s.stride).toBe(1);
  });

  it("thins evenly past the limit and always ends at the newest point", () => {
    let s = emptySeries();
    for (let i = 0; i < 1000; i++) {
      s = appendLoss(s, point(i), 16);
      expect(s.points.length).toBeLessThanOrEqual(17);
      expect(s.points[s.points.length - 1].iteration).toBe(i);
    }
    // Every kept point but the newest sits on the stride's grid, evenly spaced.
    const kept = s.points.slice(0, -1).map((p) => p.iteration);
    const gaps = new Set(kept.slice(1).map((v, i) => v - kept[i]));
    expect(gaps).toEqual(new Set([s.stride]));
    expect(kept[0]).toBe(0);
    expect(s.stride).toBeGreaterThan(1);
    expect(s.points.length).toBeGreaterThanOrEqual(8);
  });

  it("bounds the store's history at MAX_LOSS_POINTS", () => {
    let s = emptySeries();
    for (let i = 0; i < MAX_LOSS_POINTS * 3; i++) s = appendLoss(s, point(i));
    expect(s.points.length).toBeLessThanOrEqual(MAX_LOSS_POINTS + 1);
    expect(s.points.length).toBeGreaterThan(MAX_LOSS_POINTS / 2);
  });
});

describe("training store", () => {
  beforeEach(() => {
    resetTraining();
    invoke.mockReset();
    listen.mockClear();
    handlers.clear();
  });

  it("records progress, losses and rate, and starts a new history for a new round", () => {
    applyProgress(progress(2, 10, { loss: 1.5, supervised: 1, images_per_s: 30 }));
    applyProgress(progress(2, 20, { loss: 1.2, supervised: 0.9 }));
    expect(training.running).toBe(true);
    expect(training.round).toBe(2);
    expect(training.progress?.done).toBe(20);
    expect(training.losses.points.map((p) => p.total)).toEqual([1.5, 1.2]);
    expect(training.imagesPerSecond).toBe(30);
    applyProgress(progress(2, 20, { validation_accuracy: 0.9 }, "validate"));
    expect(training.losses.points).toHaveLength(2);
    applyProgress(progress(3, 10, { loss: 2 }));
    expect(training.round).toBe(3);
    expect(training.losses.points.map((p) => p.total)).toEqual([2]);
    expect(training.imagesPerSecond).toBeNull();
  });

  it("a round end stops running, keeps the outcome and counts ends", () => {
    applyProgress(progress(4, 50, { loss: 1 }));
    applyFinished(finished(4));
    expect(training.running).toBe(false);
    expect(training.finished?.summary?.round).toBe(4);
    expect(training.finishedCount).toBe(1);
    expect(training.losses.points).toHaveLength(1);
  });

  it("markStarted clears the last outcome but not events that already arrived for that round", () => {
    applyFinished({ round: 2, summary: null, cancelled: true, error: null });
    markStarted(5);
    expect(training.running).toBe(true);
    expect(training.finished).toBeNull();
    expect(training.round).toBe(5);
    applyProgress(progress(6, 10, { loss: 1 }));
    markStarted(6);
    expect(training.losses.points).toHaveLength(1);
    expect(training.progress?.done).toBe(10);
  });

  it("a round that ends before its start reply arrives stays ended (the quick initial draw)", () => {
    applyFinished({ round: 3, summary: null, cancelled: false, error: null });
    markStarted(3);
    expect(training.running).toBe(false);
    expect(training.finished?.round).toBe(3);
    markStarted(4);
    expect(training.running).toBe(true);
  });

  it("applyState picks up a round that runs, and does not replay an older state over newer events", () => {
    applyState({ running: true, progress: progress(7, 30, { loss: 0.7 }) });
    expect(training.ready).toBe(true);
    expect(training.running).toBe(true);
    expect(training.progress?.done).toBe(30);
    applyProgress(progress(7, 40, { loss: 0.6 }));
    applyState({ running: true, progress: progress(7, 30, { loss: 0.7 }) });
    expect(training.progress?.done).toBe(40);
    expect(training.losses.points).toHaveLength(2);
    applyState({ running: false, progress: null });
    expect(training.running).toBe(false);
  });

  it("initTraining subscribes once, loads the state, and follows the events", async () => {
    invoke.mockResolvedValue({ running: true, progress: progress(8, 5, { loss: 3 }) });
    await Promise.all([initTraining(), initTraining()]);
    await initTraining();
    expect(listen).toHaveBeenCalledTimes(2);
    expect(invoke).toHaveBeenCalledTimes(1);
    expect(invoke).toHaveBeenCalledWith("training_state", undefined);
    expect(training.running).toBe(true);
    handlers.get("round-progress")!({ payload: progress(8, 6, { loss: 2.5 }) });
    expect(training.progress?.done).toBe(6);
    handlers.get("round-finished")!({ payload: finished(8) });
    expect(training.running).toBe(false);
    expect(training.finishedCount).toBe(1);
  });

  it("a failed initTraining may be retried", async () => {
    invoke.mockRejectedValueOnce({ code: "no_project", message: "no project" });
    await expect(initTraining()).rejects.toMatchObject({ code: "no_project" });
    await Promise.resolve();
    invoke.mockResolvedValue({ running: false, progress: null });
    await initTraining();
    expect(training.ready).toBe(true);
    // The events were subscribed once: the retry loaded the state only.
    expect(listen).toHaveBeenCalledTimes(2);
  });
});
