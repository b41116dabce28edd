// @vitest-environment jsdom
// Component test of the top bar's theme toggle: data-theme on <html>, remembered across openings.
import { beforeEach, describe, expect, it, vi } from "vitest";
import { fireEvent, render, screen, waitFor } from "@testing-library/svelte";

const invoke = vi.fn();
vi.mock("@tauri-apps/api/core", () => ({
  invoke: (...args: unknown[]) => invoke(...args),
  convertFileSrc: (path: string, protocol: string) => `${protocol}://localhost/${path}`,
}));
vi.mock("@tauri-apps/api/event", () => ({ listen: async () => () => {} }));

import App from "./App.svelte";
import { THEME_KEY } from "./lib/theme";

beforeEach(() => {
  localStorage.clear();
  delete document.documentElement.dataset.theme;
  invoke.mockReset();
  invoke.mockImplementation(async (cmd: string) => (cmd === "recent_projects" ? [] : null));
});

describe("theme toggle", () => {
  it("follows the system preference first, then toggles and remembers the choice", async () => {
    vi.stubGlobal("matchMedia", (q: string) => ({ matches: q.includes("dark"), media: q }));
    const first = render(App);
    await waitFor(() => expect(invoke).toHaveBeenCalledWith("recent_projects", undefined));
    expect(document.documentElement.dataset.theme).toBe("dark");
    expect(localStorage.getItem(THEME_KEY)).toBeNull();
    await fireEvent.click(screen.getByTestId("theme-toggle"));
    expect(document.documentElement.dataset.theme).toBe("light");
    expect(localStorage.getItem(THEME_KEY)).toBe("light");
    first.unmount();
    render(App);
    expect(document.documentElement.dataset.theme).toBe("light");
    await fireEvent.click(screen.getByTestId("theme-toggle"));
    expect(document.documentElement.dataset.theme).toBe("dark");
    expect(localStorage.getItem(THEME_KEY)).toBe("dark");
    vi.unstubAllGlobals();
  });
});
