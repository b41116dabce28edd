// Tests of the query tile's text helpers.
import { describe, expect, it } from "vitest";
import { classSignature, formatConfidence, formatDisagreement, predictedClass } from "./tileText";
import type { ClassInfo } from "../../lib/types";

const cls = (id: number, name: string, count = 0): ClassInfo => ({ id, name, color: "#112233", hotkey: null, count });

describe("tile text", () => {
  it("formats confidences and disagreement", () => {
    expect(formatConfidence(0.873)).toBe("87%");
    expect(formatConfidence(1)).toBe("100%");
    expect(formatConfidence(1.2)).toBe("100%");
    expect(formatConfidence(Number.NaN)).toBe("–");
    expect(formatDisagreement(0.12345)).toBe("0.123");
    expect(formatDisagreement(0)).toBe("0.000");
    expect(formatDisagreement(0.0027848)).toBe("0.0028");
    expect(formatDisagreement(0.00004)).toBe("0.00004");
    expect(formatDisagreement(Number.POSITIVE_INFINITY)).toBe("–");
  });
  it("names a predicted class, or the id of a missing one", () => {
    const m = new Map([[3, cls(3, "TUM")]]);
    expect(predictedClass(m, 3)).toEqual({ name: "TUM", color: "#112233" });
    expect(predictedClass(m, 9).name).toBe("class #9");
  });
  it("changes the signature with names and order but not with counts", () => {
    const a = [cls(1, "A", 3), cls(2, "B")];
    expect(classSignature(a)).toBe(classSignature([cls(1, "A", 9), cls(2, "B", 1)]));
    expect(classSignature(a)).not.toBe(classSignature([cls(2, "B"), cls(1, "A")]));
    expect(classSignature(a)).not.toBe(classSignature([cls(1, "A2"), cls(2, "B")]));
  });
});
