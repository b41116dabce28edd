// Tests of the label view's keyboard map: positions 1-20, Shift, own hotkeys, commands, typing in fields.
import { describe, expect, it } from "vitest";
import { hotkeyHint, isTypingTarget, keyAction, positionalKey, positionOfDigit, reservedKeyMeaning } from "./keys";
import type { ClassInfo } from "./types";

function classes(n: number, hotkeys: Record<number, string> = {}): ClassInfo[] {
  return Array.from({ length: n }, (_, i) => ({
    id: 100 + i,
    name: `c${i + 1}`,
    color: "#123456",
    hotkey: hotkeys[i] ?? null,
    count: 0,
  }));
}

const digit = (d: number, shift = false) => ({ key: shift ? "!@#$%^&*()"[d === 0 ? 9 : d - 1] : String(d), code: `Digit${d}`, shiftKey: shift });

describe("keyAction: classes by position", () => {
  const twenty = classes(20);
  it("maps 1-9 to the first nine classes and 0 to the tenth", () => {
    for (let d = 1; d <= 9; d++) expect(keyAction(digit(d), twenty)).toEqual({ kind: "label", classId: 100 + d - 1 });
    expect(keyAction(digit(0), twenty)).toEqual({ kind: "label", classId: 109 });
  });
  it("maps Shift+1-9 to classes 11-19 and Shift+0 to class 20, by physical key", () => {
    for (let d = 1; d <= 9; d++) expect(keyAction(digit(d, true), twenty)).toEqual({ kind: "label", classId: 110 + d - 1 });
    expect(keyAction(digit(0, true), twenty)).toEqual({ kind: "label", classId: 119 });
  });
  it("reads numpad digits", () => {
    expect(keyAction({ key: "4", code: "Numpad4" }, twenty)).toEqual({ kind: "label", classId: 103 });
  });
  it("ignores digits past the last class", () => {
    const three = classes(3);
    expect(keyAction(digit(4), three)).toBeNull();
    expect(keyAction(digit(1, true), three)).toBeNull();
    expect(keyAction(digit(0), classes(9))).toBeNull();
  });
  it("gives positions for digits", () => {
    expect(positionOfDigit(1, false)).toBe(0);
    expect(positionOfDigit(0, false)).toBe(9);
    expect(positionOfDigit(1, true)).toBe(10);
    expect(positionOfDigit(0, true)).toBe(19);
  });
});

describe("keyAction: own hotkeys", () => {
  it("lets a class's own letter win, case-insensitively", () => {
    const cs = classes(5, { 3: "t" });
    expect(keyAction({ key: "t", code: "KeyT" }, cs)).toEqual({ kind: "label", classId: 103 });
    expect(keyAction({ key: "T", code: "KeyT", shiftKey: true }, cs)).toEqual({ kind: "label", classId: 103 });
  });
  it("lets an own digit win over the positional digit", () => {
    // Class at position 2 owns "1": pressing 1 labels it, not the first class.
    const cs = classes(5, { 2: "1" });
    expect(keyAction(digit(1), cs)).toEqual({ kind: "label", classId: 102 });
    expect(keyAction(digit(2), cs)).toEqual({ kind: "label", classId: 101 });
  });
  it("lets an own hotkey override the letter commands, but not Ctrl+Z", () => {
    const cs = classes(2, { 1: "z" });
    expect(keyAction({ key: "z", code: "KeyZ" }, cs)).toEqual({ kind: "label", classId: 101 });
    expect(keyAction({ key: "z", code: "KeyZ", ctrlKey: true }, cs)).toEqual({ kind: "undo" });
  });
  it("matches multi-character key names such as F2", () => {
    const cs = classes(2, { 0: "F2" });
    expect(keyAction({ key: "F2", code: "F2" }, cs)).toEqual({ kind: "label", classId: 100 });
  });
});

describe("keyAction: commands", () => {
  const cs = classes(3);
  it("maps arrows, space, escape, undo, unsure and clear", () => {
    expect(keyAction({ key: "ArrowLeft" }, cs)).toEqual({ kind: "move", direction: "left" });
    expect(keyAction({ key: "ArrowRight" }, cs)).toEqual({ kind: "move", direction: "right" });
    expect(keyAction({ key: "ArrowUp" }, cs)).toEqual({ kind: "move", direction: "up" });
    expect(keyAction({ key: "ArrowDown" }, cs)).toEqual({ kind: "move", direction: "down" });
    expect(keyAction({ key: " ", code: "Space" }, cs)).toEqual({ kind: "zoom" });
    expect(keyAction({ key: "Escape" }, cs)).toEqual({ kind: "close" });
    expect(keyAction({ key: "z" }, cs)).toEqual({ kind: "undo" });
    expect(keyAction({ key: "Z", shiftKey: true }, cs)).toEqual({ kind: "undo" });
    expect(keyAction({ key: "z", ctrlKey: true }, cs)).toEqual({ kind: "undo" });
    expect(keyAction({ key: "z", metaKey: true }, cs)).toEqual({ kind: "undo" });
    expect(keyAction({ key: "u" }, cs)).toEqual({ kind: "unsure" });
    expect(keyAction({ key: "Backspace" }, cs)).toEqual({ kind: "clear" });
    expect(keyAction({ key: "Delete" }, cs)).toEqual({ kind: "clear" });
  });
  it("leaves other modified keys and unmapped keys alone", () => {
    expect(keyAction({ key: "1", code: "Digit1", ctrlKey: true }, cs)).toBeNull();
    expect(keyAction({ key: "z", ctrlKey: true, shiftKey: true }, cs)).toBeNull();
    expect(keyAction({ key: "1", code: "Digit1", altKey: true }, cs)).toBeNull();
    expect(keyAction({ key: "q", code: "KeyQ" }, cs)).toBeNull();
    expect(keyAction({ key: "Tab" }, cs)).toBeNull();
  });
});

describe("typing in fields", () => {
  const el = (tagName: string, extra: Record<string, unknown> = {}) => ({ tagName, ...extra }) as unknown as EventTarget;
  it("counts text inputs, sliders, text areas, selects and editable content", () => {
    expect(isTypingTarget(el("INPUT", { type: "text" }))).toBe(true);
    expect(isTypingTarget(el("input", { type: "" }))).toBe(true);
    expect(isTypingTarget(el("INPUT", { type: "range" }))).toBe(true);
    expect(isTypingTarget(el("TEXTAREA"))).toBe(true);
    expect(isTypingTarget(el("SELECT"))).toBe(true);
    expect(isTypingTarget(el("DIV", { isContentEditable: true }))).toBe(true);
  });
  it("does not count buttons, checkboxes, plain elements or no target", () => {
    expect(isTypingTarget(el("BUTTON"))).toBe(false);
    expect(isTypingTarget(el("INPUT", { type: "checkbox" }))).toBe(false);
    expect(isTypingTarget(el("DIV", { isContentEditable: false }))).toBe(false);
    expect(isTypingTarget(null)).toBe(false);
    expect(isTypingTarget(undefined)).toBe(false);
  });
  it("ignores every key typed into a field", () => {
    const cs = classes(3);
    const input = el("INPUT", { type: "text" });
    expect(keyAction({ key: "1", code: "Digit1", target: input }, cs)).toBeNull();
    expect(keyAction({ key: "z", ctrlKey: true, target: input }, cs)).toBeNull();
    expect(keyAction({ key: "ArrowDown", target: input }, cs)).toBeNull();
    expect(keyAction({ key: "1", code: "Digit1", target: el("BUTTON") }, cs)).toEqual({ kind: "label", classId: 100 });
  });
});

describe("hints", () => {
  it("names the positional keys of 20 classes", () => {
    expect(positionalKey(0)).toBe("1");
    expect(positionalKey(8)).toBe("9");
    expect(positionalKey(9)).toBe("0");
    expect(positionalKey(10)).toBe("⇧1");
    expect(positionalKey(19)).toBe("⇧0");
    expect(positionalKey(20)).toBeNull();
    expect(positionalKey(-1)).toBeNull();
  });
  it("shows the own hotkey first, and no digit another class took", () => {
    const cs = classes(22, { 0: "a", 4: "2" });
    expect(hotkeyHint(cs, 0)).toBe("A");
    expect(hotkeyHint(cs, 1)).toBeNull(); // "2" belongs to class 5
    expect(hotkeyHint(cs, 2)).toBe("3");
    expect(hotkeyHint(cs, 4)).toBe("2");
    expect(hotkeyHint(cs, 15)).toBe("⇧6");
    expect(hotkeyHint(cs, 21)).toBeNull();
    expect(hotkeyHint(cs, 30)).toBeNull();
  });
  it("names the commands a hotkey would override", () => {
    expect(reservedKeyMeaning("Z")).toBe("undo");
    expect(reservedKeyMeaning("u")).toBe("unsure");
    expect(reservedKeyMeaning("t")).toBeNull();
  });
});
