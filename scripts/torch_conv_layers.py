#!/usr/bin/env python3
"""Each convolution of a model, timed alone in PyTorch by pass, against the choices our binary logged.

  python3 scripts/torch_conv_layers.py --model resnet50 --size 224 --batch 128 [--tf32] [--ours LOG] [--json OUT]

Every distinct convolution geometry of the model (found by running its forward once with hooks) is timed on CUDA
with cudnn.benchmark on, fp32 (TF32 off unless --tf32): the forward, the backward-data and the backward-filter pass
each alone (aten.convolution_backward with one output asked for), the median of --reps calls after a warm-up, by
CUDA events. --ours reads the `cudnn-choice` lines that `UNISAL_CUDNN_LOG=1` makes our binary write (cuDNN's own
timing of the algorithm we chose) and prints both side by side, weighted by how often each geometry occurs in one
forward + backward of the model, with the total a step of one network takes in each.
"""
import argparse
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_resnet_ref import build  # noqa: E402

PASSES = ("forward", "backward-data", "backward-filter")


def geometries(model, size, batch, dev):
    """[(n, c, h, w, k, stride, pad, out), count, needs_dx] of each distinct convolution, in first-use order."""
    seen = {}

    def hook(mod, inputs, _out):
        n, c, h, w = inputs[0].shape
        k = mod.kernel_size[0]
        g = (n, c, h, w, k, mod.stride[0], mod.padding[0], mod.out_channels)
        entry = seen.setdefault(g, [0, False])
        entry[0] += 1
        # The first layer takes the images: nothing needs its input gradient.
        entry[1] = entry[1] or c != 3

    net = build(model, 5).to(dev)
    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(torch.randn(batch, 3, size, size, device=dev))
    for h in hooks:
        h.remove()
    return [(g, n, dx) for g, (n, dx) in seen.items()]


def time_ms(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def time_geometry(g, dev, reps):
    n, c, h, w, k, stride, pad, out = g
    x = torch.randn(n, c, h, w, device=dev)
    wt = torch.randn(out, c, k, k, device=dev) * 0.05
    y = F.conv2d(x, wt, None, stride, pad)
    dy = torch.randn_like(y)

    def bwd(mask):
        return lambda: torch.ops.aten.convolution_backward(
            dy, x, wt, None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], 1, mask
        )

    return {
        "forward": time_ms(lambda: F.conv2d(x, wt, None, stride, pad), reps),
        "backward-data": time_ms(bwd([True, False, False]), reps),
        "backward-filter": time_ms(bwd([False, True, False]), reps),
    }


def read_ours(path):
    """{(pass, geometry): cuDNN's time of our chosen algorithm, ms} from `cudnn-choice` lines (the last wins)."""
    ours = {}
    with open(path, errors="replace") as f:
        for line in f:
            if not line.startswith("cudnn-choice "):
                continue
            head = line.split("|")[0].split()
            # cudnn-choice <pass> n c h w k stride pad out dtype tf32 layout -> algo math ms
            g = tuple(int(v) for v in head[2:10])
            ours[(head[1], g)] = (float(head[-1]), int(head[-3]))
    return ours


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet50", choices=["resnet18", "resnet50"])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--ours")
    p.add_argument("--json")
    a = p.parse_args()
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cudnn.benchmark = True
    ours = read_ours(a.ours) if a.ours else {}
    rows, totals = [], {"torch": 0.0, "ours": 0.0, "ours_missing": 0}
    print(f"{'geometry (n c h w k s p out)':<34} {'x':>2} " + " ".join(f"{p:>22}" for p in PASSES))
    for g, count, needs_dx in geometries(a.model, a.size, a.batch, dev):
        t = time_geometry(g, dev, a.reps)
        row = {"geometry": g, "count": count, "torch_ms": t, "ours_ms": {}, "ours_algo": {}}
        cells = []
        for pas in PASSES:
            if pas == "backward-data" and not needs_dx:
                cells.append(f"{'-':>22}")
                continue
            mine = ours.get((pas, g))
            totals["torch"] += count * t[pas]
            if mine:
                row["ours_ms"][pas], row["ours_algo"][pas] = mine
                totals["ours"] += count * mine[0]
            elif ours:
                totals["ours_missing"] += 1
            cells.append(f"{t[pas]:8.3f} / {mine[0]:7.3f} a{mine[1]}" if mine else f"{t[pas]:8.3f}{'':>14}")
        rows.append(row)
        print(f"{' '.join(map(str, g)):<34} {count:>2} " + " ".join(f"{c:>22}" for c in cells))
    print(f"one network, forward + backward, ms: PyTorch {totals['torch']:.2f}", end="")
    if ours:
        print(f", ours (cuDNN's timing of our choices) {totals['ours']:.2f}, passes not in our log: "
              f"{totals['ours_missing']}")
    else:
        print()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "size": a.size, "batch": a.batch, "tf32": a.tf32,
                       "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                       "rows": rows, "totals": totals}, f, indent=1)


if __name__ == "__main__":
    main()
