import { describe, expect, it } from "vitest";
import { barRects, extent, formatTick, linePath, linearScale, niceDomain, niceTicks, shade } from "./charts";

describe("linearScale", () => {
  it("maps the domain's ends onto the range's ends, including inverted ranges", () => {
    const s = linearScale([0, 10], [100, 0]);
    expect(s(0)).toBe(100);
    expect(s(10)).toBe(0);
    expect(s(2.5)).toBe(75);
    expect(s.domain).toEqual([0, 10]);
  });

  it("maps a zero-width domain to the middle of the range", () => {
    expect(linearScale([3, 3], [0, 200])(3)).toBe(100);
  });
});

describe("extent", () => {
  it("skips nulls and non-finite values", () => {
    expect(extent([3, null, -1, NaN, Infinity, 7, undefined])).toEqual([-1, 7]);
    expect(extent([null, NaN])).toBeNull();
  });
});

describe("niceTicks", () => {
  it("gives round steps covering the interval", () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0, 100, 4)).toEqual([0, 25, 50, 75, 100]);
    expect(niceTicks(13, 97, 5)).toEqual([20, 40, 60, 80]);
  });

  it("has no float noise, swaps reversed bounds, and handles a single value", () => {
    for (const t of niceTicks(0.1, 0.7, 6)) expect(String(t).length).toBeLessThan(6);
    expect(niceTicks(1, 0, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(4, 4)).toEqual([4]);
    expect(niceTicks(NaN, 1)).toEqual([]);
  });
});

describe("niceDomain", () => {
  it("widens to whole steps and pads a single value", () => {
    expect(niceDomain(0.13, 2.71, 5)).toEqual([0, 3]);
    expect(niceDomain(5, 5)).toEqual([4.5, 5.5]);
    expect(niceDomain(0, 0)).toEqual([-1, 1]);
  });
});

describe("formatTick", () => {
  it("keeps labels short", () => {
    expect(formatTick(12000)).toBe("12k");
    expect(formatTick(250)).toBe("250");
    expect(formatTick(3)).toBe("3");
    expect(formatTick(0.123456)).toBe("0.12");
  });
});

describe("linePath", () => {
  const id = (v: number) => v;
  it("draws M then L through the points", () => {
    expect(linePath([{ x: 0, y: 1 }, { x: 2, y: 3 }, { x: 4, y: 5 }], id, id)).toBe("M0.0 1.0 L2.0 3.0 L4.0 5.0");
  });

  it("breaks the line at gaps and starts again with M", () => {
    const d = linePath([{ x: 0, y: 1 }, { x: 1, y: null }, { x: 2, y: 3 }, { x: 3, y: NaN }, { x: 4, y: 5 }], id, id);
    expect(d).toBe("M0.0 1.0 M2.0 3.0 M4.0 5.0");
    expect(linePath([], id, id)).toBe("");
  });

  it("applies the scales", () => {
    const sx = linearScale([0, 10], [0, 100]);
    const sy = linearScale([0, 1], [50, 0]);
    expect(linePath([{ x: 5, y: 0.5 }], sx, sy)).toBe("M50.0 25.0");
  });
});

describe("barRects", () => {
  it("scales heights to the largest count and lays bars side by side", () => {
    const r = barRects([1, 4, 0, 2], 400, 100, 2);
    expect(r).toHaveLength(4);
    expect(r[1]).toEqual({ x: 101, y: 0, width: 98, height: 100 });
    expect(r[0].height).toBe(25);
    expect(r[0].y).toBe(75);
    expect(r[2].height).toBe(0);
    expect(r[3].x).toBe(301);
  });

  it("gives zero-height bars when all counts are zero, and none for no counts", () => {
    expect(barRects([0, 0], 10, 10).every((b) => b.height === 0)).toBe(true);
    expect(barRects([], 10, 10)).toEqual([]);
  });
});

describe("shade", () => {
  it("is 0 for empty cells, 1 for the largest, square-root in between", () => {
    expect(shade(0, 100)).toBe(0);
    expect(shade(100, 100)).toBe(1);
    expect(shade(25, 100)).toBe(0.5);
    expect(shade(5, 0)).toBe(0);
  });
});
