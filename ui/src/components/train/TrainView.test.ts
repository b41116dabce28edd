// @vitest-environment jsdom
import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { ProjectStatus, RoundInfo, TrainingOptions } from "../../lib/types";

const invoke = vi.fn();
const handlers = new Map<string, (e: { payload: unknown }) => void>();
vi.mock("@tauri-apps/api/core", () => ({ invoke: (...a: unknown[]) => invoke(...a), convertFileSrc: () => "patch://localhost/" }));
vi.mock("@tauri-apps/api/event", () => ({
  listen: async (name: string, h: (e: { payload: unknown }) => void) => {
    handlers.set(name, h);
    return () => handlers.delete(name);
  },
}));

import { resetTraining } from "../../lib/stores/training.svelte";
import TrainView from "./TrainView.svelte";
import TrainingPill from "./TrainingPill.svelte";

const options: TrainingOptions = {
  devices: [
    { id: "cpu", label: "CPU", available: true, reason: null },
    { id: "cuda", label: "CUDA", available: false, reason: "no NVIDIA driver found" },
  ],
  models: ["small", "resnet18"],
  presets: ["cpu"],
  strategies: ["unisal", "random"],
  defaults: {
    preset: "cpu",
    model: "small",
    size: 64,
    iterations: 100,
    batch: 16,
    device: "cpu",
    strategy: "unisal",
    budget: 20,
    initial: 30,
    seed: 1,
    pretrained: null,
  },
};

const status: ProjectStatus = {
  path: "/p/x.unisal",
  name: "x",
  patches: 100,
  labeled: 10,
  unlabeled: 90,
  rounds: 1,
  classes: [],
  imageKey: 1,
};

const pastRound: RoundInfo = {
  id: 1,
  status: "failed",
  strategy: "unisal",
  budget: 20,
  device: "cpu",
  model: "small",
  labeled: 10,
  metrics: {},
  note: null,
  error: "out of memory",
  startedAt: 0,
  finishedAt: 1,
  totalSeconds: 3,
};

function route(running = false) {
  invoke.mockImplementation(async (cmd: string) => {
    switch (cmd) {
      case "training_options":
        return options;
      case "training_state":
        return { running, progress: null };
      case "rounds":
        return [pastRound];
      case "start_round":
        return 2;
      case "cancel_round":
        return true;
      case "project_status":
        return { ...status, rounds: 2 };
      default:
        throw { code: "internal", message: `unexpected ${cmd}` };
    }
  });
}

function emit(name: string, payload: unknown) {
  const h = handlers.get(name);
  if (!h) throw new Error(`no listener for ${name}`);
  h({ payload });
}

describe("TrainView", () => {
  beforeEach(() => {
    resetTraining();
    invoke.mockReset();
    handlers.clear();
    route();
  });

  it("offers the devices, disabling an unavailable one with its reason, and lists past rounds", async () => {
    render(TrainView, { status, onStatus: vi.fn(), onError: vi.fn() });
    const device = (await screen.findByTestId("train-device")) as HTMLSelectElement;
    const cuda = Array.from(device.options).find((o) => o.value === "cuda")!;
    expect(cuda.disabled).toBe(true);
    expect(cuda.textContent).toContain("no NVIDIA driver found");
    expect(device.value).toBe("cpu");
    expect((screen.getByTestId("train-size") as HTMLInputElement).value).toBe("64");
    const row = await screen.findByText("out of memory");
    expect(row.closest("tr")?.getAttribute("data-status")).toBe("failed");
  });

  it("says what is wrong in words and sends nothing", async () => {
    render(TrainView, { status, onStatus: vi.fn(), onError: vi.fn() });
    const iterations = await screen.findByTestId("train-iterations");
    await fireEvent.input(iterations, { target: { value: "many" } });
    await fireEvent.click(screen.getByTestId("train-start"));
    expect(await screen.findByText('Iterations must be a whole number, not "many".')).toBeTruthy();
    expect(invoke.mock.calls.some(([c]) => c === "start_round")).toBe(false);
  });

  it("starts a round with the form's settings, shows live progress, cancels, and reports the end", async () => {
    const onStatus = vi.fn();
    render(TrainView, { status, onStatus, onError: vi.fn() });
    await fireEvent.input(await screen.findByTestId("train-budget"), { target: { value: "35" } });
    await fireEvent.change(screen.getByTestId("train-strategy"), { target: { value: "random" } });
    await fireEvent.click(screen.getByTestId("train-start"));
    await waitFor(() => expect(invoke).toHaveBeenCalledWith("start_round", expect.anything()));
    const sent = invoke.mock.calls.find(([c]) => c === "start_round")![1] as { settings: Record<string, unknown> };
    expect(sent.settings).toEqual({ ...options.defaults, budget: 35, strategy: "random" });

    const progress = await screen.findByTestId("train-progress");
    await waitFor(() => expect(handlers.has("round-progress")).toBe(true));
    emit("round-progress", {
      round: 2,
      stage: "train",
      done: 40,
      total: 100,
      message: null,
      metrics: { loss: 1.2, supervised: 0.8, images_per_s: 55 },
      elapsedSeconds: 8,
      etaSeconds: 12,
    });
    await waitFor(() => expect(progress.getAttribute("data-stage")).toBe("train"));
    expect(progress.textContent).toContain("Iteration 40 / 100");
    expect(progress.textContent).toContain("55 images/s");
    expect(progress.textContent).toContain("ETA 12 s");
    expect(progress.querySelectorAll("svg path").length).toBe(2);
    expect((screen.getByTestId("train-start") as HTMLButtonElement).disabled).toBe(true);

    await fireEvent.click(screen.getByTestId("train-cancel"));
    await waitFor(() => expect(invoke).toHaveBeenCalledWith("cancel_round", undefined));
    emit("round-finished", { round: 2, summary: null, cancelled: true, error: null });
    const result = await screen.findByTestId("train-result");
    expect(result.textContent).toContain("Round cancelled");
    expect(screen.queryByTestId("train-progress")).toBeNull();
    // The ended round's loss curves stay in view.
    expect(screen.getByTestId("loss-chart").querySelectorAll("path").length).toBe(2);
    await waitFor(() => expect(onStatus).toHaveBeenCalledWith({ ...status, rounds: 2 }));
  });

  it("shows a failed round's error in words", async () => {
    render(TrainView, { status, onStatus: vi.fn(), onError: vi.fn() });
    await screen.findByTestId("train-start");
    await waitFor(() => expect(handlers.has("round-finished")).toBe(true));
    emit("round-finished", { round: 2, summary: null, cancelled: false, error: { code: "learner", message: "round 2 failed while training: CUDA out of memory" } });
    const result = await screen.findByTestId("train-result");
    expect(result.textContent).toContain("CUDA out of memory");
    expect(result.getAttribute("data-outcome")).toBe("failed");
  });
});

describe("TrainingPill", () => {
  beforeEach(() => {
    resetTraining();
    invoke.mockReset();
    handlers.clear();
  });

  it("shows the running round's stage and percentage, and nothing otherwise", async () => {
    route(false);
    render(TrainingPill);
    await waitFor(() => expect(handlers.has("round-progress")).toBe(true));
    expect(screen.queryByTestId("training-pill")).toBeNull();
    emit("round-progress", { round: 5, stage: "train", done: 45, total: 100, message: null, metrics: {}, elapsedSeconds: 1, etaSeconds: 2 });
    expect((await screen.findByTestId("training-pill")).textContent).toContain("Training round 5 · training · 45%");
    emit("round-finished", { round: 2, summary: null, cancelled: true, error: null });
    await waitFor(() => expect(screen.queryByTestId("training-pill")).toBeNull());
  });
});
