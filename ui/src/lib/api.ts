// Typed wrappers of the Rust commands and events; every rejection becomes an AppError.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import { toAppError } from "./errors";
import type {
  GridFilter,
  ImportFinished,
  ImportProgress,
  LabelsMode,
  PatchPage,
  ProjectStatus,
  RecentProject,
} from "./types";

async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(command, args);
  } catch (e) {
    throw toAppError(e);
  }
}

export const api = {
  startupProject: () => call<ProjectStatus | null>("startup_project"),
  recentProjects: () => call<RecentProject[]>("recent_projects"),
  openProject: (path: string) => call<ProjectStatus>("open_project", { path }),
  createProject: (path: string) => call<ProjectStatus>("create_project", { path }),
  openDemo: () => call<ProjectStatus>("open_demo"),
  closeProject: () => call<void>("close_project"),
  status: () => call<ProjectStatus>("project_status"),
  patchPage: (offset: number, limit: number, filter: GridFilter) =>
    call<PatchPage>("patch_page", { offset, limit, filter }),
  startImport: (folder: string, labels: LabelsMode) => call<void>("start_import", { folder, labels }),
  cancelImport: () => call<boolean>("cancel_import"),
};

/** Event names emitted by the Rust side. */
export const EVENTS = {
  importProgress: "import-progress",
  importFinished: "import-finished",
} as const;

export function onImportProgress(handler: (p: ImportProgress) => void): Promise<UnlistenFn> {
  return listen<ImportProgress>(EVENTS.importProgress, (e) => handler(e.payload));
}

export function onImportFinished(handler: (f: ImportFinished) => void): Promise<UnlistenFn> {
  return listen<ImportFinished>(EVENTS.importFinished, (e) => handler(e.payload));
}
