// Formatting helpers for counts, percentages and remaining-time estimates.

/** A whole number with thousands separators, e.g. 12,345. */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return "–";
  return Math.round(n).toLocaleString("en-US");
}

/** done/total as a whole percentage in 0..100; 0 when the total is unknown or zero. */
export function percent(done: number, total: number | null): number {
  if (total === null || total <= 0 || !Number.isFinite(done)) return 0;
  return Math.max(0, Math.min(100, Math.floor((done / total) * 100)));
}

/** A remaining-time estimate: "estimating…" before one exists, then seconds, minutes or hours. */
export function formatEta(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return "estimating…";
  if (seconds < 1) return "< 1 s";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    const rest = s % 60;
    return `${m} min ${String(rest).padStart(2, "0")} s`;
  }
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h} h ${String(m).padStart(2, "0")} min`;
}

/** A rate such as "812 patches/s"; empty when unknown. */
export function formatRate(perSecond: number | null, unit: string): string {
  if (perSecond === null || !Number.isFinite(perSecond) || perSecond <= 0) return "";
  const value = perSecond >= 10 ? Math.round(perSecond).toString() : perSecond.toFixed(1);
  return `${value} ${unit}/s`;
}

/** The file name of a path (either separator). */
export function baseName(path: string): string {
  const parts = path.split(/[\\/]/).filter((p) => p.length > 0);
  return parts.length > 0 ? parts[parts.length - 1] : path;
}
