// Pure helpers of the SVG charts (loss curves, learning curve, histogram, confusion shading): scales, nice
// ticks, path strings and bar geometry. No DOM: everything here is unit tested.

/** A linear map from a data interval to a pixel interval. */
export interface Scale {
  (value: number): number;
  domain: [number, number];
  range: [number, number];
}

/** Maps [d0, d1] onto [r0, r1]; a zero-width domain maps everything to the middle of the range. */
export function linearScale(domain: [number, number], range: [number, number]): Scale {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0;
  const f = ((v: number) => (span === 0 ? (r0 + r1) / 2 : r0 + ((v - d0) / span) * (r1 - r0))) as Scale;
  f.domain = [d0, d1];
  f.range = [r0, r1];
  return f;
}

/** The smallest and largest finite values, or null when there are none. */
export function extent(values: Iterable<number | null | undefined>): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (typeof v !== "number" || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo === Infinity ? null : [lo, hi];
}

function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / power;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return nice * power;
}

/** About `count` round tick values covering [min, max] (1, 2, 2.5 or 5 times a power of ten apart). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (min > max) [min, max] = [max, min];
  if (min === max) return [min];
  const step = niceStep(max - min, count);
  const start = Math.ceil(min / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = start; v <= max + step * 1e-9; v += step) {
    // Rounding to the step's precision removes float noise such as 0.30000000000000004.
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

/** [min, max] widened outward to whole tick steps, so the axis ends on ticks. */
export function niceDomain(min: number, max: number, count = 5): [number, number] {
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    return [min - pad, max + pad];
  }
  const step = niceStep(max - min, count);
  return [Math.floor(min / step + 1e-9) * step, Math.ceil(max / step - 1e-9) * step];
}

/** A tick label: few digits, thousands as "k". */
export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a >= 10000) return `${Number((v / 1000).toPrecision(3))}k`;
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return String(Number(v.toPrecision(2)));
}

/** A point of a line; a null y breaks the line. */
export interface XY {
  x: number;
  y: number | null;
}

/** An SVG path ("M x y L x y …") through the points, starting a new piece after each gap (null or non-finite y). */
export function linePath(points: XY[], sx: (v: number) => number, sy: (v: number) => number): string {
  const parts: string[] = [];
  let pen = false;
  for (const p of points) {
    if (p.y === null || !Number.isFinite(p.y) || !Number.isFinite(p.x)) {
      pen = false;
      continue;
    }
    parts.push(`${pen ? "L" : "M"}${sx(p.x).toFixed(1)} ${sy(p.y).toFixed(1)}`);
    pen = true;
  }
  return parts.join(" ");
}

/** A bar's rectangle in pixels. */
export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Bars for `counts` side by side across `width`, heights relative to the largest count, `gap` pixels apart. */
export function barRects(counts: number[], width: number, height: number, gap = 1): Rect[] {
  const n = counts.length;
  if (n === 0) return [];
  const max = Math.max(0, ...counts);
  const slot = width / n;
  const w = Math.max(1, slot - gap);
  return counts.map((c, i) => {
    const h = max > 0 ? (Math.max(0, c) / max) * height : 0;
    return { x: i * slot + gap / 2, y: height - h, width: w, height: h };
  });
}

/** A 0..1 intensity for a cell holding `count` of at most `max` (square-root scale: small counts stay visible). */
export function shade(count: number, max: number): number {
  if (max <= 0 || count <= 0) return 0;
  return Math.min(1, Math.sqrt(count / max));
}
