// The IPC types of UniSAL Studio: mirrors of src-tauri/ipc.rs (camelCase on the wire).

/** A class of the open project with its number of labeled patches. */
export interface ClassInfo {
  id: number;
  name: string;
  color: string;
  hotkey: string | null;
  count: number;
}

/** The open project: where it is and its counts. */
export interface ProjectStatus {
  path: string;
  name: string;
  patches: number;
  labeled: number;
  unlabeled: number;
  rounds: number;
  classes: ClassInfo[];
  /** Part of every image address of this opening: a reopened or other project never reuses a cached image. */
  imageKey: number;
}

/** One patch of a grid page. */
export interface PatchTile {
  id: number;
  width: number;
  height: number;
  label: number | null;
  source: string;
  group: string | null;
}

/** A page of patches and the number of patches matching the filter. */
export interface PatchPage {
  offset: number;
  total: number;
  items: PatchTile[];
}

/** Which patches the grid lists. */
export type GridFilter = "all" | "labeled" | "unlabeled";

/** An entry of the recent-projects list. */
export interface RecentProject {
  path: string;
  name: string;
  openedAt: number;
  exists: boolean;
}

/** How an import assigns labels. */
export type LabelsMode = "folders" | "none";

/** A progress event of a running import. */
export interface ImportProgress {
  done: number;
  total: number | null;
  etaSeconds: number | null;
  perSecond: number | null;
  current: string | null;
}

/** A file an import skipped, and why. */
export interface ImportFailure {
  path: string;
  reason: string;
}

/** What an import did. */
export interface ImportReport {
  imported: number;
  duplicates: number;
  failed: ImportFailure[];
  cancelled: boolean;
  skipped: number;
  notes: string[];
  seconds: number;
}

/** The end of an import: its report, or the error that stopped it. */
export interface ImportFinished {
  report: ImportReport | null;
  error: AppErrorPayload | null;
}

/** An error as the Rust side sends it. */
export interface AppErrorPayload {
  code: string;
  message: string;
}
