// Words for a training round: stage names, the running pill's text, the end-of-round line and durations.
import { percent } from "../../lib/format";
import type { RoundFinished, RoundProgress } from "../../lib/types";

const STAGES: Record<string, string> = {
  snapshot: "preparing",
  draw: "drawing the initial set",
  train: "training",
  validate: "validating",
  predict: "predicting the pool",
  select: "selecting queries",
  save: "saving",
};

/** A stage name in words ("train" -> "training"); unknown stages pass through. */
export function stageLabel(stage: string): string {
  return STAGES[stage] ?? stage;
}

/** The running pill's text: "Training round 3 · training · 45%" (no percentage while the total is unknown). */
export function pillText(round: number | null, p: RoundProgress | null): string {
  const head = round !== null ? `Training round ${round}` : "Training";
  if (!p) return `${head} · starting`;
  const parts = [head, stageLabel(p.stage)];
  if (p.total !== null && p.total > 0) parts.push(`${percent(p.done, p.total)}%`);
  return parts.join(" · ");
}

/** A duration in words: "42 s", "3 min 05 s", "1 h 02 min". */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** The line shown after a round ends: "Round 3 done: …", "Round cancelled", or the error in words. */
export function resultText(f: RoundFinished): string {
  if (f.error) return `Round failed: ${f.error.message}`;
  if (f.cancelled) return "Round cancelled; the project is as it was before the round.";
  const s = f.summary;
  if (!s) return "Round ended without a summary.";
  const parts = [
    `${s.labeled.toLocaleString("en-US")} labeled`,
    s.trained ? `trained on ${s.device ?? "an unknown device"}` : "no training (initial draw)",
    formatDuration(s.totalSeconds),
    `${s.queries.length.toLocaleString("en-US")} patches queried (${s.strategy})`,
  ];
  if (s.toppedUp > 0) parts.push(`${s.toppedUp} topped up at random`);
  const note = s.note ? ` ${s.note}` : "";
  return `Round ${s.round} done: ${parts.join(", ")}.${note}`;
}
