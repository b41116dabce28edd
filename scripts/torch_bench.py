#!/usr/bin/env python3
"""PyTorch twin of `unisal bench train|infer`: the same models (scripts/torch_resnet_ref.py, torchvision layout plus
UniSAL's projector), batch, size and steps, the same step, and the same JSON.

  python3 scripts/torch_bench.py train --device cpu|cuda --model small|resnet18|resnet50 --size N --batch N
      [--dual] [--steps N] [--warmup N] [--amp bf16|fp16|none] [--tf32] [--channels-last] [--json]
  python3 scripts/torch_bench.py infer ... (eval-mode forward, no autograd)

One train step = forward in train mode + cross-entropy on random labels + backward + SGD (momentum 0.9, weight
decay 5e-4) over all parameters. --dual: two networks, each runs forward on the whole batch (batch/2 "labeled" +
batch/2 "unlabeled", BatchNorm over all of it), supervised cross-entropy on the labeled half of each, summed, one
backward, one optimiser step. Random inputs and labels are generated once, on the device. The device is synchronised
at the end of every timed step. img_per_s = batch * steps / time of the timed steps.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_resnet_ref import build  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["train", "infer"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--model", default="small", choices=["small", "resnet18", "resnet50"])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dual", action="store_true")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--profile", action="store_true",
                   help="after the timed steps, profile 3 more with torch.profiler and print the top kernels (stderr)")
    a = p.parse_args()

    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(a.seed)
    if a.dual and (a.mode != "train" or a.batch < 2 or a.batch % 2):
        sys.exit("--dual needs train mode and an even batch >= 2")

    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    nets = [build(a.model, a.classes).to(dev, memory_format=fmt) for _ in range(2 if a.dual else 1)]
    params = [q for n in nets for q in n.parameters()]
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, a.classes, (a.batch,), device=dev)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.amp)
    scaler = torch.amp.GradScaler(dev.type, enabled=a.amp == "fp16")
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)

    def autocast():
        return torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    def train_step():
        with autocast():
            if a.dual:
                half = a.batch // 2
                loss = sum(F.cross_entropy(n(x)[0][:half].float(), y[:half]) for n in nets)
            else:
                loss = F.cross_entropy(nets[0](x)[0].float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def infer_step():
        with torch.inference_mode(), autocast():
            for n in nets:
                logits, proj, _ = n(x)

    if a.mode == "train":
        for n in nets:
            n.train()
        step = train_step
    else:
        for n in nets:
            n.eval()
        step = infer_step

    used = []  # device memory in use (total - free), sampled like unisal bench: end of a step, before the sync

    def sync():
        if dev.type == "cuda":
            free, total = torch.cuda.mem_get_info(dev)
            used.append((total - free) / 2**20)
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step()
    sync()
    times, host = [], []  # host: until the step's work is enqueued, before waiting for the device
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        host.append(time.perf_counter() - t0)
        sync()
        times.append(time.perf_counter() - t0)
    total = sum(times)
    out = {
        "framework": "torch",
        "torch_version": torch.__version__,
        "mode": a.mode,
        "device": a.device,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "model": a.model,
        "size": a.size,
        "batch": a.batch,
        "dual": a.dual,
        "steps": a.steps,
        "warmup": a.warmup,
        "amp": a.amp,
        "tf32": a.tf32,
        "channels_last": a.channels_last,
        "params": sum(q.numel() for q in params),
        "img_per_s": a.batch * a.steps / total,
        "ms_per_step": 1000 * total / a.steps,
        "ms_per_step_median": 1000 * statistics.median(times),
        "host_ms_per_step_median": 1000 * statistics.median(host),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if dev.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        out["device_used_mb"] = max(used)
    if a.profile:
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        with profile(activities=acts) as prof:
            for _ in range(3):
                step()
            sync()
        key = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=25), file=sys.stderr)
        if dev.type == "cuda":
            # Each op's own kernels (what our op profile's per-op GPU times compare with), all ops.
            print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=60), file=sys.stderr)
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:20} {v}")


if __name__ == "__main__":
    main()
