// Light and dark theme: the choice is remembered in localStorage; without one the system preference decides.

/** The two themes of the UI. */
export type Theme = "light" | "dark";

/** localStorage key of the remembered theme. */
export const THEME_KEY = "unisal.theme";

/** Reading and writing the remembered theme (localStorage or a test double). */
export interface ThemeStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

function isTheme(value: unknown): value is Theme {
  return value === "light" || value === "dark";
}

/** The remembered theme, else dark when the system prefers dark, else light. Storage errors count as none. */
export function initialTheme(storage: ThemeStorage | null, prefersDark: boolean): Theme {
  try {
    const saved = storage?.getItem(THEME_KEY);
    if (isTheme(saved)) return saved;
  } catch {
    // Storage may be disabled; fall back to the system preference.
  }
  return prefersDark ? "dark" : "light";
}

/** The other theme. */
export function otherTheme(theme: Theme): Theme {
  return theme === "dark" ? "light" : "dark";
}

/** Sets `data-theme` on `root` (the <html> element) and remembers the choice when `storage` is given. */
export function applyTheme(theme: Theme, root: HTMLElement, storage: ThemeStorage | null): void {
  root.dataset.theme = theme;
  try {
    storage?.setItem(THEME_KEY, theme);
  } catch {
    // A theme that cannot be remembered still applies for this session.
  }
}

/** The browser's storage, or null where it is unavailable. */
export function browserStorage(): ThemeStorage | null {
  try {
    return typeof localStorage === "undefined" ? null : localStorage;
  } catch {
    return null;
  }
}

/** Whether the system asks for a dark colour scheme. */
export function systemPrefersDark(): boolean {
  return typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches;
}
