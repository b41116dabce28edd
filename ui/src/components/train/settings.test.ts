import { describe, expect, it } from "vitest";
import type { TrainingOptions } from "../../lib/types";
import { fieldsFrom, pickDevice, validateFields } from "./settings";

const options: TrainingOptions = {
  devices: [
    { id: "auto", label: "Automatic", available: true, reason: null },
    { id: "cpu", label: "CPU", available: true, reason: null },
    { id: "cuda", label: "CUDA", available: false, reason: "this build has no CUDA support" },
  ],
  models: ["small", "resnet18", "resnet50"],
  presets: ["cpu", "reference"],
  strategies: ["unisal", "random", "entropy"],
  defaults: {
    preset: "cpu",
    model: "small",
    size: 64,
    iterations: 200,
    batch: 16,
    device: "auto",
    strategy: "unisal",
    budget: 50,
    initial: 40,
    seed: 0,
    pretrained: null,
  },
};

describe("training settings", () => {
  it("turn the defaults into fields and back unchanged", () => {
    const r = validateFields(fieldsFrom(options.defaults), options);
    expect(r.problems).toEqual({});
    expect(r.settings).toEqual(options.defaults);
  });

  it("name each bad field in words", () => {
    const f = { ...fieldsFrom(options.defaults), size: "abc", iterations: "0", budget: "", batch: "2.5", seed: "-3" };
    const r = validateFields(f, options);
    expect(r.settings).toBeNull();
    expect(r.problems.size).toBe('Input size must be a whole number, not "abc".');
    expect(r.problems.iterations).toMatch(/^Iterations must be from 1 to 1,000,000/);
    expect(r.problems.budget).toMatch(/^Budget is empty/);
    expect(r.problems.batch).toMatch(/^Batch size must be a whole number/);
    expect(r.problems.seed).toMatch(/^Seed must be from 0/);
  });

  it("refuse an unavailable device with its reason, and unknown choices", () => {
    const r = validateFields({ ...fieldsFrom(options.defaults), device: "cuda", model: "vit", strategy: "magic" }, options);
    expect(r.problems.device).toBe("CUDA cannot be used: this build has no CUDA support.");
    expect(r.problems.model).toMatch(/"vit" is not offered/);
    expect(r.problems.strategy).toMatch(/"magic" is not offered/);
    expect(validateFields({ ...fieldsFrom(options.defaults), device: "tpu" }, options).problems.device).toMatch(/"tpu"/);
  });

  it("check the pretrained weights path and pass it trimmed", () => {
    const base = fieldsFrom(options.defaults);
    expect(validateFields({ ...base, pretrained: "weights.safetensors" }, options).problems.pretrained).toMatch(/not a full path/);
    expect(validateFields({ ...base, pretrained: "/w/r50.pth" }, options).problems.pretrained).toMatch(/\.safetensors/);
    const ok = validateFields({ ...base, pretrained: "  /w/r50.safetensors " }, options);
    expect(ok.settings?.pretrained).toBe("/w/r50.safetensors");
    expect(validateFields({ ...base, pretrained: "C:\\w\\r18.safetensors" }, options).settings?.pretrained).toBe("C:\\w\\r18.safetensors");
  });

  it("preselect an available device", () => {
    expect(pickDevice(options.devices, "cuda")).toBe("auto");
    expect(pickDevice(options.devices, "cpu")).toBe("cpu");
    expect(pickDevice([], "cpu")).toBe("cpu");
  });
});
