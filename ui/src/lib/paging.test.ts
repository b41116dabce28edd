import { describe, expect, it } from "vitest";
import { applyPage, isComplete, nextRange, resetPaged, updateTile } from "./paging";
import type { PatchTile } from "./types";

function tiles(from: number, n: number): PatchTile[] {
  return Array.from({ length: n }, (_, i) => ({
    id: from + i,
    width: 150,
    height: 150,
    label: null,
    source: `p${from + i}.tif`,
    group: null,
  }));
}

describe("paging", () => {
  it("asks for the first page, then the rest, then nothing", () => {
    let s = resetPaged();
    expect(nextRange(s, 10)).toEqual({ offset: 0, limit: 10 });
    s = applyPage({ ...s, loading: true }, { offset: 0, total: 25, items: tiles(1, 10) }, s.generation);
    expect(s.loading).toBe(false);
    expect(nextRange(s, 10)).toEqual({ offset: 10, limit: 10 });
    s = applyPage(s, { offset: 10, total: 25, items: tiles(11, 10) }, s.generation);
    expect(nextRange(s, 10)).toEqual({ offset: 20, limit: 5 });
    s = applyPage(s, { offset: 20, total: 25, items: tiles(21, 5) }, s.generation);
    expect(isComplete(s)).toBe(true);
    expect(nextRange(s, 10)).toBeNull();
    expect(s.items.map((t) => t.id)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
  });

  it("asks nothing while a page is in flight", () => {
    const s = { ...resetPaged(), loading: true };
    expect(nextRange(s, 10)).toBeNull();
  });

  it("ignores pages of an older generation and pages that do not fit", () => {
    const old = resetPaged();
    const s = resetPaged(old);
    expect(s.generation).toBe(old.generation + 1);
    expect(applyPage(s, { offset: 0, total: 3, items: tiles(1, 3) }, old.generation)).toBe(s);
    expect(applyPage(s, { offset: 5, total: 9, items: tiles(6, 3) }, s.generation)).toBe(s);
  });

  it("never adds an id twice", () => {
    let s = resetPaged();
    s = applyPage(s, { offset: 0, total: 4, items: tiles(1, 2) }, s.generation);
    s = applyPage(s, { offset: 2, total: 4, items: [...tiles(2, 1), ...tiles(3, 2)] }, s.generation);
    expect(s.items.map((t) => t.id)).toEqual([1, 2, 3, 4]);
  });

  it("treats an empty result as complete", () => {
    let s = resetPaged();
    s = applyPage(s, { offset: 0, total: 0, items: [] }, s.generation);
    expect(isComplete(s)).toBe(true);
    expect(nextRange(s, 10)).toBeNull();
  });

  it("refuses a non-positive page size", () => {
    expect(() => nextRange(resetPaged(), 0)).toThrow(RangeError);
  });

  it("replaces one tile in place", () => {
    let s = resetPaged();
    s = applyPage(s, { offset: 0, total: 3, items: tiles(1, 3) }, s.generation);
    s = updateTile(s, { ...tiles(2, 1)[0], label: 7 });
    expect(s.items.map((t) => t.label)).toEqual([null, 7, null]);
  });
});
