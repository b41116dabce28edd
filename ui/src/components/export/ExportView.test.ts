// @vitest-environment jsdom
import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { ProjectStatus } from "../../lib/types";

const invoke = vi.fn();
vi.mock("@tauri-apps/api/core", () => ({ invoke: (...a: unknown[]) => invoke(...a) }));
vi.mock("@tauri-apps/api/event", () => ({ listen: async () => () => {} }));

import ExportView from "./ExportView.svelte";

const status: ProjectStatus = {
  path: "/data/crc/crc.unisal",
  name: "crc",
  patches: 10,
  labeled: 3,
  unlabeled: 7,
  rounds: 2,
  classes: [],
  imageKey: 1,
};

describe("ExportView", () => {
  beforeEach(() => {
    invoke.mockReset();
  });

  it("suggests the labels CSV next to the project and writes it", async () => {
    invoke.mockResolvedValue({ paths: ["/data/crc/crc-labels.csv"], rows: 3 });
    render(ExportView, { status, onStatus: vi.fn(), onError: vi.fn() });
    const path = screen.getByTestId("export-path") as HTMLInputElement;
    expect(path.value).toBe("/data/crc/crc-labels.csv");
    await fireEvent.click(screen.getByTestId("export-labels"));
    await waitFor(() => expect(invoke).toHaveBeenCalledWith("export_labels", { path: "/data/crc/crc-labels.csv" }));
    await waitFor(() => expect(screen.getByTestId("export-result").textContent).toBe("3 labels rows written to /data/crc/crc-labels.csv."));
  });

  it("exports the model into a folder and lists the files", async () => {
    invoke.mockResolvedValue({ paths: ["/out/m/a.safetensors", "/out/m/b.safetensors", "/out/m/a.json", "/out/m/b.json"], rows: 0 });
    render(ExportView, { status, onStatus: vi.fn(), onError: vi.fn() });
    await fireEvent.input(screen.getByTestId("export-path"), { target: { value: "/out/m" } });
    await fireEvent.click(screen.getByTestId("export-model"));
    await waitFor(() => expect(invoke).toHaveBeenCalledWith("export_model", { folder: "/out/m", round: null }));
    await waitFor(() => expect(screen.getByTestId("export-result").textContent).toMatch(/^Model written: 4 files/));
  });

  it("refuses a model export to a CSV path in words, and hands a failed export to onError", async () => {
    const onError = vi.fn();
    render(ExportView, { status, onStatus: vi.fn(), onError });
    await fireEvent.click(screen.getByTestId("export-model"));
    expect(await screen.findByText(/The model export writes a folder/)).toBeTruthy();
    expect(invoke).not.toHaveBeenCalled();

    invoke.mockImplementation(async () => {
      throw { code: "no_predictions", message: "no round has predictions yet" };
    });
    await fireEvent.input(screen.getByTestId("export-path"), { target: { value: "/out/p.csv" } });
    await fireEvent.click(screen.getByTestId("export-predictions"));
    await waitFor(() => expect(onError).toHaveBeenCalled());
    expect(onError.mock.calls[0][0].message).toBe("no round has predictions yet");
    expect(screen.getByTestId("export-result").textContent).toBe("");
  });
});
