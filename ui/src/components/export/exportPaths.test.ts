import { describe, expect, it } from "vitest";
import { defaultExportPath, describeExport, exportPathProblem, folderOf, isAbsolutePath, parseRound } from "./exportPaths";

describe("export paths", () => {
  it("suggest files next to the project file", () => {
    expect(defaultExportPath("/data/p/crc.unisal", "crc", "labels")).toBe("/data/p/crc-labels.csv");
    expect(defaultExportPath("/data/p/crc.unisal", "crc", "predictions")).toBe("/data/p/crc-predictions.csv");
    expect(defaultExportPath("/data/p/crc.unisal", "crc", "model")).toBe("/data/p/crc-model");
    expect(defaultExportPath("C:\\Users\\a\\crc.unisal", "crc", "labels")).toBe("C:\\Users\\a\\crc-labels.csv");
    expect(defaultExportPath("/crc.unisal", "a/b", "labels")).toBe("/a_b-labels.csv");
    expect(folderOf("x.unisal")).toBe("");
  });

  it("tell absolute paths", () => {
    expect(isAbsolutePath("/x")).toBe(true);
    expect(isAbsolutePath("D:\\x")).toBe(true);
    expect(isAbsolutePath("\\\\srv\\share")).toBe(true);
    expect(isAbsolutePath("x/y")).toBe(false);
  });

  it("explain unusable paths in words", () => {
    expect(exportPathProblem("  ", "labels")).toMatch(/^Enter where/);
    expect(exportPathProblem("out.csv", "labels")).toMatch(/not a full path/);
    expect(exportPathProblem("/tmp/out/", "predictions")).toMatch(/names a folder/);
    expect(exportPathProblem("/tmp/m.csv", "model")).toMatch(/writes a folder/);
    expect(exportPathProblem("/tmp/m", "model")).toBeNull();
    expect(exportPathProblem("/tmp/l.csv", "labels")).toBeNull();
  });

  it("read the round field", () => {
    expect(parseRound("")).toEqual({ round: null, problem: null });
    expect(parseRound(" 3 ")).toEqual({ round: 3, problem: null });
    expect(parseRound("0").problem).toMatch(/round number/);
    expect(parseRound("x").problem).toMatch(/"x"/);
  });

  it("describe what was written", () => {
    expect(describeExport("labels", { paths: ["/a/l.csv"], rows: 1234 })).toBe("1,234 labels rows written to /a/l.csv.");
    expect(describeExport("model", { paths: ["/m/a.safetensors", "/m/a.json"], rows: 0 })).toBe(
      "Model written: 2 files (/m/a.safetensors, /m/a.json).",
    );
  });
});
