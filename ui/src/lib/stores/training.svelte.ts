// The training round as the whole window sees it: whether one runs, its latest progress, the loss history of
// its iterations (evenly thinned past MAX_LOSS_POINTS), images/s and how the last round ended. Initialised from
// api.trainingState() and kept current by the round-progress and round-finished events (subscribed once).
import { api, onRoundFinished, onRoundProgress } from "../api";
import type { RoundFinished, RoundProgress, TrainingState } from "../types";

/** The most loss points kept; past it the history keeps every other point and samples half as often. */
export const MAX_LOSS_POINTS = 2000;

/** The loss terms of one reported training iteration (null: the event did not carry that term). */
export interface LossPoint {
  iteration: number;
  total: number | null;
  sup: number | null;
  cps: number | null;
  con: number | null;
}

/** The names of the loss terms, in legend order. */
export const LOSS_TERMS = ["total", "sup", "cps", "con"] as const;
export type LossTerm = (typeof LOSS_TERMS)[number];

/**
 * The loss history of a round. `stride` is how many reported points one kept point stands for; `received`
 * counts reported points; when `tail` is true the last point is the newest report kept only until the next
 * one arrives (so the curve always reaches the latest iteration).
 */
export interface LossSeries {
  points: LossPoint[];
  stride: number;
  received: number;
  tail: boolean;
}

/** The state the window shares. */
export interface TrainingStore {
  /** Whether a round runs now. */
  running: boolean;
  /** The running (or last) round's id, once known. */
  round: number | null;
  progress: RoundProgress | null;
  losses: LossSeries;
  imagesPerSecond: number | null;
  /** How the last round that ended in this window's lifetime ended. */
  finished: RoundFinished | null;
  /** Counts round ends: views that show round data reload when it changes. */
  finishedCount: number;
  /** Whether the first api.trainingState() answer arrived. */
  ready: boolean;
}

/** An empty loss history. */
export function emptySeries(): LossSeries {
  return { points: [], stride: 1, received: 0, tail: false };
}

function pick(metrics: Record<string, number>, names: string[]): number | null {
  for (const n of names) {
    const v = metrics[n];
    if (typeof v === "number" && Number.isFinite(v)) return v;
  }
  return null;
}

/** The loss terms of a progress event, or null when it carries none (other stages, validation). */
export function lossPoint(p: RoundProgress): LossPoint | null {
  const m = p.metrics ?? {};
  const total = pick(m, ["loss", "loss_total"]);
  const sup = pick(m, ["loss_sup", "supervised", "loss_supervised"]);
  let cps = pick(m, ["loss_cps", "loss_pseudo"]);
  if (cps === null) {
    const a = pick(m, ["pseudo_a", "loss_pseudo_a"]);
    const b = pick(m, ["pseudo_b", "loss_pseudo_b"]);
    cps = a !== null && b !== null ? a + b : (a ?? b);
  }
  const con = pick(m, ["loss_con", "contrastive", "loss_contrastive"]);
  if (total === null && sup === null && cps === null && con === null) return null;
  return { iteration: p.done, total, sup, cps, con };
}

/** The images/s a progress event reports, or null. */
export function imagesPerSecondOf(p: RoundProgress): number | null {
  return pick(p.metrics ?? {}, ["img_per_s", "images_per_s"]);
}

/** Adds one reported point; past `max` points the history halves (every other point) and samples half as often. */
export function appendLoss(series: LossSeries, point: LossPoint, max: number = MAX_LOSS_POINTS): LossSeries {
  if (max < 2) throw new RangeError("max must be at least 2");
  let points = series.tail ? series.points.slice(0, -1) : series.points.slice();
  let stride = series.stride;
  const index = series.received;
  const kept = index % stride === 0;
  if (kept && points.length >= max) {
    // Point i stands for report i*stride: keeping even i keeps the reports that are multiples of 2*stride.
    points = points.filter((_, i) => i % 2 === 0);
    stride *= 2;
  }
  const permanent = index % stride === 0;
  points.push(point);
  return { points, stride, received: index + 1, tail: !permanent };
}

/** The shared training state (module-level: one per window). */
export const training: TrainingStore = $state({
  running: false,
  round: null,
  progress: null,
  losses: emptySeries(),
  imagesPerSecond: null,
  finished: null,
  finishedCount: 0,
  ready: false,
});

function beginRound(round: number) {
  training.round = round;
  training.losses = emptySeries();
  training.imagesPerSecond = null;
  training.finished = null;
}

/** Applies a progress event: marks a round running, and records its losses and rate. */
export function applyProgress(p: RoundProgress): void {
  if (training.round !== p.round) beginRound(p.round);
  training.running = true;
  training.progress = p;
  const point = lossPoint(p);
  if (point) training.losses = appendLoss(training.losses, point);
  const ips = imagesPerSecondOf(p);
  if (ips !== null) training.imagesPerSecond = ips;
}

/** Applies the end of a round. */
export function applyFinished(f: RoundFinished): void {
  training.running = false;
  training.finished = f;
  training.round = f.round;
  lastFinishedRound = Math.max(lastFinishedRound, f.round);
  training.finishedCount += 1;
}

/** The newest round whose end this window has seen: its start reply may come after its end event. */
let lastFinishedRound = -1;

/** Applies the state the Rust side reports (a window that opens mid-round). */
export function applyState(s: TrainingState): void {
  training.ready = true;
  if (s.running) {
    training.running = true;
    // Events that arrived while the answer was on its way are newer than it.
    if (s.progress && (training.progress === null || training.progress.round !== s.progress.round)) {
      applyProgress(s.progress);
    }
  } else if (training.running) {
    // The round ended before this answer; its round-finished event carries how.
    training.running = false;
  }
}

/** Marks a round as started by this window (before its first progress event). */
export function markStarted(round: number): void {
  if (training.round === round && training.running) return; // its first events came first
  if (round <= lastFinishedRound) return; // a quick round (the initial draw) ended before the reply came
  beginRound(round);
  training.running = true;
  training.progress = null;
}

let listening: Promise<void> | null = null;
let started: Promise<void> | null = null;

/**
 * Subscribes to the round events (once per window) and loads the current state; later calls return the first
 * call's promise. After a failure the next call retries only the part that failed.
 */
export function initTraining(): Promise<void> {
  if (started === null) {
    if (listening === null) {
      listening = (async () => {
        await onRoundProgress(applyProgress);
        await onRoundFinished(applyFinished);
      })();
      listening.catch(() => (listening = null));
    }
    const current: Promise<void> = listening.then(async () => applyState(await api.trainingState()));
    started = current;
    current.catch(() => {
      if (started === current) started = null;
    });
  }
  return started;
}

/** Back to the initial state (tests). */
export function resetTraining(): void {
  training.running = false;
  training.round = null;
  training.progress = null;
  training.losses = emptySeries();
  training.imagesPerSecond = null;
  training.finished = null;
  training.finishedCount = 0;
  training.ready = false;
  lastFinishedRound = -1;
  listening = null;
  started = null;
}
