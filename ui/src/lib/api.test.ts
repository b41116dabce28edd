import { beforeEach, describe, expect, it, vi } from "vitest";

const invoke = vi.fn();
vi.mock("@tauri-apps/api/core", () => ({ invoke: (...args: unknown[]) => invoke(...args) }));
vi.mock("@tauri-apps/api/event", () => ({ listen: vi.fn() }));

import { api } from "./api";
import { AppError } from "./errors";

describe("api", () => {
  beforeEach(() => {
    invoke.mockReset();
  });

  it("passes the command name and arguments as the Rust side expects them", async () => {
    invoke.mockResolvedValue({ offset: 200, total: 24, items: [] });
    const page = await api.patchPage(200, 100, "unlabeled");
    expect(invoke).toHaveBeenCalledWith("patch_page", { offset: 200, limit: 100, filter: "unlabeled" });
    expect(page.total).toBe(24);
    invoke.mockResolvedValue(undefined);
    await api.startImport("/data/x", "folders");
    expect(invoke).toHaveBeenLastCalledWith("start_import", { folder: "/data/x", labels: "folders" });
  });

  it("turns a rejected {code, message} into an AppError", async () => {
    invoke.mockImplementation(() => Promise.reject({ code: "not_found", message: "/p/x.unisal does not exist" }));
    let caught: unknown = null;
    try {
      await api.openProject("/p/x.unisal");
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(AppError);
    const err = caught as AppError;
    expect(err.code).toBe("not_found");
    expect(err.message).toBe("/p/x.unisal does not exist");
  });
});
