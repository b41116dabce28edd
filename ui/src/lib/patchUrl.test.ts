import { describe, expect, it, vi } from "vitest";

vi.mock("@tauri-apps/api/core", () => ({
  convertFileSrc: (path: string, protocol: string) => `${protocol}://localhost/${encodeURIComponent(path)}`,
}));

import { patchBase, patchUrl } from "./patchUrl";

describe("patchUrl", () => {
  it("builds Linux/macOS and Windows style addresses", () => {
    expect(patchUrl("patch://localhost/", 1, "thumb", 12)).toBe("patch://localhost/1/thumb/12");
    expect(patchUrl("http://patch.localhost/", 2, "full", 3)).toBe("http://patch.localhost/2/full/3");
    expect(patchUrl("http://patch.localhost", 5, "thumb", 0)).toBe("http://patch.localhost/5/thumb/0");
  });
  it("accepts only non-negative integer ids", () => {
    expect(() => patchUrl("patch://localhost/", 1, "thumb", -1)).toThrow(RangeError);
    expect(() => patchUrl("patch://localhost/", 1, "thumb", 1.5)).toThrow(RangeError);
    expect(() => patchUrl("patch://localhost/", 1, "thumb", Number.NaN)).toThrow(RangeError);
    expect(() => patchUrl("patch://localhost/", -2, "thumb", 1)).toThrow(/image key/);
  });
  it("asks Tauri for the platform's base once", () => {
    expect(patchBase()).toBe("patch://localhost/");
  });
});
