import { describe, expect, it } from "vitest";
import { isHexColor, luminance, textOn } from "./colors";

describe("colours", () => {
  it("recognises #rrggbb only", () => {
    expect(isHexColor("#1f5fbf")).toBe(true);
    expect(isHexColor("#FFF")).toBe(false);
    expect(isHexColor("red")).toBe(false);
  });
  it("computes WCAG luminance", () => {
    expect(luminance("#000000")).toBe(0);
    expect(luminance("#ffffff")).toBeCloseTo(1, 6);
    expect(() => luminance("blue")).toThrow(/not a #rrggbb/);
  });
  it("picks the more readable text colour", () => {
    expect(textOn("#ffffff")).toBe("#000000");
    expect(textOn("#ffe14d")).toBe("#000000");
    expect(textOn("#000000")).toBe("#ffffff");
    expect(textOn("#1f3a93")).toBe("#ffffff");
  });
});
