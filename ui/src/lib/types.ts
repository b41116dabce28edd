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

/** What a label action did, and the project's counts after it (committed before the reply). */
export interface LabelOutcome {
  patchId: number;
  before: number | null;
  after: number | null;
  status: ProjectStatus;
}

/** Both networks' view of one patch in a round: class ids, confidences and their disagreement (JSD). */
export interface RowPrediction {
  a: number;
  confA: number;
  b: number;
  confB: number;
  ensemble: number;
  confidence: number;
  disagreement: number;
}

/** One patch of the review list or a query batch. */
export interface ReviewRow {
  id: number;
  width: number;
  height: number;
  source: string;
  group: string | null;
  label: number | null;
  unsure: boolean;
  prediction: RowPrediction | null;
}

/** How the review list is sorted. */
export type ReviewSort = "id" | "disagreement" | "confidence" | "predicted" | "label";

/** The label condition of a review query. */
export type ReviewLabelFilter = "any" | "labeled" | "unlabeled" | { class: number };

/** A review query: which round's predictions, sort, and filters (null = no filter). */
export interface ReviewQuery {
  round: number | null;
  sort: ReviewSort;
  descending: boolean;
  label: ReviewLabelFilter;
  predicted: number | null;
  disagreementMin: number | null;
  disagreementMax: number | null;
  networksDisagree: boolean;
  unsureOnly: boolean;
  queriedIn: number | null;
}

/** A page of the review list; `round` is the round whose predictions it shows (null: none yet). */
export interface ReviewPage {
  round: number | null;
  offset: number;
  total: number;
  rows: ReviewRow[];
}

/** Disagreement scores of a round in equal-width bins; `edges` has one more entry than `counts`. */
export interface Histogram {
  round: number;
  edges: number[];
  counts: number[];
}

/** One patch of a query batch, in rank order. */
export interface BatchItem {
  rank: number;
  reason: string;
  score: number | null;
  row: ReviewRow;
}

/** The current query batch: the newest finished round's queries. */
export interface QueryBatch {
  round: number;
  strategy: string | null;
  items: BatchItem[];
}

/** Accuracy and macro-F1 on `n` patches. */
export interface Score {
  n: number;
  accuracy: number;
  macroF1: number;
}

/** One round on the learning curve: labeled count and scores on held-out labels (and oracle labels, in a simulation). */
export interface CurvePoint {
  round: number;
  strategy: string | null;
  labeled: number;
  heldout: Score | null;
  oracle: Score | null;
  trainSeconds: number | null;
}

/** Network A's predicted class (rows) against network B's (columns) over the pool, in one round. */
export interface NetworkConfusion {
  round: number;
  classIds: number[];
  counts: number[][];
  agree: number;
  total: number;
}

/** A stored round, any status. */
export interface RoundInfo {
  id: number;
  status: "running" | "done" | "failed" | "cancelled";
  strategy: string | null;
  budget: number | null;
  device: string | null;
  model: string | null;
  labeled: number;
  metrics: Record<string, number>;
  note: string | null;
  error: string | null;
  startedAt: number;
  finishedAt: number | null;
  totalSeconds: number | null;
}

/** A device the user may pick; `available` is false for one this build or machine lacks (with the reason). */
export interface DeviceOption {
  id: string;
  label: string;
  available: boolean;
  reason: string | null;
}

/** The settings of one round started from the UI. */
export interface TrainSettings {
  preset: string;
  model: "small" | "resnet18" | "resnet50";
  size: number;
  iterations: number;
  batch: number;
  device: string;
  strategy: string;
  budget: number;
  /** Size of the initial random set drawn when nothing is labeled yet. */
  initial: number;
  seed: number;
  /** A local .safetensors file with backbone weights, or null. */
  pretrained: string | null;
}

/** What the training form offers. */
export interface TrainingOptions {
  devices: DeviceOption[];
  models: string[];
  presets: string[];
  strategies: string[];
  defaults: TrainSettings;
}

/** A progress event of a running round. */
export interface RoundProgress {
  round: number;
  stage: string;
  done: number;
  total: number | null;
  message: string | null;
  /** Named values of this step: loss, loss_sup, loss_cps, loss_con, lr, img_per_s... */
  metrics: Record<string, number>;
  elapsedSeconds: number;
  etaSeconds: number | null;
}

/** What a finished round reports. */
export interface RoundSummaryInfo {
  round: number;
  strategy: string;
  trained: boolean;
  device: string | null;
  labeled: number;
  queries: number[];
  toppedUp: number;
  note: string | null;
  totalSeconds: number;
  metrics: Record<string, number>;
}

/** The end of a round: its summary, or why it stopped. */
export interface RoundFinished {
  /** The round that ended (also a failed or cancelled one). */
  round: number;
  summary: RoundSummaryInfo | null;
  cancelled: boolean;
  error: AppErrorPayload | null;
}

/** Whether a round runs now, and its latest progress (for a window that opens mid-round). */
export interface TrainingState {
  running: boolean;
  progress: RoundProgress | null;
}

/** A file written by an export. */
export interface ExportResult {
  paths: string[];
  rows: number;
}
