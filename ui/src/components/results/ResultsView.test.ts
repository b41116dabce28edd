// @vitest-environment jsdom
import { render, screen, waitFor } from "@testing-library/svelte";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { CurvePoint, NetworkConfusion, ProjectStatus } from "../../lib/types";

const invoke = vi.fn();
vi.mock("@tauri-apps/api/core", () => ({ invoke: (...a: unknown[]) => invoke(...a), convertFileSrc: () => "patch://localhost/" }));
vi.mock("@tauri-apps/api/event", () => ({ listen: async () => () => {} }));

import ResultsView from "./ResultsView.svelte";

const status: ProjectStatus = {
  path: "/p/x.unisal",
  name: "x",
  patches: 100,
  labeled: 30,
  unlabeled: 70,
  rounds: 3,
  classes: [
    { id: 1, name: "tumor", color: "#d62728", hotkey: null, count: 20 },
    { id: 2, name: "stroma", color: "#2ca02c", hotkey: null, count: 10 },
  ],
  imageKey: 1,
};

function route(curve: CurvePoint[], confusion: NetworkConfusion | null) {
  invoke.mockImplementation(async (cmd: string) => {
    if (cmd === "learning_curve") return curve;
    if (cmd === "network_confusion") return confusion;
    throw { code: "internal", message: cmd };
  });
}

describe("ResultsView", () => {
  beforeEach(() => {
    invoke.mockReset();
  });

  it("plots the learning curve with the round on each point, the class counts and the confusion table", async () => {
    route(
      [
        { round: 2, strategy: "unisal", labeled: 40, heldout: { n: 20, accuracy: 0.5, macroF1: 0.4 }, oracle: null, trainSeconds: 5 },
        { round: 3, strategy: "unisal", labeled: 60, heldout: { n: 15, accuracy: 0.7, macroF1: 0.65 }, oracle: null, trainSeconds: 6 },
      ],
      { round: 3, classIds: [1, 2], counts: [[50, 5], [15, 30]], agree: 80, total: 100 },
    );
    render(ResultsView, { status, onStatus: vi.fn(), onError: vi.fn() });
    const svg = await screen.findByTestId("learning-curve");
    await waitFor(() => expect(svg.getAttribute("data-points")).toBe("4"));
    const titles = Array.from(svg.querySelectorAll("circle title")).map((t) => t.textContent);
    expect(titles[0]).toContain("Round 2: 40 labeled, accuracy (held-out labels) 50.0% on 20 patches");
    expect(svg.querySelectorAll("path").length).toBe(2);
    expect(screen.queryByTestId("learning-curve-empty")).toBeNull();

    const table = await screen.findByTestId("network-confusion");
    const cells = Array.from(table.querySelectorAll("tbody td")).map((td) => td.textContent?.trim());
    expect(cells).toEqual(["50", "5", "15", "30"]);
    expect(Array.from(table.querySelectorAll("thead th")).map((th) => th.textContent?.trim())).toEqual(["A \\ B", "tumor", "stroma"]);
    expect(screen.getByText(/agree on 80\.0% of 100 patches/)).toBeTruthy();

    const counts = screen.getByTestId("class-counts");
    expect(Array.from(counts.querySelectorAll("li")).map((li) => li.getAttribute("data-count"))).toEqual(["20", "10"]);
  });

  it("explains an empty curve and a missing confusion in words", async () => {
    route([{ round: 2, strategy: "unisal", labeled: 40, heldout: null, oracle: null, trainSeconds: 5 }], null);
    render(ResultsView, { status, onStatus: vi.fn(), onError: vi.fn() });
    expect((await screen.findByTestId("learning-curve-empty")).textContent).toMatch(/needs labels the round did not train on/);
    expect((await screen.findByTestId("network-confusion-empty")).textContent).toMatch(/No round has predictions yet/);
  });
});
