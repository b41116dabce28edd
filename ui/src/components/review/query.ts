// The review list's query: the controls' state, the ReviewQuery it sends, histogram bins as disagreement
// ranges, and a row updated after a relabel. Pure: unit tested.
import type { Histogram, ReviewLabelFilter, ReviewQuery, ReviewRow, ReviewSort } from "../../lib/types";

/** Rows per review page. */
export const REVIEW_PAGE = 100;

/** The sorts the review offers, with their names in words. */
export const SORTS: { value: ReviewSort; label: string }[] = [
  { value: "id", label: "Patch id" },
  { value: "disagreement", label: "Disagreement" },
  { value: "confidence", label: "Ensemble confidence" },
  { value: "predicted", label: "Predicted class" },
  { value: "label", label: "Label" },
];

/** The query the review starts with: newest round, by id ascending, no filters. */
export function defaultQuery(): ReviewQuery {
  return {
    round: null,
    sort: "id",
    descending: false,
    label: "any",
    predicted: null,
    disagreementMin: null,
    disagreementMax: null,
    networksDisagree: false,
    unsureOnly: false,
    queriedIn: null,
  };
}

/** Whether any filter is set (the sort does not count). */
export function hasFilters(q: ReviewQuery): boolean {
  const d = defaultQuery();
  return (
    q.label !== d.label ||
    q.predicted !== null ||
    q.disagreementMin !== null ||
    q.disagreementMax !== null ||
    q.networksDisagree ||
    q.unsureOnly ||
    q.queriedIn !== null
  );
}

/** The query with every filter cleared and the sort kept. */
export function clearFilters(q: ReviewQuery): ReviewQuery {
  return { ...defaultQuery(), round: q.round, sort: q.sort, descending: q.descending };
}

/** The label filter as a select value: "any", "labeled", "unlabeled" or "class:ID". */
export function labelFilterValue(f: ReviewLabelFilter): string {
  return typeof f === "string" ? f : `class:${f.class}`;
}

/** The label filter a select value stands for (unknown values mean "any"). */
export function parseLabelFilter(value: string): ReviewLabelFilter {
  if (value === "labeled" || value === "unlabeled" || value === "any") return value;
  const m = /^class:(\d+)$/.exec(value);
  return m ? { class: Number(m[1]) } : "any";
}

/** A nullable class id as a select value ("" = none), and back. */
export function optionalIdValue(id: number | null): string {
  return id === null ? "" : String(id);
}
export function parseOptionalId(value: string): number | null {
  if (value.trim() === "") return null;
  const n = Number(value);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** The disagreement range of histogram bin `index` (both ends inclusive, as the query reads them). */
export function binRange(h: Histogram, index: number): { min: number; max: number } {
  if (!Number.isInteger(index) || index < 0 || index >= h.counts.length || index + 1 >= h.edges.length) {
    throw new RangeError(`no histogram bin ${index}`);
  }
  return { min: h.edges[index], max: h.edges[index + 1] };
}

/**
 * The query after a click on histogram bin `index`: filtered to that bin's range, sorted by disagreement
 * (the sort kept if the user chose one). A click on the bin already selected clears the range.
 */
export function applyBin(q: ReviewQuery, h: Histogram, index: number): ReviewQuery {
  const { min, max } = binRange(h, index);
  if (q.disagreementMin === min && q.disagreementMax === max) {
    return { ...q, disagreementMin: null, disagreementMax: null };
  }
  return { ...q, round: h.round, disagreementMin: min, disagreementMax: max };
}

/** The index of the bin the query's range selects, or null. */
export function selectedBin(q: ReviewQuery, h: Histogram | null): number | null {
  if (!h || q.disagreementMin === null || q.disagreementMax === null) return null;
  for (let i = 0; i < h.counts.length; i++) {
    if (h.edges[i] === q.disagreementMin && h.edges[i + 1] === q.disagreementMax) return i;
  }
  return null;
}

/** A stable key of a query, to tell whether a reply answers the query now shown. */
export function queryKey(q: ReviewQuery, offset: number): string {
  return JSON.stringify([q, offset]);
}

/** The rows with one patch's label (and unsure flag) replaced. */
export function withLabel(rows: ReviewRow[], patchId: number, label: number | null): ReviewRow[] {
  return rows.map((r) => (r.id === patchId ? { ...r, label } : r));
}
export function withUnsure(rows: ReviewRow[], patchId: number, unsure: boolean): ReviewRow[] {
  return rows.map((r) => (r.id === patchId ? { ...r, unsure } : r));
}

/** "1–100 of 4,000" for a page, or "none" when empty. */
export function pageRange(offset: number, count: number, total: number): string {
  if (total === 0 || count === 0) return "none";
  const fmt = (n: number) => n.toLocaleString("en-US");
  return `${fmt(offset + 1)}–${fmt(offset + count)} of ${fmt(total)}`;
}

/** The offset of the previous or next page, clamped to the list. */
export function pageOffset(offset: number, total: number, direction: -1 | 1, size = REVIEW_PAGE): number {
  const next = offset + direction * size;
  if (next < 0) return 0;
  if (next >= total) return offset;
  return next;
}
