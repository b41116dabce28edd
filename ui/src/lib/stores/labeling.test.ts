// @vitest-environment jsdom
// Tests of the label store: selection movement, next unlabeled tile, commit-then-paint, the undo stack, counters.
import { describe, expect, it } from "vitest";
import { LabelingStore, moveIndex, nextUnlabeled, UndoStack, type LabelApi } from "./labeling.svelte";
import type { LabelOutcome, ProjectStatus, QueryBatch, ReviewRow } from "../types";

function row(id: number, label: number | null = null): ReviewRow {
  return { id, width: 64, height: 64, source: `/p/${id}.png`, group: null, label, unsure: false, prediction: null };
}

function batch(round: number, labels: (number | null)[], firstId = 1): QueryBatch {
  return {
    round,
    strategy: "unisal",
    items: labels.map((l, i) => ({ rank: i, reason: "disagreement", score: 0.5, row: row(firstId + i, l) })),
  };
}

function status(labeled: number): ProjectStatus {
  return { path: "/p.unisal", name: "p", patches: 10, labeled, unlabeled: 10 - labeled, rounds: 1, classes: [], imageKey: 1 };
}

/** A fake project: labels with a per-patch history, calls logged, each answer released by hand or at once. */
function fakeApi(initial: QueryBatch | null, opts: { manual?: boolean } = {}) {
  const labels = new Map<number, number | null>();
  const history = new Map<number, (number | null)[]>();
  const order: number[] = [];
  const calls: string[] = [];
  const unsure = new Map<number, boolean>();
  const waiting: (() => void)[] = [];
  let current = initial;
  for (const it of initial?.items ?? []) labels.set(it.row.id, it.row.label);
  const labeledCount = () => [...labels.values()].filter((l) => l !== null).length;
  const gate = () => (opts.manual ? new Promise<void>((r) => waiting.push(r)) : Promise.resolve());
  const change = (id: number, to: number | null): LabelOutcome => {
    const before = labels.get(id) ?? null;
    (history.get(id) ?? history.set(id, []).get(id)!).push(before);
    order.push(id);
    labels.set(id, to);
    return { patchId: id, before, after: to, status: status(labeledCount()) };
  };
  const api: LabelApi = {
    queryBatch: async (round) => {
      calls.push(`batch ${round}`);
      return current;
    },
    labelPatch: async (id, cls) => {
      calls.push(`label ${id} ${cls}`);
      await gate();
      if (id === 99) throw new Error("patch 99 is gone");
      return change(id, cls);
    },
    clearLabel: async (id) => {
      calls.push(`clear ${id}`);
      await gate();
      return change(id, null);
    },
    undoLabel: async (id) => {
      calls.push(`undo ${id}`);
      await gate();
      const target = id ?? order[order.length - 1];
      const h = target === undefined ? undefined : history.get(target);
      if (target === undefined || !h || h.length === 0) throw new Error("nothing to undo");
      const before = labels.get(target) ?? null;
      const prev = h.pop()!;
      order.splice(order.lastIndexOf(target), 1);
      labels.set(target, prev);
      return { patchId: target, before, after: prev, status: status(labeledCount()) };
    },
    setUnsure: async (id, on) => {
      calls.push(`unsure ${id} ${on}`);
      unsure.set(id, on);
      return on;
    },
  };
  return {
    api,
    calls,
    labels,
    release: () => waiting.shift()?.(),
    setBatch: (b: QueryBatch | null) => (current = b),
  };
}

describe("pure helpers", () => {
  it("moves in a grid and stops at the edges", () => {
    // 10 tiles in 4 columns: rows 0-3, 4-7, 8-9.
    expect(moveIndex(0, "left", 4, 10)).toBe(0);
    expect(moveIndex(0, "right", 4, 10)).toBe(1);
    expect(moveIndex(9, "right", 4, 10)).toBe(9);
    expect(moveIndex(5, "up", 4, 10)).toBe(1);
    expect(moveIndex(1, "up", 4, 10)).toBe(1);
    expect(moveIndex(1, "down", 4, 10)).toBe(5);
    expect(moveIndex(5, "down", 4, 10)).toBe(9);
    expect(moveIndex(6, "down", 4, 10)).toBe(6); // no tile below
    expect(moveIndex(3, "down", 0, 10)).toBe(4); // at least one column
    expect(moveIndex(42, "left", 4, 10)).toBe(8); // clamped first
    expect(moveIndex(0, "down", 4, 0)).toBe(0);
  });
  it("finds the next unlabeled tile after the given one, wrapping, skipping pending ones", () => {
    const t = (label: number | null, pending = false) => ({ label, pending });
    expect(nextUnlabeled([t(null), t(1), t(null)], 0)).toBe(2);
    expect(nextUnlabeled([t(null), t(1), t(1)], 1)).toBe(0);
    expect(nextUnlabeled([t(null), t(1), t(null, true)], 0)).toBeNull();
    expect(nextUnlabeled([t(null)], 0)).toBeNull();
    expect(nextUnlabeled([], 0)).toBeNull();
  });
  it("keeps a bounded undo stack, newest first out", () => {
    const u = new UndoStack(3);
    expect(u.pop()).toBeNull();
    for (const id of [1, 2, 3, 4]) u.push(id);
    expect(u.size).toBe(3);
    expect([u.pop(), u.pop(), u.pop(), u.pop()]).toEqual([4, 3, 2, null]);
  });
});

describe("LabelingStore", () => {
  it("loads the batch, counts and selects the first unlabeled tile", async () => {
    const f = fakeApi(batch(3, [5, null, null, 2]));
    const s = new LabelingStore(f.api);
    expect(s.loaded).toBe(false);
    await s.load();
    expect(s.loaded && s.hasBatch).toBe(true);
    expect(s.round).toBe(3);
    expect(s.tiles.map((t) => t.id)).toEqual([1, 2, 3, 4]);
    expect(s.batchLabeled).toBe(2);
    expect(s.batchRemaining).toBe(2);
    expect(s.selectedIndex).toBe(1);
    expect(s.tiles.map((t) => t.selected)).toEqual([false, true, false, false]);
  });

  it("knows when there is no batch", async () => {
    const s = new LabelingStore(fakeApi(null).api);
    await s.load();
    expect(s.loaded).toBe(true);
    expect(s.hasBatch).toBe(false);
    expect(s.tiles).toEqual([]);
    expect(await s.label(1)).toBeNull();
    expect(await s.toggleUnsure()).toBeNull();
  });

  it("paints a label only after it is committed, and moves on to the next unlabeled tile at once", async () => {
    const f = fakeApi(batch(1, [null, 7, null, null]), { manual: true });
    const s = new LabelingStore(f.api);
    s.setBatch(batch(1, [null, 7, null, null]));
    const done = s.label(4);
    expect(s.selectedIndex).toBe(2); // skips the labeled tile 2
    expect(s.tiles[0].label).toBeNull(); // not yet committed
    expect(s.tiles[0].pending).toBe(true);
    // A second label before the first commits goes to the newly selected tile, after the first.
    const second = s.label(5);
    expect(s.selectedIndex).toBe(3);
    await Promise.resolve();
    f.release();
    const outcome = await done;
    expect(outcome?.after).toBe(4);
    expect(s.tiles[0].label).toBe(4);
    expect(s.tiles[0].pending).toBe(false);
    expect(s.tiles[2].label).toBeNull();
    await Promise.resolve();
    f.release();
    await second;
    expect(s.tiles[2].label).toBe(5);
    expect(f.calls).toEqual(["label 1 4", "label 3 5"]);
    expect(s.batchLabeled).toBe(3);
    expect(s.batchRemaining).toBe(1);
    expect(outcome?.status.labeled).toBeGreaterThan(0);
  });

  it("returns the selection to a tile whose label failed", async () => {
    const b = batch(1, [null, null], 99);
    const s = new LabelingStore(fakeApi(b).api);
    s.setBatch(b);
    await expect(s.label(1)).rejects.toThrow(/gone/);
    expect(s.selectedIndex).toBe(0);
    expect(s.tiles[0].label).toBeNull();
    expect(s.tiles[0].pending).toBe(false);
    expect(s.undo.size).toBe(0);
  });

  it("undoes this session's changes newest first, then falls back to the project's newest", async () => {
    const b = batch(1, [null, null, null]);
    const f = fakeApi(b);
    const s = new LabelingStore(f.api);
    s.setBatch(b);
    await s.label(1); // tile 1 -> 1
    await s.label(2); // tile 2 -> 2
    s.select(0);
    await s.label(3); // tile 1 -> 3 (relabel)
    expect(s.tiles.map((t) => t.label)).toEqual([3, 2, null]);
    let o = await s.undoLast();
    expect(o.patchId).toBe(1);
    expect(s.tiles.map((t) => t.label)).toEqual([1, 2, null]);
    expect(s.selectedIndex).toBe(0);
    o = await s.undoLast();
    expect(o.patchId).toBe(2);
    expect(s.selectedIndex).toBe(1);
    o = await s.undoLast();
    expect(s.tiles.map((t) => t.label)).toEqual([null, null, null]);
    expect(f.calls.filter((c) => c.startsWith("undo"))).toEqual(["undo 1", "undo 2", "undo 1"]);
    await expect(s.undoLast()).rejects.toThrow(/nothing to undo/);
    expect(f.calls[f.calls.length - 1]).toBe("undo null");
  });

  it("keeps an undo whose call failed on the stack", async () => {
    const b = batch(1, [null]);
    const f = fakeApi(b);
    const failing: LabelApi = { ...f.api, undoLabel: async () => Promise.reject(new Error("disk full")) };
    const s = new LabelingStore(failing);
    s.setBatch(b);
    await s.label(1);
    await expect(s.undoLast()).rejects.toThrow(/disk full/);
    expect(s.undo.size).toBe(1);
  });

  it("clears a label (undoable) and ignores an unlabeled tile", async () => {
    const b = batch(1, [6, null]);
    const f = fakeApi(b);
    const s = new LabelingStore(f.api);
    s.setBatch(b);
    s.select(1);
    expect(await s.clear()).toBeNull();
    s.select(0);
    const o = await s.clear();
    expect(o?.after).toBeNull();
    expect(s.tiles[0].label).toBeNull();
    await s.undoLast();
    expect(s.tiles[0].label).toBe(6);
  });

  it("undo of the project's newest change outside the batch leaves the tiles alone", async () => {
    const b = batch(1, [null]);
    const outside: LabelApi = {
      ...fakeApi(b).api,
      undoLabel: async () => ({ patchId: 500, before: 1, after: null, status: status(0) }),
    };
    const s = new LabelingStore(outside);
    s.setBatch(b);
    const o = await s.undoLast();
    expect(o.patchId).toBe(500);
    expect(s.tiles[0].label).toBeNull();
    expect(s.selectedIndex).toBe(0);
  });

  it("toggles unsure on the selected tile, twice in a row back to the start", async () => {
    const b = batch(1, [null, null]);
    const f = fakeApi(b);
    const s = new LabelingStore(f.api);
    s.setBatch(b);
    s.select(1);
    const a = s.toggleUnsure();
    const c = s.toggleUnsure();
    expect(await a).toBe(true);
    expect(await c).toBe(false);
    expect(s.tiles[1].unsure).toBe(false);
    expect(f.calls).toEqual(["unsure 2 true", "unsure 2 false"]);
    await s.toggleUnsure();
    expect(s.tiles[1].unsure).toBe(true);
  });

  it("moves the selection with arrows, one selected tile at a time", () => {
    const b = batch(1, Array(10).fill(null));
    const s = new LabelingStore(fakeApi(b).api);
    s.setBatch(b);
    s.move("right", 4);
    s.move("down", 4);
    expect(s.selectedIndex).toBe(5);
    s.move("up", 4);
    s.move("left", 4);
    expect(s.selectedIndex).toBe(0);
    s.select(50);
    expect(s.selectedIndex).toBe(9);
    expect(s.tiles.filter((t) => t.selected).map((t) => t.id)).toEqual([10]);
  });

  it("keeps the selected patch on a reload of the same round, and restarts on a new round", async () => {
    const f = fakeApi(batch(1, [null, null, null]));
    const s = new LabelingStore(f.api);
    await s.load();
    s.select(2);
    await s.load();
    expect(s.selected?.id).toBe(3);
    f.setBatch(batch(2, [4, null], 20));
    await s.load();
    expect(s.round).toBe(2);
    expect(s.selected?.id).toBe(21);
    f.setBatch(null);
    await s.load();
    expect(s.hasBatch).toBe(false);
    expect(s.selected).toBeUndefined();
  });

  it("applies changes asked for during a reload to the reloaded tiles", async () => {
    const b = batch(1, [null, null]);
    const f = fakeApi(b);
    const s = new LabelingStore(f.api);
    s.setBatch(b);
    const reload = s.load(); // answers after the changes below were asked for
    const unsure = s.toggleUnsure();
    const labeled = s.label(8);
    expect(s.tiles[0].pending).toBe(true);
    await reload;
    // New tile objects: the pending mark carried over, then the commits land on them.
    expect(s.tiles[0].pending).toBe(true);
    expect(await unsure).toBe(true);
    await labeled;
    expect(s.tiles[0].unsure).toBe(true);
    expect(s.tiles[0].label).toBe(8);
    expect(s.tiles[0].pending).toBe(false);
    expect(f.calls).toEqual(["batch null", "unsure 1 true", "label 1 8"]);
  });

  it("marks itself stale until the next load", async () => {
    const s = new LabelingStore(fakeApi(batch(1, [null])).api);
    expect(s.stale).toBe(false);
    s.stale = true;
    await s.load();
    expect(s.stale).toBe(false);
  });
});
