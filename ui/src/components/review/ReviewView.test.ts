// @vitest-environment jsdom
import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { ProjectStatus, ReviewQuery, ReviewRow } from "../../lib/types";

const invoke = vi.fn();
vi.mock("@tauri-apps/api/core", () => ({ invoke: (...a: unknown[]) => invoke(...a), convertFileSrc: () => "patch://localhost/" }));
vi.mock("@tauri-apps/api/event", () => ({ listen: async () => () => {} }));

import { resetTraining } from "../../lib/stores/training.svelte";
import ReviewView from "./ReviewView.svelte";

const status: ProjectStatus = {
  path: "/p/x.unisal",
  name: "x",
  patches: 250,
  labeled: 1,
  unlabeled: 249,
  rounds: 2,
  classes: [
    { id: 11, name: "tumor", color: "#d62728", hotkey: null, count: 1 },
    { id: 12, name: "stroma", color: "#2ca02c", hotkey: null, count: 0 },
  ],
  imageKey: 3,
};

function row(id: number, label: number | null, disagreement: number): ReviewRow {
  return {
    id,
    width: 64,
    height: 64,
    source: `/d/${id}.png`,
    group: null,
    label,
    unsure: false,
    prediction: { a: 11, confA: 0.9, b: 12, confB: 0.6, ensemble: 11, confidence: 0.7, disagreement },
  };
}

const queries: { query: ReviewQuery; offset: number; limit: number }[] = [];

function route() {
  invoke.mockImplementation(async (cmd: string, args: Record<string, unknown>) => {
    switch (cmd) {
      case "review_page": {
        const a = args as { query: ReviewQuery; offset: number; limit: number };
        queries.push(a);
        return { round: 2, offset: a.offset, total: 250, rows: [row(a.offset + 1, 11, 0.42), row(a.offset + 2, null, 0.05)] };
      }
      case "disagreement_histogram":
        return { round: 2, edges: [0, 0.25, 0.5], counts: [200, 50] };
      case "rounds":
        return [];
      case "label_patch": {
        const a = args as { patchId: number; classId: number };
        return { patchId: a.patchId, before: null, after: a.classId, status: { ...status, labeled: 2 } };
      }
      case "set_unsure":
        return (args as { unsure: boolean }).unsure;
      default:
        throw { code: "internal", message: `unexpected ${cmd}` };
    }
  });
}

const last = () => queries[queries.length - 1];

describe("ReviewView", () => {
  beforeEach(() => {
    resetTraining();
    invoke.mockReset();
    queries.length = 0;
    route();
  });

  it("loads the first page and shows the total and rows with their disagreement", async () => {
    render(ReviewView, { status, onStatus: vi.fn(), onError: vi.fn() });
    await waitFor(() => expect(screen.getByTestId("review-total").textContent).toBe("250"));
    const rows = screen.getAllByTestId("review-row");
    expect(rows.map((r) => r.getAttribute("data-patch-id"))).toEqual(["1", "2"]);
    expect(rows[0].getAttribute("data-disagreement")).toBe("0.42");
    expect(rows[0].textContent).toContain("tumor");
    expect(last()).toMatchObject({ offset: 0, limit: 100, query: { sort: "id", descending: false, label: "any" } });
  });

  it("sends the sort, direction and filters, and clears them", async () => {
    render(ReviewView, { status, onStatus: vi.fn(), onError: vi.fn() });
    await screen.findAllByTestId("review-row");
    const before = queries.length;
    await fireEvent.change(screen.getByTestId("review-sort"), { target: { value: "disagreement" } });
    await fireEvent.click(screen.getByTestId("review-desc"));
    await fireEvent.change(screen.getByTestId("review-label"), { target: { value: "class:12" } });
    await fireEvent.click(screen.getByTestId("review-unsure"));
    await waitFor(() =>
      expect(last().query).toMatchObject({ sort: "disagreement", descending: true, label: { class: 12 }, unsureOnly: true }),
    );
    // Four quick changes: at most the first at once (leading edge) and one for the rest (debounced).
    expect(queries.length - before).toBeGreaterThanOrEqual(1);
    expect(queries.length - before).toBeLessThanOrEqual(2);
    await fireEvent.click(screen.getByTestId("review-clear-filters"));
    await waitFor(() =>
      expect(last().query).toMatchObject({ sort: "disagreement", descending: true, label: "any", unsureOnly: false }),
    );
  });

  it("filters to a histogram bar's range when it is clicked, and pages through the list", async () => {
    render(ReviewView, { status, onStatus: vi.fn(), onError: vi.fn() });
    await screen.findAllByTestId("review-row");
    await fireEvent.click(screen.getByTestId("review-next"));
    await waitFor(() => expect(last().offset).toBe(100));
    const bars = await screen.findAllByTestId("histogram-bar");
    expect(bars.map((b) => b.getAttribute("data-index"))).toEqual(["0", "1"]);
    await fireEvent.click(bars[1]);
    await waitFor(() => expect(last().query).toMatchObject({ round: 2, disagreementMin: 0.25, disagreementMax: 0.5 }));
    expect(last().offset).toBe(0);
    expect(bars[1].getAttribute("aria-pressed")).toBe("true");
  });

  it("relabels the selected row with a class button or a digit key and reports the new counts", async () => {
    const onStatus = vi.fn();
    render(ReviewView, { status, onStatus, onError: vi.fn() });
    const rows = await screen.findAllByTestId("review-row");
    await fireEvent.click(rows[1]);
    const stroma = screen.getAllByTestId("review-class").find((b) => b.getAttribute("data-class-name") === "stroma")!;
    await fireEvent.click(stroma);
    await waitFor(() => expect(invoke).toHaveBeenCalledWith("label_patch", { patchId: 2, classId: 12 }));
    await waitFor(() => expect(screen.getAllByTestId("review-row")[1].getAttribute("data-label")).toBe("12"));
    expect(onStatus).toHaveBeenCalledWith({ ...status, labeled: 2 });

    await fireEvent.keyDown(screen.getAllByTestId("review-row")[0], { key: "1", code: "Digit1" });
    await waitFor(() => expect(invoke).toHaveBeenCalledWith("label_patch", { patchId: 1, classId: 11 }));
    await fireEvent.keyDown(screen.getAllByTestId("review-row")[0], { key: "u" });
    await waitFor(() => expect(invoke).toHaveBeenCalledWith("set_unsure", { patchId: 1, unsure: true }));
    await waitFor(() => expect(screen.getAllByTestId("review-row")[0].getAttribute("data-unsure")).toBe("true"));
  });

  it("hands a failed load to onError", async () => {
    invoke.mockImplementation(async () => {
      throw { code: "no_project", message: "No project is open." };
    });
    const onError = vi.fn();
    render(ReviewView, { status, onStatus: vi.fn(), onError });
    await waitFor(() => expect(onError).toHaveBeenCalled());
    expect(onError.mock.calls[0][0].code).toBe("no_project");
  });
});
