// Tests of the theme choice: remembered value, system preference, data-theme on the root element.
import { describe, expect, it } from "vitest";
import { applyTheme, initialTheme, otherTheme, THEME_KEY, type ThemeStorage } from "./theme";

function memory(initial: Record<string, string> = {}): ThemeStorage & { data: Record<string, string> } {
  const data = { ...initial };
  return {
    data,
    getItem: (k) => (k in data ? data[k] : null),
    setItem: (k, v) => {
      data[k] = v;
    },
  };
}

describe("theme", () => {
  it("follows the system preference until a choice is remembered", () => {
    expect(initialTheme(memory(), true)).toBe("dark");
    expect(initialTheme(memory(), false)).toBe("light");
    expect(initialTheme(null, true)).toBe("dark");
  });
  it("prefers the remembered choice and ignores junk", () => {
    expect(initialTheme(memory({ [THEME_KEY]: "light" }), true)).toBe("light");
    expect(initialTheme(memory({ [THEME_KEY]: "dark" }), false)).toBe("dark");
    expect(initialTheme(memory({ [THEME_KEY]: "sepia" }), false)).toBe("light");
  });
  it("survives a storage that throws", () => {
    const broken: ThemeStorage = {
      getItem: () => {
        throw new Error("denied");
      },
      setItem: () => {
        throw new Error("denied");
      },
    };
    expect(initialTheme(broken, true)).toBe("dark");
    const root = { dataset: {} as Record<string, string> } as unknown as HTMLElement;
    applyTheme("light", root, broken);
    expect(root.dataset.theme).toBe("light");
  });
  it("toggles, sets data-theme and remembers it", () => {
    expect(otherTheme("light")).toBe("dark");
    expect(otherTheme("dark")).toBe("light");
    const store = memory();
    const root = { dataset: {} as Record<string, string> } as unknown as HTMLElement;
    applyTheme("dark", root, store);
    expect(root.dataset.theme).toBe("dark");
    expect(store.data[THEME_KEY]).toBe("dark");
    expect(initialTheme(store, false)).toBe("dark");
  });
});
