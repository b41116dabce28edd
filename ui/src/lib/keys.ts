// Keyboard map of the label view: which action a key press asks for (pure; the view performs it).
import type { ClassInfo } from "./types";

/** What a key press asks the label view to do. */
export type KeyAction =
  | { kind: "label"; classId: number }
  | { kind: "move"; direction: "left" | "right" | "up" | "down" }
  | { kind: "zoom" }
  | { kind: "close" }
  | { kind: "undo" }
  | { kind: "unsure" }
  | { kind: "clear" };

/** The parts of a KeyboardEvent the map reads. */
export interface KeyPress {
  key: string;
  code?: string;
  shiftKey?: boolean;
  ctrlKey?: boolean;
  metaKey?: boolean;
  altKey?: boolean;
  target?: EventTarget | null;
}

/** Most classes reachable by position: 1-9, 0 (10), Shift+1-9 (11-19), Shift+0 (20). */
export const POSITIONAL_CLASSES = 20;

const ARROWS: Record<string, "left" | "right" | "up" | "down"> = {
  ArrowLeft: "left",
  ArrowRight: "right",
  ArrowUp: "up",
  ArrowDown: "down",
};

const TEXT_INPUT_TYPES = new Set(["checkbox", "radio", "button", "submit", "reset", "color", "file", "image"]);

/**
 * Whether a key press belongs to a form field being edited: text inputs (and sliders, whose arrows move
 * them), text areas, selects and editable content. Checkboxes and buttons do not count.
 */
export function isTypingTarget(target: EventTarget | null | undefined): boolean {
  if (!target || typeof (target as { tagName?: unknown }).tagName !== "string") return false;
  const el = target as HTMLElement;
  const tag = el.tagName.toUpperCase();
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag === "INPUT") {
    const type = ((el as HTMLInputElement).type || "text").toLowerCase();
    return !TEXT_INPUT_TYPES.has(type);
  }
  return el.isContentEditable === true;
}

/** The digit 0-9 a key press carries through its physical key (works with Shift on any layout). */
function digitOf(press: KeyPress): number | null {
  const code = press.code ?? "";
  const m = /^(?:Digit|Numpad)([0-9])$/.exec(code);
  if (m) return Number(m[1]);
  if (/^[0-9]$/.test(press.key)) return Number(press.key);
  return null;
}

/** 0-based class position of a digit key: 1-9 -> 0-8, 0 -> 9; with Shift 10 more. */
export function positionOfDigit(digit: number, shift: boolean): number {
  const base = digit === 0 ? 9 : digit - 1;
  return shift ? base + 10 : base;
}

/** The class whose own hotkey is this key (case-insensitive), if any. */
export function classByHotkey(classes: readonly ClassInfo[], key: string): ClassInfo | undefined {
  if (key.length === 0) return undefined;
  const k = key.toLowerCase();
  return classes.find((c) => c.hotkey !== null && c.hotkey !== "" && c.hotkey.toLowerCase() === k);
}

/**
 * The action of a key press, or null when the label view should ignore it (typing in a field, modified
 * shortcuts it does not own, unmapped keys). `classes` are in position order.
 */
export function keyAction(press: KeyPress, classes: readonly ClassInfo[]): KeyAction | null {
  if (isTypingTarget(press.target)) return null;
  const key = press.key;
  const mod = press.ctrlKey === true || press.metaKey === true;
  if (mod) {
    if (!press.altKey && key.toLowerCase() === "z" && !press.shiftKey) return { kind: "undo" };
    return null;
  }
  if (press.altKey) return null;

  if (key in ARROWS) return { kind: "move", direction: ARROWS[key] };
  if (key === " " || key === "Spacebar") return { kind: "zoom" };
  if (key === "Escape") return { kind: "close" };
  if (key === "Backspace" || key === "Delete") return { kind: "clear" };

  // A class's own hotkey wins over the positional digits and the letter commands.
  const own = classByHotkey(classes, key);
  if (own) return { kind: "label", classId: own.id };

  const digit = digitOf(press);
  if (digit !== null) {
    const cls = classes[positionOfDigit(digit, press.shiftKey === true)];
    return cls ? { kind: "label", classId: cls.id } : null;
  }
  const lower = key.toLowerCase();
  if (lower === "z") return { kind: "undo" };
  if (lower === "u") return { kind: "unsure" };
  return null;
}

/** The positional key of a 0-based position ("1".."9", "0", "⇧1".."⇧0"), or null past 20. */
export function positionalKey(position: number): string | null {
  if (position < 0 || position >= POSITIONAL_CLASSES) return null;
  const digit = String((position % 10) + 1 === 10 ? 0 : (position % 10) + 1);
  return position >= 10 ? `⇧${digit}` : digit;
}

/**
 * The key shown on a class button: the class's own hotkey, else its positional key unless another
 * class's hotkey took that digit (then the class is reached by clicking only).
 */
export function hotkeyHint(classes: readonly ClassInfo[], position: number): string | null {
  const cls = classes[position];
  if (!cls) return null;
  if (cls.hotkey) return cls.hotkey.length === 1 ? cls.hotkey.toUpperCase() : cls.hotkey;
  const key = positionalKey(position);
  if (key === null) return null;
  if (position < 10 && classByHotkey(classes, key)) return null;
  return key;
}

/** Keys with a meaning of their own in the label view; a class hotkey on one of them overrides it. */
export function reservedKeyMeaning(hotkey: string): string | null {
  switch (hotkey.toLowerCase()) {
    case "z":
      return "undo";
    case "u":
      return "unsure";
    default:
      return null;
  }
}
