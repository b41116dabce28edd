// The training form's fields as typed text, their checks in words, and the TrainSettings they make.
import type { DeviceOption, TrainSettings, TrainingOptions } from "../../lib/types";

/** The form's fields as the user typed them. */
export interface TrainFields {
  preset: string;
  model: string;
  size: string;
  iterations: string;
  batch: string;
  device: string;
  strategy: string;
  budget: string;
  initial: string;
  seed: string;
  pretrained: string;
}

/** Fields of the form by name, for the problems map. */
export type FieldName = keyof TrainFields;

/** The fields filled from settings (the options' defaults, or the last round's). */
export function fieldsFrom(s: TrainSettings): TrainFields {
  return {
    preset: s.preset,
    model: s.model,
    size: String(s.size),
    iterations: String(s.iterations),
    batch: String(s.batch),
    device: s.device,
    strategy: s.strategy,
    budget: String(s.budget),
    initial: String(s.initial),
    seed: String(s.seed),
    pretrained: s.pretrained ?? "",
  };
}

/** The device to preselect: the wanted one if available, else the first available, else the wanted one. */
export function pickDevice(devices: DeviceOption[], wanted: string): string {
  const w = devices.find((d) => d.id === wanted);
  if (w?.available) return wanted;
  return devices.find((d) => d.available)?.id ?? wanted;
}

function wholeNumber(
  text: string,
  label: string,
  min: number,
  max: number,
): { value: number; problem: string | null } {
  const t = text.trim();
  if (t === "") return { value: 0, problem: `${label} is empty: enter a whole number from ${min} to ${max}.` };
  const n = Number(t);
  if (!Number.isInteger(n)) return { value: 0, problem: `${label} must be a whole number, not "${t}".` };
  if (n < min || n > max) {
    return { value: n, problem: `${label} must be from ${min.toLocaleString("en-US")} to ${max.toLocaleString("en-US")}; ${n.toLocaleString("en-US")} is out of range.` };
  }
  return { value: n, problem: null };
}

const MODELS: TrainSettings["model"][] = ["small", "resnet18", "resnet50"];

/** The settings the fields describe, or the problems (field -> sentence) that keep the round from starting. */
export function validateFields(
  f: TrainFields,
  options: TrainingOptions,
): { settings: TrainSettings | null; problems: Partial<Record<FieldName, string>> } {
  const problems: Partial<Record<FieldName, string>> = {};
  const num = (name: FieldName, label: string, min: number, max: number) => {
    const r = wholeNumber(f[name], label, min, max);
    if (r.problem) problems[name] = r.problem;
    return r.value;
  };
  const size = num("size", "Input size", 32, 1024);
  const iterations = num("iterations", "Iterations", 1, 1_000_000);
  const batch = num("batch", "Batch size", 2, 1024);
  const budget = num("budget", "Budget", 1, 1_000_000);
  const initial = num("initial", "Initial random set", 1, 1_000_000);
  const seed = num("seed", "Seed", 0, Number.MAX_SAFE_INTEGER);

  const device = options.devices.find((d) => d.id === f.device);
  if (!device) problems.device = `Choose a device: "${f.device}" is not one of this machine's.`;
  else if (!device.available) problems.device = `${device.label} cannot be used: ${device.reason ?? "not available"}.`;
  const model = MODELS.find((m) => m === f.model);
  if (!model || (options.models.length > 0 && !options.models.includes(f.model))) {
    problems.model = `Choose a model: "${f.model}" is not offered.`;
  }
  if (options.strategies.length > 0 && !options.strategies.includes(f.strategy)) {
    problems.strategy = `Choose a strategy: "${f.strategy}" is not offered.`;
  }
  if (options.presets.length > 0 && !options.presets.includes(f.preset)) {
    problems.preset = `Choose a preset: "${f.preset}" is not offered.`;
  }
  const pretrained = f.pretrained.trim();
  if (pretrained !== "") {
    if (!/^(\/|[A-Za-z]:[\\/]|\\\\)/.test(pretrained)) {
      problems.pretrained = `Pretrained weights: "${pretrained}" is not a full path.`;
    } else if (!/\.safetensors$/i.test(pretrained)) {
      problems.pretrained = `Pretrained weights must be a .safetensors file; "${pretrained}" is not.`;
    }
  }
  if (Object.keys(problems).length > 0 || !model) return { settings: null, problems };
  return {
    settings: {
      preset: f.preset,
      model,
      size,
      iterations,
      batch,
      device: f.device,
      strategy: f.strategy,
      budget,
      initial,
      seed,
      pretrained: pretrained === "" ? null : pretrained,
    },
    problems,
  };
}
