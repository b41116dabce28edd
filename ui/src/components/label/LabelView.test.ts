// @vitest-environment jsdom
// Component tests of the label view: tiles and predictions, keys and buttons label only after the commit,
// counters, unsure, undo, zoom, typing in fields, and the empty-batch message.
import { beforeEach, describe, expect, it, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";

vi.mock("@tauri-apps/api/core", () => ({
  invoke: vi.fn(),
  convertFileSrc: (path: string, protocol: string) => `${protocol}://localhost/${path}`,
}));
vi.mock("@tauri-apps/api/event", () => ({ listen: vi.fn() }));

import LabelView from "./LabelView.svelte";
import { LabelingStore, type LabelApi } from "../../lib/stores/labeling.svelte";
import type { ClassInfo, LabelOutcome, ProjectStatus, QueryBatch } from "../../lib/types";

const classes: ClassInfo[] = [
  { id: 11, name: "TUM", color: "#d62728", hotkey: null, count: 0 },
  { id: 12, name: "STR", color: "#2ca02c", hotkey: null, count: 0 },
  { id: 13, name: "LYM", color: "#1f77b4", hotkey: "l", count: 0 },
];

function status(labeled: number): ProjectStatus {
  return { path: "/p.unisal", name: "p", patches: 40, labeled, unlabeled: 40 - labeled, rounds: 2, classes, imageKey: 3 };
}

const batch: QueryBatch = {
  round: 2,
  strategy: "unisal",
  items: [1, 2, 3].map((id, i) => ({
    rank: i,
    reason: "disagreement",
    score: 0.4,
    row: {
      id,
      width: 224,
      height: 224,
      source: `/data/${id}.png`,
      group: null,
      label: id === 2 ? 12 : null,
      unsure: false,
      prediction:
        id === 3
          ? null
          : { a: 11, confA: 0.873, b: 12, confB: 0.61, ensemble: 11, confidence: 0.7, disagreement: 0.2346 },
    },
  })),
};

/** An API double whose label calls wait until `release()`, so a test sees the tile before and after the commit. */
function fake(b: QueryBatch | null) {
  const resolvers: (() => void)[] = [];
  let labeled = 1;
  const outcome = (patchId: number, after: number | null): LabelOutcome => {
    labeled += after === null ? -1 : 1;
    return { patchId, before: null, after, status: status(labeled) };
  };
  const api = {
    queryBatch: vi.fn(async () => b),
    labelPatch: vi.fn(
      (id: number, cls: number) => new Promise<LabelOutcome>((r) => resolvers.push(() => r(outcome(id, cls)))),
    ),
    clearLabel: vi.fn(async (id: number) => outcome(id, null)),
    undoLabel: vi.fn(async (id: number | null) => outcome(id ?? 0, null)),
    setUnsure: vi.fn(async (_id: number, on: boolean) => on),
  } satisfies LabelApi;
  return { api, release: () => resolvers.shift()?.() };
}

async function setup(b: QueryBatch | null = batch) {
  const f = fake(b);
  const store = new LabelingStore(f.api);
  await store.load();
  const onStatus = vi.fn();
  const onError = vi.fn();
  const onTrain = vi.fn();
  const view = render(LabelView, { status: status(1), store, onStatus, onError, onTrain });
  return { ...f, store, onStatus, onError, onTrain, view };
}

const tiles = () => screen.getAllByTestId("query-tile");
const tile = (id: number) => tiles().find((t) => t.dataset.patchId === String(id))!;
const flush = () => new Promise((r) => setTimeout(r, 0));

beforeEach(() => {
  HTMLDialogElement.prototype.showModal = function () {
    this.setAttribute("open", "");
  };
});

describe("LabelView", () => {
  it("shows each tile's networks, confidences, disagreement, label and selection", async () => {
    await setup();
    expect(tiles().map((t) => t.dataset.patchId)).toEqual(["1", "2", "3"]);
    expect(tile(1).textContent).toContain("TUM");
    expect(tile(1).textContent).toContain("87%");
    expect(tile(1).textContent).toContain("STR");
    expect(tile(1).textContent).toContain("61%");
    expect(tile(1).textContent).toContain("0.235");
    expect(tile(3).textContent).toContain("initial random set");
    expect(tile(2).dataset.label).toBe("12");
    expect(tile(1).dataset.label).toBe("");
    expect(tile(1).getAttribute("aria-selected")).toBe("true");
    expect(screen.getByTestId("batch-labeled").textContent).toBe("1");
    expect(screen.getByTestId("batch-remaining").textContent).toBe("2");
    expect(screen.getByTestId("total-labeled").textContent).toBe("1");
  });

  it("renders a large batch in steps: the first screenfuls at once, every tile a few frames later", async () => {
    const big: QueryBatch = {
      round: 3,
      strategy: "unisal",
      items: Array.from({ length: 300 }, (_, i) => ({ ...batch.items[0], rank: i, row: { ...batch.items[0].row, id: 100 + i } })),
    };
    await setup(big);
    const first = tiles().length;
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThan(300);
    await vi.waitFor(() => expect(tiles().length).toBe(300), { timeout: 20000 });
    expect(screen.getByTestId("batch-remaining").textContent).toBe("300");
  });

  it("shows class buttons in order with their keys", async () => {
    await setup();
    const buttons = screen.getAllByTestId("class-button");
    expect(buttons.map((b) => b.dataset.className)).toEqual(["TUM", "STR", "LYM"]);
    expect(buttons.map((b) => b.querySelector("kbd")?.textContent)).toEqual(["1", "2", "L"]);
  });

  it("labels with a digit key, painting the tile only after the commit", async () => {
    const { api, release, onStatus } = await setup();
    await fireEvent.keyDown(window, { key: "2", code: "Digit2" });
    expect(api.labelPatch).toHaveBeenCalledWith(1, 12);
    // Not committed yet: no colour; the selection has moved on to the next unlabeled tile.
    expect(tile(1).dataset.label).toBe("");
    expect(tile(3).getAttribute("aria-selected")).toBe("true");
    expect(tile(1).getAttribute("aria-selected")).toBe("false");
    release();
    await flush();
    expect(tile(1).dataset.label).toBe("12");
    expect(screen.getByTestId("batch-labeled").textContent).toBe("2");
    expect(screen.getByTestId("batch-remaining").textContent).toBe("1");
    expect(onStatus).toHaveBeenCalledWith(expect.objectContaining({ labeled: 2 }));
  });

  it("labels with a class's own hotkey and with a click on a class button", async () => {
    const { api, release } = await setup();
    await fireEvent.keyDown(window, { key: "l", code: "KeyL" });
    expect(api.labelPatch).toHaveBeenLastCalledWith(1, 13);
    release();
    await flush();
    await fireEvent.click(screen.getAllByTestId("class-button")[0]);
    expect(api.labelPatch).toHaveBeenLastCalledWith(3, 11);
    release();
    await flush();
    expect(tile(3).dataset.label).toBe("11");
  });

  it("ignores keys typed into a field", async () => {
    const { api, view } = await setup();
    const input = document.createElement("input");
    view.container.appendChild(input);
    await fireEvent.keyDown(input, { key: "1", code: "Digit1" });
    expect(api.labelPatch).not.toHaveBeenCalled();
  });

  it("moves with arrows and selects on click", async () => {
    await setup();
    await fireEvent.keyDown(window, { key: "ArrowRight" });
    expect(tile(2).getAttribute("aria-selected")).toBe("true");
    await fireEvent.keyDown(window, { key: "ArrowLeft" });
    expect(tile(1).getAttribute("aria-selected")).toBe("true");
    await fireEvent.click(tile(3));
    expect(tile(3).getAttribute("aria-selected")).toBe("true");
    expect(tiles().filter((t) => t.getAttribute("aria-selected") === "true")).toHaveLength(1);
  });

  it("marks a tile unsure with U and back", async () => {
    const { api } = await setup();
    await fireEvent.keyDown(window, { key: "u", code: "KeyU" });
    await flush();
    expect(api.setUnsure).toHaveBeenCalledWith(1, true);
    expect(tile(1).querySelector("[data-testid='unsure-marker']")).not.toBeNull();
    await fireEvent.keyDown(window, { key: "u", code: "KeyU" });
    await flush();
    expect(tile(1).querySelector("[data-testid='unsure-marker']")).toBeNull();
  });

  it("undoes the newest label of the session with Z, and falls back to the project's with nothing left", async () => {
    const { api, release } = await setup();
    await fireEvent.keyDown(window, { key: "1", code: "Digit1" });
    release();
    await flush();
    expect(tile(1).dataset.label).toBe("11");
    await fireEvent.keyDown(window, { key: "z", code: "KeyZ", ctrlKey: true });
    await flush();
    expect(api.undoLabel).toHaveBeenLastCalledWith(1);
    expect(tile(1).dataset.label).toBe("");
    expect(tile(1).getAttribute("aria-selected")).toBe("true");
    await fireEvent.keyDown(window, { key: "z", code: "KeyZ" });
    await flush();
    expect(api.undoLabel).toHaveBeenLastCalledWith(null);
  });

  it("clears a label with Delete", async () => {
    const { api } = await setup();
    await fireEvent.click(tile(2));
    await fireEvent.keyDown(window, { key: "Delete" });
    await flush();
    expect(api.clearLabel).toHaveBeenCalledWith(2);
    expect(tile(2).dataset.label).toBe("");
  });

  it("opens the selected patch at full resolution with Space and closes it with Escape", async () => {
    await setup();
    await fireEvent.keyDown(window, { key: " ", code: "Space" });
    const zoom = screen.getByTestId("patch-zoom");
    expect(zoom.querySelector("img")?.getAttribute("src")).toBe("patch://localhost/3/full/1");
    expect(zoom.textContent).toContain("Network A");
    await fireEvent.keyDown(window, { key: "Escape" });
    expect(screen.queryByTestId("patch-zoom")).toBeNull();
  });

  it("tells the user to start a round when there is no batch", async () => {
    const { onTrain, api } = await setup(null);
    expect(screen.getByTestId("no-batch").textContent).toMatch(/Train tab/);
    expect(screen.queryAllByTestId("query-tile")).toHaveLength(0);
    await fireEvent.keyDown(window, { key: "1", code: "Digit1" });
    expect(api.labelPatch).not.toHaveBeenCalled();
    await fireEvent.click(screen.getByRole("button", { name: "Go to Train" }));
    expect(onTrain).toHaveBeenCalled();
  });

  it("reports a failed label and leaves the tile unlabeled", async () => {
    const { api, onError } = await setup();
    api.labelPatch.mockImplementationOnce(() => Promise.reject(new Error("database is locked")));
    await fireEvent.keyDown(window, { key: "1", code: "Digit1" });
    await flush();
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ message: "database is locked" }));
    expect(tile(1).dataset.label).toBe("");
    expect(tile(1).getAttribute("aria-selected")).toBe("true");
  });

  it("fetches the batch again only when the view is opened a second time", async () => {
    const { api, store, view } = await setup();
    expect(api.queryBatch).toHaveBeenCalledTimes(1);
    view.unmount();
    render(LabelView, { status: status(1), store, onStatus: vi.fn(), onError: vi.fn(), onTrain: vi.fn() });
    await flush();
    expect(api.queryBatch).toHaveBeenCalledTimes(2);
  });
});
