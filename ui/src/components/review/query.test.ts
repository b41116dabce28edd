import { describe, expect, it } from "vitest";
import type { Histogram } from "../../lib/types";
import {
  applyBin,
  binRange,
  clearFilters,
  defaultQuery,
  hasFilters,
  labelFilterValue,
  pageOffset,
  pageRange,
  parseLabelFilter,
  parseOptionalId,
  selectedBin,
  withLabel,
  withUnsure,
} from "./query";

const hist: Histogram = { round: 3, edges: [0, 0.1, 0.2, 0.3], counts: [5, 2, 1] };

describe("review query", () => {
  it("starts on the newest round, by id ascending, without filters", () => {
    const q = defaultQuery();
    expect(q).toMatchObject({ round: null, sort: "id", descending: false, label: "any" });
    expect(hasFilters(q)).toBe(false);
  });

  it("counts any filter as a filter, and clearing keeps the sort", () => {
    for (const patch of [
      { label: "unlabeled" as const },
      { label: { class: 2 } },
      { predicted: 1 },
      { disagreementMin: 0.1 },
      { networksDisagree: true },
      { unsureOnly: true },
      { queriedIn: 4 },
    ]) {
      expect(hasFilters({ ...defaultQuery(), ...patch })).toBe(true);
    }
    expect(hasFilters({ ...defaultQuery(), sort: "disagreement", descending: true })).toBe(false);
    const cleared = clearFilters({ ...defaultQuery(), sort: "confidence", descending: true, unsureOnly: true, predicted: 2 });
    expect(cleared).toEqual({ ...defaultQuery(), sort: "confidence", descending: true });
  });

  it("round-trips the label filter through its select value", () => {
    for (const f of ["any", "labeled", "unlabeled", { class: 12 }] as const) {
      expect(parseLabelFilter(labelFilterValue(f))).toEqual(f);
    }
    expect(parseLabelFilter("class:x")).toBe("any");
    expect(parseOptionalId("")).toBeNull();
    expect(parseOptionalId("7")).toBe(7);
    expect(parseOptionalId("-1")).toBeNull();
  });
});

describe("histogram bins", () => {
  it("turn a bin into its inclusive disagreement range on the histogram's round", () => {
    expect(binRange(hist, 1)).toEqual({ min: 0.1, max: 0.2 });
    const q = applyBin(defaultQuery(), hist, 2);
    expect(q).toMatchObject({ round: 3, disagreementMin: 0.2, disagreementMax: 0.3 });
    expect(selectedBin(q, hist)).toBe(2);
    expect(selectedBin(defaultQuery(), hist)).toBeNull();
  });

  it("a second click on the same bin clears the range", () => {
    const q = applyBin(applyBin(defaultQuery(), hist, 0), hist, 0);
    expect(q.disagreementMin).toBeNull();
    expect(q.disagreementMax).toBeNull();
    expect(selectedBin(q, hist)).toBeNull();
  });

  it("refuses a bin that does not exist", () => {
    expect(() => binRange(hist, 3)).toThrow(RangeError);
    expect(() => binRange(hist, -1)).toThrow(RangeError);
  });
});

describe("rows and pages", () => {
  const rows = [
    { id: 1, width: 8, height: 8, source: "a", group: null, label: null, unsure: false, prediction: null },
    { id: 2, width: 8, height: 8, source: "b", group: null, label: 4, unsure: false, prediction: null },
  ];

  it("replaces one row's label or unsure flag and leaves the others", () => {
    const a = withLabel(rows, 1, 9);
    expect(a[0].label).toBe(9);
    expect(a[1]).toBe(rows[1]);
    expect(rows[0].label).toBeNull();
    expect(withUnsure(rows, 2, true)[1].unsure).toBe(true);
  });

  it("describes and turns pages within the list", () => {
    expect(pageRange(0, 100, 4000)).toBe("1–100 of 4,000");
    expect(pageRange(3900, 100, 4000)).toBe("3,901–4,000 of 4,000");
    expect(pageRange(0, 0, 0)).toBe("none");
    expect(pageOffset(0, 250, 1)).toBe(100);
    expect(pageOffset(200, 250, 1)).toBe(200);
    expect(pageOffset(100, 250, -1)).toBe(0);
    expect(pageOffset(50, 250, -1)).toBe(0);
  });
});
