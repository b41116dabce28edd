// Text of a query tile: confidences as percentages, the disagreement score, class names for prediction ids.
import type { ClassInfo } from "../../lib/types";

/** A probability in 0..1 as a whole percentage, e.g. "87%" ("–" when not a number). */
export function formatConfidence(p: number): string {
  if (!Number.isFinite(p)) return "–";
  return `${Math.round(Math.min(1, Math.max(0, p)) * 100)}%`;
}

/**
 * A disagreement (Jensen-Shannon, 0 to ln 2) score: three decimals from 0.01, two significant digits below, so
 * that the small scores of barely trained networks still tell apart ("0.0028", not "0.003" and "0.000").
 */
export function formatDisagreement(d: number): string {
  if (!Number.isFinite(d)) return "–";
  if (d === 0 || Math.abs(d) >= 0.01) return d.toFixed(3);
  return String(Number(d.toPrecision(2)));
}

/** The class of a predicted id: the project's class, or a grey stand-in naming the id of a deleted one. */
export function predictedClass(classes: ReadonlyMap<number, ClassInfo>, id: number): { name: string; color: string } {
  const c = classes.get(id);
  return c ? { name: c.name, color: c.color } : { name: `class #${id}`, color: "#9aa3ae" };
}

/** A signature of the classes' names, colours and hotkeys (not counts): tiles repaint only when it changes. */
export function classSignature(classes: readonly ClassInfo[]): string {
  return classes.map((c) => `${c.id}\u0001${c.name}\u0001${c.color}\u0001${c.hotkey ?? ""}`).join("\u0002");
}
