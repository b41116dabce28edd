import { describe, expect, it } from "vitest";
import type { CurvePoint } from "../../lib/types";
import { agreementText, curveSeries, emptyCurveReason, maxCell, pct } from "./curve";

const pt = (round: number, labeled: number, heldout: CurvePoint["heldout"], oracle: CurvePoint["oracle"] = null): CurvePoint => ({
  round,
  strategy: "unisal",
  labeled,
  heldout,
  oracle,
  trainSeconds: 10,
});

describe("learning curve series", () => {
  it("plots held-out and oracle scores against the labeled count, ordered by it", () => {
    const s = curveSeries([
      pt(3, 200, { n: 50, accuracy: 0.8, macroF1: 0.7 }, { n: 900, accuracy: 0.82, macroF1: 0.75 }),
      pt(2, 100, { n: 40, accuracy: 0.6, macroF1: 0.5 }),
    ]);
    expect(s.map((x) => x.key)).toEqual(["heldout-acc", "heldout-f1", "oracle-acc", "oracle-f1"]);
    expect(s[0].points).toEqual([
      { x: 100, y: 0.6, round: 2, n: 40 },
      { x: 200, y: 0.8, round: 3, n: 50 },
    ]);
    expect(s[1].points.map((p) => p.y)).toEqual([0.5, 0.7]);
    expect(s[2].points).toEqual([{ x: 200, y: 0.82, round: 3, n: 900 }]);
    expect(s[2].dashed).toBe(true);
  });

  it("skips scores on no patches", () => {
    expect(curveSeries([pt(2, 100, { n: 0, accuracy: 0, macroF1: 0 })])).toEqual([]);
  });

  it("says why the curve is empty", () => {
    expect(emptyCurveReason([])).toMatch(/No round has predictions yet/);
    expect(emptyCurveReason([pt(2, 100, null)])).toMatch(/needs labels the round did not train on/);
    expect(emptyCurveReason([pt(2, 100, { n: 3, accuracy: 1, macroF1: 1 })])).toBeNull();
  });
});

describe("network confusion summary", () => {
  it("gives the agreement share and the largest cell", () => {
    const c = { round: 4, classIds: [1, 2], counts: [[70, 5], [10, 15]], agree: 85, total: 100 };
    expect(agreementText(c)).toBe("The networks agree on 85.0% of 100 patches (round 4).");
    expect(maxCell(c)).toBe(70);
    expect(agreementText({ ...c, total: 0, agree: 0 })).toBe("No predictions in this round.");
    expect(pct(0.8731)).toBe("87.3%");
  });
});
