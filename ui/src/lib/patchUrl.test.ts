import { describe, expect, it, vi } from "vitest";

vi.mock("@tauri-apps/api/core", () => ({
  convertFileSrc: (path: string, protocol: string) => `${protocol}://localhost/${encodeURIComponent(path)}`,
}));

import { patchBase, patchUrl } from "./patchUrl";

describe("patchUrl", () => {
  it("builds Linux/macOS and Windows style addresses", () => {
    expect(patchUrl("patch://localhost/", "thumb", 12)).toBe("patch://localhost/thumb/12");
    expect(patchUrl("http://patch.localhost/", "full", 3)).toBe("http://patch.localhost/full/3");
    expect(patchUrl("http://patch.localhost", "thumb", 0)).toBe("http://patch.localhost/thumb/0");
  });
  it("accepts only non-negative integer ids", () => {
    expect(() => patchUrl("patch://localhost/", "thumb", -1)).toThrow(RangeError);
    expect(() => patchUrl("patch://localhost/", "thumb", 1.5)).toThrow(RangeError);
    expect(() => patchUrl("patch://localhost/", "thumb", Number.NaN)).toThrow(RangeError);
  });
  it("asks Tauri for the platform's base once", () => {
    expect(patchBase()).toBe("patch://localhost/");
  });
});
