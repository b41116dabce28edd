// The label view's state: the current query batch as tiles, the selection, the undo stack of this session
// and the batch counters. Every change goes through the API and is applied only after it is committed;
// changes run one at a time, in the order the user asked for them.
import type { api as realApi } from "../api";
import { labelCommitted, labelPainted } from "../latency";
import type { BatchItem, LabelOutcome, QueryBatch, ReviewRow } from "../types";

/** The calls the store makes (the real `api`, or a double in tests). */
export type LabelApi = Pick<typeof realApi, "queryBatch" | "labelPatch" | "clearLabel" | "undoLabel" | "setUnsure">;

/** A direction of the arrow keys. */
export type Direction = "left" | "right" | "up" | "down";

/** One tile of the batch: fixed data of the patch plus its reactive label, flag and selection. */
export class BatchTile {
  readonly id: number;
  readonly rank: number;
  readonly reason: string;
  readonly score: number | null;
  readonly row: ReviewRow;
  label = $state<number | null>(null);
  unsure = $state(false);
  /** A label change of this tile is on its way to the project file. */
  pending = $state(false);
  selected = $state(false);

  constructor(item: BatchItem) {
    this.id = item.row.id;
    this.rank = item.rank;
    this.reason = item.reason;
    this.score = item.score;
    this.row = item.row;
    this.label = item.row.label;
    this.unsure = item.row.unsure;
  }
}

/** The index an arrow key moves to in a grid of `columns` columns; stays put at the edges. */
export function moveIndex(index: number, direction: Direction, columns: number, length: number): number {
  if (length <= 0) return 0;
  const cols = Math.max(1, Math.floor(columns));
  const i = Math.min(Math.max(0, index), length - 1);
  switch (direction) {
    case "left":
      return Math.max(0, i - 1);
    case "right":
      return Math.min(length - 1, i + 1);
    case "up":
      return i - cols >= 0 ? i - cols : i;
    case "down":
      return i + cols < length ? i + cols : i;
  }
}

/**
 * The first tile after `from` (wrapping around, `from` itself excluded) that is unlabeled and has no label
 * change pending; null when there is none.
 */
export function nextUnlabeled(
  tiles: readonly { label: number | null; pending: boolean }[],
  from: number,
): number | null {
  const n = tiles.length;
  for (let step = 1; step < n; step++) {
    const i = (from + step) % n;
    if (tiles[i].label === null && !tiles[i].pending) return i;
  }
  return null;
}

/** Patch ids of this session's label changes, newest last, bounded. */
export class UndoStack {
  #ids: number[] = [];
  constructor(readonly limit = 1000) {}
  push(id: number): void {
    this.#ids.push(id);
    if (this.#ids.length > this.limit) this.#ids.shift();
  }
  pop(): number | null {
    return this.#ids.pop() ?? null;
  }
  get size(): number {
    return this.#ids.length;
  }
}

/** The label view's store; one per open project, so the undo stack survives switching tabs. */
export class LabelingStore {
  tiles = $state.raw<BatchTile[]>([]);
  round = $state<number | null>(null);
  strategy = $state<string | null>(null);
  /** A batch request has answered at least once. */
  loaded = $state(false);
  selectedIndex = $state(0);
  readonly batchLabeled = $derived(this.tiles.reduce((n, t) => n + (t.label !== null ? 1 : 0), 0));
  readonly batchRemaining = $derived(this.tiles.length - this.batchLabeled);
  readonly undo = new UndoStack();
  /** The label view was left; its next opening fetches the batch again (relabels made elsewhere). */
  stale = false;
  #byId = new Map<number, BatchTile>();
  /** Patch ids with label changes on their way, and how many. */
  #pending = new Map<number, number>();
  #queue: Promise<unknown> = Promise.resolve();
  /** Changes queued or running. */
  #inFlight = 0;
  readonly #api: LabelApi;

  constructor(api: LabelApi) {
    this.#api = api;
  }

  /** Whether a query batch exists. */
  get hasBatch(): boolean {
    return this.round !== null;
  }

  /** The selected tile, if any. */
  get selected(): BatchTile | undefined {
    return this.tiles[this.selectedIndex];
  }

  /**
   * Runs `job` after every change asked for before it; with none on its way, at once (synchronously up to
   * its first await), so a label's request leaves before the view re-renders for the moved selection.
   */
  #enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.#inFlight === 0 ? job() : this.#queue.then(job);
    this.#inFlight += 1;
    const settle = () => {
      this.#inFlight -= 1;
    };
    this.#queue = run.then(settle, settle);
    return run;
  }

  /** Fetches the current batch (after pending changes), keeping the selection on the same patch if it is there. */
  load(): Promise<QueryBatch | null> {
    return this.#enqueue(async () => {
      const batch = await this.#api.queryBatch(null);
      this.setBatch(batch);
      return batch;
    });
  }

  /** Replaces the tiles with `batch` (null: no batch yet). */
  setBatch(batch: QueryBatch | null): void {
    const keep = batch !== null && batch.round === this.round ? this.selected?.id : undefined;
    const tiles = batch ? batch.items.map((item) => new BatchTile(item)) : [];
    for (const t of tiles) t.pending = this.#pending.has(t.id);
    this.#byId = new Map(tiles.map((t) => [t.id, t]));
    this.tiles = tiles;
    this.round = batch?.round ?? null;
    this.strategy = batch?.strategy ?? null;
    this.loaded = true;
    this.stale = false;
    let index = keep !== undefined ? tiles.findIndex((t) => t.id === keep) : -1;
    if (index < 0) {
      const first = tiles.findIndex((t) => t.label === null);
      index = first < 0 ? 0 : first;
    }
    this.selectedIndex = -1;
    this.select(index);
  }

  /** Selects the tile at `index` (clamped). */
  select(index: number): void {
    const n = this.tiles.length;
    const next = n === 0 ? 0 : Math.min(Math.max(0, index), n - 1);
    const old = this.tiles[this.selectedIndex];
    if (old) old.selected = false;
    this.selectedIndex = next;
    const tile = this.tiles[next];
    if (tile) tile.selected = true;
  }

  /** Moves the selection with an arrow key in a grid of `columns` columns. */
  move(direction: Direction, columns: number): void {
    this.select(moveIndex(this.selectedIndex, direction, columns, this.tiles.length));
  }

  /** Paints the outcome of a committed change on its tile, if the tile is in the batch. */
  #apply(outcome: LabelOutcome): BatchTile | undefined {
    const tile = this.#byId.get(outcome.patchId);
    if (tile) tile.label = outcome.after;
    return tile;
  }

  /** The tile of `id` in the current batch (a reload replaces the tile objects). */
  #tile(id: number): BatchTile | undefined {
    return this.#byId.get(id);
  }

  #setPending(id: number, on: boolean): void {
    const n = (this.#pending.get(id) ?? 0) + (on ? 1 : -1);
    if (n > 0) this.#pending.set(id, n);
    else this.#pending.delete(id);
    const tile = this.#tile(id);
    if (tile) tile.pending = n > 0;
  }

  /**
   * Labels the selected tile with `classId`. The selection moves on to the next unlabeled tile at once;
   * the tile shows its class once the label is committed. Resolves to the outcome (null: nothing selected);
   * on failure the selection returns to the tile if it has not moved since.
   */
  label(classId: number): Promise<LabelOutcome | null> {
    const tile = this.selected;
    if (!tile) return Promise.resolve(null);
    const started = performance.now();
    const id = tile.id;
    const next = nextUnlabeled(this.tiles, this.selectedIndex);
    const movedTo = next !== null ? this.tiles[next].id : id;
    // The request goes first; the pending mark and the moved selection render while it is on its way.
    const run = this.#enqueue(async () => {
      try {
        const outcome = await this.#api.labelPatch(id, classId);
        labelCommitted(started);
        this.#apply(outcome);
        labelPainted(started);
        this.undo.push(id);
        return outcome;
      } catch (e) {
        const back = this.#tile(id);
        if (back && this.selected?.id === movedTo) this.select(this.tiles.indexOf(back));
        throw e;
      } finally {
        this.#setPending(id, false);
      }
    });
    this.#setPending(id, true);
    if (next !== null) this.select(next);
    return run;
  }

  /** Removes the label of the selected tile (null: nothing selected or it has no label). */
  clear(): Promise<LabelOutcome | null> {
    const tile = this.selected;
    if (!tile || tile.label === null) return Promise.resolve(null);
    const id = tile.id;
    this.#setPending(id, true);
    return this.#enqueue(async () => {
      try {
        const outcome = await this.#api.clearLabel(id);
        this.#apply(outcome);
        this.undo.push(id);
        return outcome;
      } finally {
        this.#setPending(id, false);
      }
    });
  }

  /**
   * Undoes the newest label change of this session (or, with none left, the project's newest change) and
   * selects the tile it touched.
   */
  undoLast(): Promise<LabelOutcome> {
    return this.#enqueue(async () => {
      const id = this.undo.pop();
      let outcome: LabelOutcome;
      try {
        outcome = await this.#api.undoLabel(id);
      } catch (e) {
        if (id !== null) this.undo.push(id);
        throw e;
      }
      const tile = this.#apply(outcome);
      if (tile) this.select(this.tiles.indexOf(tile));
      return outcome;
    });
  }

  /** Flips the "unsure / second look" mark of the selected tile; resolves to the new state (null: nothing selected). */
  toggleUnsure(): Promise<boolean | null> {
    const tile = this.selected;
    if (!tile) return Promise.resolve(null);
    const id = tile.id;
    let known = tile.unsure;
    return this.#enqueue(async () => {
      // The state when this toggle runs (after earlier toggles), from the current tile if a reload replaced it.
      known = this.#tile(id)?.unsure ?? known;
      const now = await this.#api.setUnsure(id, !known);
      const current = this.#tile(id);
      if (current) current.unsure = now;
      return now;
    });
  }
}
