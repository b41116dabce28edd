// Typed wrappers of the Rust commands and events; every rejection becomes an AppError.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import { toAppError } from "./errors";
import type {
  ExportResult,
  GridFilter,
  Histogram,
  LabelOutcome,
  NetworkConfusion,
  QueryBatch,
  CurvePoint,
  ReviewPage,
  ReviewQuery,
  RoundFinished,
  RoundInfo,
  RoundProgress,
  TrainingOptions,
  TrainingState,
  TrainSettings,
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

  // Labels: each reply comes after the change is committed to the project file.
  labelPatch: (patchId: number, classId: number) => call<LabelOutcome>("label_patch", { patchId, classId }),
  clearLabel: (patchId: number) => call<LabelOutcome>("clear_label", { patchId }),
  /** Undoes the newest label change of `patchId`, or the newest change of the project when null. */
  undoLabel: (patchId: number | null) => call<LabelOutcome>("undo_label", { patchId }),
  setUnsure: (patchId: number, unsure: boolean) => call<boolean>("set_unsure", { patchId, unsure }),

  // Classes: each returns the project's status with the classes in their new order.
  addClass: (name: string, color: string | null, hotkey: string | null) =>
    call<ProjectStatus>("add_class", { name, color, hotkey }),
  renameClass: (id: number, name: string) => call<ProjectStatus>("rename_class", { id, name }),
  setClassColor: (id: number, color: string) => call<ProjectStatus>("set_class_color", { id, color }),
  setClassHotkey: (id: number, hotkey: string | null) => call<ProjectStatus>("set_class_hotkey", { id, hotkey }),
  moveClass: (id: number, position: number) => call<ProjectStatus>("move_class", { id, position }),

  // Query batch, review and results.
  queryBatch: (round: number | null) => call<QueryBatch | null>("query_batch", { round }),
  reviewPage: (query: ReviewQuery, offset: number, limit: number) =>
    call<ReviewPage>("review_page", { query, offset, limit }),
  /** Null when no round has predictions yet (round null = the newest that has). */
  histogram: (round: number | null, bins: number) => call<Histogram | null>("disagreement_histogram", { round, bins }),
  rounds: () => call<RoundInfo[]>("rounds"),
  learningCurve: () => call<CurvePoint[]>("learning_curve"),
  networkConfusion: (round: number | null) => call<NetworkConfusion | null>("network_confusion", { round }),

  // Training.
  trainingOptions: () => call<TrainingOptions>("training_options"),
  startRound: (settings: TrainSettings) => call<number>("start_round", { settings }),
  cancelRound: () => call<boolean>("cancel_round"),
  trainingState: () => call<TrainingState>("training_state"),

  // Exports: absolute paths; files are written whole or not at all.
  exportLabels: (path: string) => call<ExportResult>("export_labels", { path }),
  exportPredictions: (path: string, round: number | null) =>
    call<ExportResult>("export_predictions", { path, round }),
  exportModel: (folder: string, round: number | null) => call<ExportResult>("export_model", { folder, round }),
};

/** Event names emitted by the Rust side. */
export const EVENTS = {
  importProgress: "import-progress",
  importFinished: "import-finished",
  roundProgress: "round-progress",
  roundFinished: "round-finished",
} as const;

export function onImportProgress(handler: (p: ImportProgress) => void): Promise<UnlistenFn> {
  return listen<ImportProgress>(EVENTS.importProgress, (e) => handler(e.payload));
}

export function onImportFinished(handler: (f: ImportFinished) => void): Promise<UnlistenFn> {
  return listen<ImportFinished>(EVENTS.importFinished, (e) => handler(e.payload));
}

export function onRoundProgress(handler: (p: RoundProgress) => void): Promise<UnlistenFn> {
  return listen<RoundProgress>(EVENTS.roundProgress, (e) => handler(e.payload));
}

export function onRoundFinished(handler: (f: RoundFinished) => void): Promise<UnlistenFn> {
  return listen<RoundFinished>(EVENTS.roundFinished, (e) => handler(e.payload));
}
