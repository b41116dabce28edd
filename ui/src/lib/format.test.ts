import { describe, expect, it } from "vitest";
import { baseName, formatCount, formatEta, formatRate, percent } from "./format";

describe("formatEta", () => {
  it("says estimating before an estimate exists", () => {
    expect(formatEta(null)).toBe("estimating…");
    expect(formatEta(Number.NaN)).toBe("estimating…");
    expect(formatEta(-3)).toBe("estimating…");
  });
  it("formats seconds, minutes and hours", () => {
    expect(formatEta(0.4)).toBe("< 1 s");
    expect(formatEta(42.4)).toBe("42 s");
    expect(formatEta(59.6)).toBe("1 min 00 s");
    expect(formatEta(125)).toBe("2 min 05 s");
    expect(formatEta(3600)).toBe("1 h 00 min");
    expect(formatEta(3 * 3600 + 7 * 60 + 59)).toBe("3 h 07 min");
  });
});

describe("percent", () => {
  it("is 0 for an unknown or empty total", () => {
    expect(percent(5, null)).toBe(0);
    expect(percent(5, 0)).toBe(0);
  });
  it("floors and clamps", () => {
    expect(percent(1, 3)).toBe(33);
    expect(percent(3, 3)).toBe(100);
    expect(percent(7, 3)).toBe(100);
    expect(percent(-1, 3)).toBe(0);
  });
});

describe("formatCount and formatRate", () => {
  it("groups thousands", () => {
    expect(formatCount(4000)).toBe("4,000");
    expect(formatCount(1234567)).toBe("1,234,567");
    expect(formatCount(Number.POSITIVE_INFINITY)).toBe("–");
  });
  it("rounds rates and hides unknown ones", () => {
    expect(formatRate(812.4, "patches")).toBe("812 patches/s");
    expect(formatRate(2.345, "patches")).toBe("2.3 patches/s");
    expect(formatRate(null, "patches")).toBe("");
    expect(formatRate(0, "patches")).toBe("");
  });
});

describe("baseName", () => {
  it("takes the last component with either separator", () => {
    expect(baseName("/data/a/b.tif")).toBe("b.tif");
    expect(baseName("C:\\data\\x y.png")).toBe("x y.png");
    expect(baseName("/data/dir/")).toBe("dir");
    expect(baseName("plain")).toBe("plain");
  });
});
