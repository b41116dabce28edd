// Export paths: defaults next to the project file, checks in words, and the line describing what was written.
import type { ExportResult } from "../../lib/types";

/** What an export writes. */
export type ExportKind = "labels" | "predictions" | "model";

function separatorOf(path: string): string {
  return path.includes("\\") && !path.includes("/") ? "\\" : "/";
}

/** The folder of a file path ("" when it has none). */
export function folderOf(path: string): string {
  const i = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (i < 0) return "";
  return i === 0 ? path.slice(0, 1) : path.slice(0, i);
}

/** The suggested output next to the project file: NAME-labels.csv, NAME-predictions.csv or the NAME-model folder. */
export function defaultExportPath(projectPath: string, name: string, kind: ExportKind): string {
  const folder = folderOf(projectPath);
  const sep = separatorOf(projectPath);
  const safe = name.trim().replace(/[\\/:*?"<>|]+/g, "_") || "project";
  const file = kind === "model" ? `${safe}-model` : `${safe}-${kind}.csv`;
  if (folder === "") return file;
  return folder.endsWith(sep) ? folder + file : folder + sep + file;
}

/** Whether a path is absolute on Linux/macOS (/…) or Windows (C:\…, \\server\…). */
export function isAbsolutePath(path: string): boolean {
  return path.startsWith("/") || /^[A-Za-z]:[\\/]/.test(path) || path.startsWith("\\\\");
}

/** Why `path` cannot take an export of `kind`, in words; null when it can. */
export function exportPathProblem(path: string, kind: ExportKind): string | null {
  const p = path.trim();
  if (p === "") return "Enter where to write the export (a full path).";
  if (!isAbsolutePath(p)) return `"${p}" is not a full path: start it at the root of a disk (e.g. /home/… or C:\\…).`;
  if (/[\\/]$/.test(p) && kind !== "model") return `"${p}" names a folder: the ${kind} export writes a CSV file.`;
  if (kind === "model" && /\.csv$/i.test(p)) return `The model export writes a folder, and "${p}" names a CSV file.`;
  return null;
}

/** The round field: empty means the newest round; otherwise a positive whole number. */
export function parseRound(text: string): { round: number | null; problem: string | null } {
  const t = text.trim();
  if (t === "") return { round: null, problem: null };
  const n = Number(t);
  if (!Number.isInteger(n) || n < 1) return { round: null, problem: `Round must be a round number such as 3, not "${t}".` };
  return { round: n, problem: null };
}

/** The result line of an export. */
export function describeExport(kind: ExportKind, result: ExportResult): string {
  const rows = result.rows.toLocaleString("en-US");
  if (kind === "model") {
    return `Model written: ${result.paths.length} files (${result.paths.join(", ")}).`;
  }
  const what = kind === "labels" ? "labels" : "predictions";
  return `${rows} ${what} rows written to ${result.paths.join(", ")}.`;
}
