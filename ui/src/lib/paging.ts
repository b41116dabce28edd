// Paging of the patch grid: which page to ask for next, and how a returned page joins what is loaded.
import type { PatchPage, PatchTile } from "./types";

/** What the grid has loaded so far. `generation` changes when the list is reset (filter, import). */
export interface PagedTiles {
  items: PatchTile[];
  total: number | null;
  loading: boolean;
  generation: number;
}

/** An empty list of a new generation. */
export function resetPaged(previous?: PagedTiles): PagedTiles {
  return { items: [], total: null, loading: false, generation: (previous?.generation ?? 0) + 1 };
}

/** Whether every matching patch is loaded. */
export function isComplete(state: PagedTiles): boolean {
  return state.total !== null && state.items.length >= state.total;
}

/** The next page to request, or null when one is in flight or all are loaded. */
export function nextRange(state: PagedTiles, pageSize: number): { offset: number; limit: number } | null {
  if (pageSize <= 0) throw new RangeError("page size must be positive");
  if (state.loading || isComplete(state)) return null;
  const offset = state.items.length;
  const limit = state.total === null ? pageSize : Math.min(pageSize, state.total - offset);
  return limit > 0 ? { offset, limit } : null;
}

/**
 * Adds a page returned for `generation`. A page from an older generation, or one that does not start
 * where the loaded items end, is stale and ignored; ids already present are not added twice.
 */
export function applyPage(state: PagedTiles, page: PatchPage, generation: number): PagedTiles {
  if (generation !== state.generation || page.offset !== state.items.length) {
    return state;
  }
  const seen = new Set(state.items.map((t) => t.id));
  const fresh = page.items.filter((t) => !seen.has(t.id));
  return { ...state, items: state.items.concat(fresh), total: page.total, loading: false };
}

/** Replaces one tile (after a label change), keeping order. */
export function updateTile(state: PagedTiles, tile: PatchTile): PagedTiles {
  return { ...state, items: state.items.map((t) => (t.id === tile.id ? tile : t)) };
}
