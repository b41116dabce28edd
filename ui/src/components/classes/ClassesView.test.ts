// @vitest-environment jsdom
// Component tests of the classes view: add, inline rename, colour, hotkey, reorder, API errors, 25 classes.
import { beforeEach, describe, expect, it, vi } from "vitest";
import { fireEvent, render, screen, within } from "@testing-library/svelte";

const invoke = vi.fn();
vi.mock("@tauri-apps/api/core", () => ({ invoke: (...args: unknown[]) => invoke(...args) }));
vi.mock("@tauri-apps/api/event", () => ({ listen: vi.fn() }));

import ClassesView from "./ClassesView.svelte";
import type { ClassInfo, ProjectStatus } from "../../lib/types";

function makeClasses(n: number): ClassInfo[] {
  return Array.from({ length: n }, (_, i) => ({
    id: i + 1,
    name: `class ${i + 1}`,
    color: "#336699",
    hotkey: i < 10 ? String((i + 1) % 10) : null,
    count: i,
  }));
}

function status(classes: ClassInfo[]): ProjectStatus {
  return { path: "/p.unisal", name: "p", patches: 0, labeled: 0, unlabeled: 0, rounds: 0, classes, imageKey: 1 };
}

function setup(n = 3) {
  const onStatus = vi.fn();
  const onError = vi.fn();
  const s = status(makeClasses(n));
  invoke.mockImplementation(async () => s);
  render(ClassesView, { status: s, onStatus, onError });
  return { onStatus, onError, s };
}

const row = (id: number) => screen.getAllByTestId("class-row").find((r) => r.dataset.classId === String(id))!;

// A block body: a function returned from beforeEach would be called as its teardown.
beforeEach(() => {
  invoke.mockReset();
});

describe("ClassesView", () => {
  it("lists 25 classes with their keys (own hotkeys, then Shift digits for 11-20, none past 20)", () => {
    setup(25);
    const rows = screen.getAllByTestId("class-row");
    expect(rows).toHaveLength(25);
    expect(within(rows[0]).getByTestId("class-rename")).toHaveProperty("value", "class 1");
    expect(rows[9].textContent).toContain("0");
    expect(rows[12].querySelector("kbd")?.textContent).toBe("⇧3");
    expect(rows[22].textContent).toContain("click only");
  });

  it("adds a class with the palette colour unless one is picked", async () => {
    const { onStatus } = setup();
    const name = screen.getByTestId("class-add-name");
    await fireEvent.input(name, { target: { value: "  Mucus " } });
    await fireEvent.click(screen.getByTestId("class-add"));
    expect(invoke).toHaveBeenCalledWith("add_class", { name: "Mucus", color: null, hotkey: null });
    await vi.waitFor(() => expect(onStatus).toHaveBeenCalled());
    expect((name as HTMLInputElement).value).toBe("");
    await fireEvent.input(name, { target: { value: "Fat" } });
    await fireEvent.click(screen.getByTestId("class-add-pick-color"));
    await fireEvent.input(screen.getByTestId("class-add-color"), { target: { value: "#ff8800" } });
    await fireEvent.click(screen.getByTestId("class-add"));
    expect(invoke).toHaveBeenLastCalledWith("add_class", { name: "Fat", color: "#ff8800", hotkey: null });
  });

  it("renames inline on Enter and ignores an unchanged or empty name", async () => {
    setup();
    const input = within(row(2)).getByTestId("class-rename") as HTMLInputElement;
    input.focus();
    await fireEvent.input(input, { target: { value: " Stroma " } });
    await fireEvent.keyDown(input, { key: "Enter" });
    await fireEvent.blur(input);
    expect(invoke).toHaveBeenCalledWith("rename_class", { id: 2, name: "Stroma" });
    invoke.mockClear();
    await fireEvent.input(input, { target: { value: "   " } });
    await fireEvent.blur(input);
    expect(invoke).not.toHaveBeenCalled();
    expect(input.value).toBe("class 2");
  });

  it("shows a refused rename via onError and puts the old name back", async () => {
    const { onError } = setup();
    invoke.mockImplementation(() => Promise.reject({ code: "class_exists", message: 'class "class 1" already exists' }));
    const input = within(row(2)).getByTestId("class-rename") as HTMLInputElement;
    await fireEvent.input(input, { target: { value: "class 1" } });
    await fireEvent.blur(input);
    await vi.waitFor(() => expect(onError).toHaveBeenCalledWith(expect.objectContaining({ code: "class_exists" })));
    expect(input.value).toBe("class 2");
  });

  it("sets a colour and a hotkey, and clears a hotkey", async () => {
    setup();
    await fireEvent.change(within(row(1)).getByTestId("class-color"), { target: { value: "#aa0000" } });
    expect(invoke).toHaveBeenCalledWith("set_class_color", { id: 1, color: "#aa0000" });
    const hk = within(row(3)).getByTestId("class-hotkey");
    await fireEvent.input(hk, { target: { value: "t" } });
    expect(invoke).toHaveBeenLastCalledWith("set_class_hotkey", { id: 3, hotkey: "t" });
    await fireEvent.input(within(row(1)).getByTestId("class-hotkey"), { target: { value: "" } });
    expect(invoke).toHaveBeenLastCalledWith("set_class_hotkey", { id: 1, hotkey: null });
  });

  it("warns when a hotkey takes the undo or unsure key", () => {
    const classes = makeClasses(2);
    classes[1].hotkey = "z";
    render(ClassesView, { status: status(classes), onStatus: vi.fn(), onError: vi.fn() });
    expect(row(2).textContent).toContain("replaces undo");
    expect(row(1).textContent).not.toContain("replaces");
  });

  it("moves classes up and down by 0-based position, not past the ends", async () => {
    setup();
    expect(within(row(1)).getByTestId("class-up")).toHaveProperty("disabled", true);
    expect(within(row(3)).getByTestId("class-down")).toHaveProperty("disabled", true);
    await fireEvent.click(within(row(2)).getByTestId("class-up"));
    expect(invoke).toHaveBeenLastCalledWith("move_class", { id: 2, position: 0 });
    await vi.waitFor(() => expect(within(row(2)).getByTestId("class-down")).toHaveProperty("disabled", false));
    await fireEvent.click(within(row(2)).getByTestId("class-down"));
    expect(invoke).toHaveBeenLastCalledWith("move_class", { id: 2, position: 2 });
  });
});
