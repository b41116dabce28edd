// The learning curve's series (accuracy and macro-F1 on held-out and oracle labels against the labeled count),
// the words shown when there is nothing to plot, and the network confusion's summary. Pure: unit tested.
import type { CurvePoint, NetworkConfusion, Score } from "../../lib/types";

/** One line of the learning curve. */
export interface CurveSeries {
  key: string;
  name: string;
  color: string;
  dashed: boolean;
  points: { x: number; y: number; round: number; n: number }[];
}

const SERIES: { key: string; name: string; color: string; dashed: boolean; score: (p: CurvePoint) => Score | null; f1: boolean }[] = [
  { key: "heldout-acc", name: "accuracy (held-out labels)", color: "var(--accent)", dashed: false, score: (p) => p.heldout, f1: false },
  { key: "heldout-f1", name: "macro-F1 (held-out labels)", color: "#d9822b", dashed: false, score: (p) => p.heldout, f1: true },
  { key: "oracle-acc", name: "accuracy (oracle labels)", color: "var(--accent)", dashed: true, score: (p) => p.oracle, f1: false },
  { key: "oracle-f1", name: "macro-F1 (oracle labels)", color: "#d9822b", dashed: true, score: (p) => p.oracle, f1: true },
];

/** The series that have at least one scored point, points ordered by labeled count then round. */
export function curveSeries(points: CurvePoint[]): CurveSeries[] {
  const sorted = [...points].sort((a, b) => a.labeled - b.labeled || a.round - b.round);
  const out: CurveSeries[] = [];
  for (const s of SERIES) {
    const pts = sorted.flatMap((p) => {
      const sc = s.score(p);
      if (!sc || sc.n === 0) return [];
      const y = s.f1 ? sc.macroF1 : sc.accuracy;
      return Number.isFinite(y) ? [{ x: p.labeled, y, round: p.round, n: sc.n }] : [];
    });
    if (pts.length > 0) out.push({ key: s.key, name: s.name, color: s.color, dashed: s.dashed, points: pts });
  }
  return out;
}

/** Why the curve is empty, in words; null when there is something to plot. */
export function emptyCurveReason(points: CurvePoint[]): string | null {
  if (points.length === 0) {
    return "No round has predictions yet. Train a round (the first one only draws the initial set to label), then the curve starts.";
  }
  if (curveSeries(points).length === 0) {
    return (
      "No round can be scored yet: a score needs labels the round did not train on. Label patches after a round " +
      "(for example its query batch) and the curve shows how well that round predicted them."
    );
  }
  return null;
}

/** A fraction as a percentage with one decimal: 0.8731 -> "87.3%". */
export function pct(v: number): string {
  return `${(v * 100).toFixed(1)}%`;
}

/** The share of patches on which both networks agree, in words. */
export function agreementText(c: NetworkConfusion): string {
  if (c.total === 0) return "No predictions in this round.";
  return `The networks agree on ${pct(c.agree / c.total)} of ${c.total.toLocaleString("en-US")} patches (round ${c.round}).`;
}

/** The largest cell of the confusion matrix (0 when empty). */
export function maxCell(c: NetworkConfusion): number {
  let m = 0;
  for (const row of c.counts) for (const v of row) if (v > m) m = v;
  return m;
}
