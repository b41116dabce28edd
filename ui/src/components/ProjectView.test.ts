// @vitest-environment jsdom
// Component tests of the project view: the first tab (Label with a batch, Pool without), switching tabs,
// and a finished round reloading the query batch.
import { beforeEach, describe, expect, it, vi } from "vitest";
import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";

const invoke = vi.fn();
const handlers = new Map<string, (e: { payload: unknown }) => void>();
vi.mock("@tauri-apps/api/core", () => ({
  invoke: (...args: unknown[]) => invoke(...args),
  convertFileSrc: (path: string, protocol: string) => `${protocol}://localhost/${path}`,
}));
vi.mock("@tauri-apps/api/event", () => ({
  listen: async (name: string, handler: (e: { payload: unknown }) => void) => {
    handlers.set(name, handler);
    return () => handlers.delete(name);
  },
}));

import ProjectView from "./ProjectView.svelte";
import type { ProjectStatus, QueryBatch } from "../lib/types";

const status: ProjectStatus = {
  path: "/p.unisal",
  name: "p",
  patches: 5,
  labeled: 0,
  unlabeled: 5,
  rounds: 1,
  classes: [{ id: 1, name: "TUM", color: "#d62728", hotkey: "1", count: 0 }],
  imageKey: 1,
};

const batch: QueryBatch = {
  round: 1,
  strategy: "random",
  items: [
    {
      rank: 0,
      reason: "initial",
      score: null,
      row: { id: 4, width: 8, height: 8, source: "/4.png", group: null, label: null, unsure: false, prediction: null },
    },
  ],
};

function backend(b: QueryBatch | null) {
  invoke.mockImplementation(async (cmd: string) => {
    switch (cmd) {
      case "query_batch":
        return b;
      case "project_status":
        return status;
      case "patch_page":
        return { offset: 0, total: 0, items: [] };
      default:
        throw { code: "test", message: `unexpected command ${cmd}` };
    }
  });
}

const selectedTab = () => screen.getAllByRole("tab").find((t) => t.getAttribute("aria-selected") === "true")?.dataset.testid;

beforeEach(() => {
  invoke.mockReset();
  handlers.clear();
  vi.stubGlobal(
    "IntersectionObserver",
    class {
      observe() {}
      disconnect() {}
    },
  );
});

describe("ProjectView", () => {
  it("opens on the Label tab when a query batch exists", async () => {
    backend(batch);
    render(ProjectView, { status, onStatus: vi.fn(), onError: vi.fn() });
    await waitFor(() => expect(selectedTab()).toBe("tab-label"));
    expect(screen.getAllByTestId("query-tile")).toHaveLength(1);
    expect(screen.getAllByRole("tab").map((t) => t.dataset.testid)).toEqual([
      "tab-label",
      "tab-review",
      "tab-train",
      "tab-results",
      "tab-classes",
      "tab-pool",
      "tab-export",
    ]);
  });

  it("opens on the Pool tab without a batch, and switches tabs", async () => {
    backend(null);
    const onError = vi.fn();
    render(ProjectView, { status, onStatus: vi.fn(), onError });
    await waitFor(() => expect(selectedTab()).toBe("tab-pool"));
    expect(screen.getByTestId("patch-grid")).toBeTruthy();
    await fireEvent.click(screen.getByTestId("tab-classes"));
    expect(screen.getAllByTestId("class-row")).toHaveLength(1);
    expect(screen.queryByTestId("patch-grid")).toBeNull();
    await fireEvent.click(screen.getByTestId("tab-label"));
    expect(screen.getByTestId("no-batch")).toBeTruthy();
    expect(onError).not.toHaveBeenCalled();
  });

  it("loads the new batch when a round finishes", async () => {
    backend(null);
    const onStatus = vi.fn();
    render(ProjectView, { status, onStatus, onError: vi.fn() });
    await waitFor(() => expect(handlers.has("round-finished")).toBe(true));
    await fireEvent.click(screen.getByTestId("tab-label"));
    expect(screen.getByTestId("no-batch")).toBeTruthy();
    backend(batch);
    handlers.get("round-finished")!({ payload: { round: 2, summary: null, cancelled: false, error: null } });
    await waitFor(() => expect(screen.getAllByTestId("query-tile")).toHaveLength(1));
    await waitFor(() => expect(onStatus).toHaveBeenCalledWith(status));
  });
});
