import { describe, expect, it } from "vitest";
import { AppError, describeError, toAppError } from "./errors";

describe("toAppError", () => {
  it("keeps the code and message of a Rust error payload", () => {
    const e = toAppError({ code: "not_a_project", message: "/x.unisal is not a UniSAL project" });
    expect(e).toBeInstanceOf(AppError);
    expect(e.code).toBe("not_a_project");
    expect(e.message).toBe("/x.unisal is not a UniSAL project");
  });
  it("maps a plain string (IPC layer errors) to code ipc", () => {
    const e = toAppError("command open_x not found");
    expect(e.code).toBe("ipc");
    expect(e.message).toBe("command open_x not found");
    expect(toAppError("").message).toBe("unknown error");
  });
  it("maps JS errors and anything else to code internal", () => {
    expect(toAppError(new TypeError("boom"))).toMatchObject({ code: "internal", message: "boom" });
    expect(toAppError(42)).toMatchObject({ code: "internal", message: "unexpected error: 42" });
    expect(toAppError({ code: 1, message: "x" }).code).toBe("internal");
  });
  it("returns an AppError unchanged", () => {
    const e = new AppError("busy", "an import is running");
    expect(toAppError(e)).toBe(e);
  });
});

describe("describeError", () => {
  it("explains a missing project in words", () => {
    expect(describeError(new AppError("no_project", ""))).toMatch(/No project is open/);
  });
  it("shows other messages as they are", () => {
    expect(describeError(new AppError("import", "folder /x does not exist"))).toBe("folder /x does not exist");
  });
});
