#!/usr/bin/env python3
"""How far PyTorch's own bf16 mixed precision is from fp32/f64 on the checks of our bf16 device tests.

The device tests (`tests/models_device.rs`: narrow_resnet18_in_bf16_is_close_to_pytorch_fp32_on_cuda;
`tests/layers_gradcheck_device.rs`: bf16_layers_match_the_cpu_reference) compare our bf16 layers with an f64
reference. This script measures the error that PyTorch's autocast to bf16 has on the same checks (CPU autocast: the
convolutions and linear layers in bf16, batch norm on bf16 activations with f32 parameters, as ours), so that a
tolerance is set from what bf16 itself costs, not guessed. Run (torch, safetensors in a venv outside the repository):

    /work/venv-torch/bin/python scripts/torch_bf16_error.py [--out results/bf16-error/torch-cpu.json]

For each tensor it prints two measures, both relative to the reference's largest magnitude:
  max: the largest elementwise error (what the tests assert today);
  rms: the root mean square of the error (robust to a few ReLU masks flipped by bf16 rounding).
"""
import argparse
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_resnet_ref import build  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "unisal-train", "tests", "data")
NAMES = ["fc.weight", "layer1.0.conv1.weight", "bn1.weight", "conv1.weight"]


def errors(got, expected):
    got, expected = got.detach().double().reshape(-1), expected.detach().double().reshape(-1)
    scale = expected.abs().max().clamp_min(1e-12)
    diff = (got - expected).abs()
    return {"max": float(diff.max() / scale), "rms": float(diff.pow(2).mean().sqrt() / scale)}


def narrow_resnet(amp):
    """The narrow ResNet-18 of tests/data in train mode on the 64 px input: logits and 4 gradients against f64."""
    from safetensors.torch import load_file

    ref = json.load(open(os.path.join(DATA, "resnet18_w8_ref.json")))
    net = build("resnet18", 5, width=8)
    net.load_state_dict(load_file(os.path.join(DATA, "resnet18_w8.safetensors")))
    net.train()
    x = load_file(os.path.join(DATA, "resnet18_w8_train_input.safetensors"))["input"]
    g = torch.tensor(ref["grad_weights"]).reshape(2, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        logits, _, _ = net(x)
    (logits.float() * g).sum().backward()
    params = dict(net.named_parameters())
    out = {"train logits": errors(logits.float(), torch.tensor(ref["train"]["logits"]))}
    for name in NAMES:
        out[f"grad {name}"] = errors(params[name].grad, torch.tensor(ref["grads"][name]))
    return out


def bn_relu_layer(seed):
    """The layer test's batch norm + ReLU in train mode, [8, 32, 14, 14], values uniform in [-1, 1): the input's
    gradient of sum(out * R) on bf16 activations against f64."""
    gen = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=gen, dtype=torch.float64) * 2 - 1  # noqa: E731
    x, w, b, r = u(8, 32, 14, 14), u(32), u(32), u(8, 32, 14, 14)
    res = {}
    for kind in ["f64", "bf16"]:
        xv = x.clone().requires_grad_(True)
        inp = xv if kind == "f64" else xv.float().bfloat16()
        wt, bt = (w, b) if kind == "f64" else (w.float(), b.float())
        y = torch.relu(nn.functional.batch_norm(inp, None, None, wt, bt, training=True, eps=1e-5))
        (y.double() * r).sum().backward()
        res[kind] = (xv.grad.clone(), y.double())
    flips = int(((res["f64"][1] > 0) != (res["bf16"][1] > 0)).sum())
    return {**errors(res["bf16"][0], res["f64"][0]), "relu_masks_flipped": flips, "elements": x.numel()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    a = p.parse_args()
    result = {
        "torch": torch.__version__,
        "device": "cpu (autocast bf16)",
        "narrow_resnet18_fp32": narrow_resnet(False),
        "narrow_resnet18_bf16": narrow_resnet(True),
        "bn_relu_bf16_input_grad": [bn_relu_layer(s) for s in range(5)],
    }
    for k in ["narrow_resnet18_fp32", "narrow_resnet18_bf16"]:
        print(k)
        for name, e in result[k].items():
            print(f"  {name:28} max {e['max']:.3e}  rms {e['rms']:.3e}")
    print("batch norm + relu, train, input gradient, bf16 input (5 seeds):")
    for e in result["bn_relu_bf16_input_grad"]:
        print(f"  max {e['max']:.3e}  rms {e['rms']:.3e}  masks flipped {e['relu_masks_flipped']} of {e['elements']}")
    if a.out:
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        json.dump(result, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
