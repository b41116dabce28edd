#!/usr/bin/env python3
"""PyTorch reference for unisal-train's networks (plain torch.nn, no torchvision needed).

The models here follow torchvision's ResNet layout and state-dict names exactly (conv1, bn1, layer1.0.conv1, ...,
downsample.0/1, fc) plus UniSAL's projector `proj` (Linear(h -> 128), no bias), and the small CNN of
crates/unisal-train/src/models/small.rs. torch_bench.py imports them.

Run as a script (torch, numpy and safetensors in a venv outside the repository, e.g. /work/venv-torch):

    /work/venv-torch/bin/python scripts/torch_resnet_ref.py

It writes, under crates/unisal-train/tests/data/:
  - resnet18_w8.safetensors: a narrow ResNet-18 (base width 8 instead of 64, same layout; C = 5 + projector) from a
    fixed seed, with randomised BatchNorm affine parameters and running statistics (f32, torchvision-style file with
    num_batches_tracked);
  - resnet18_w8_ref.json: a fixed 2x3x32x32 input with the eval-mode and train-mode outputs (logits, proj, feat);
    for the 2x3x64x64 input in resnet18_w8_train_input.safetensors the train-mode outputs, the running statistics
    after that forward, and the gradients of loss = sum(logits * G) for a fixed G; all computed in float64 from the
    f32 weights;
  - resnet50_w4.safetensors and resnet50_w4_ref.json: the same for a narrow ResNet-50 (base width 4) on the 64 px
    input: eval and train outputs and gradients;
  - torchvision_resnet_keys.json: the state-dict key names and shapes of full-width ResNet-18 and ResNet-50 with
    1000 classes (torchvision's names; num_batches_tracked listed separately).
"""
import copy
import json
import os
import sys

import torch
import torch.nn as nn

PROJ_DIM = 128


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet (v1.5) with a base width and UniSAL's two heads."""

    def __init__(self, block, layers, num_classes, width=64, proj=True):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        h = width * 8 * block.expansion
        self.fc = nn.Linear(h, num_classes)
        self.proj = nn.Linear(h, PROJ_DIM, bias=False) if proj else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        feat = torch.flatten(self.avgpool(x), 1)
        return self.fc(feat), self.proj(feat), feat


class ConvBnRelu(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class SmallCnn(nn.Module):
    """The small CNN of unisal-train: blocks of w, 2w, 4w, 8w channels, stride 2 in blocks 1-3, GAP."""

    def __init__(self, num_classes, width=32):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        cin = 3
        for i, cout in enumerate(widths):
            setattr(self, f"block{i}", ConvBnRelu(cin, cout, 1 if i == 0 else 2))
            cin = cout
        self.fc = nn.Linear(cin, num_classes)
        self.proj = nn.Linear(cin, PROJ_DIM, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        for i in range(4):
            x = getattr(self, f"block{i}")(x)
        feat = x.mean(dim=(2, 3))
        return self.fc(feat), self.proj(feat), feat


def build(model, num_classes, width=None):
    if model == "small":
        return SmallCnn(num_classes, width or 32)
    if model == "resnet18":
        return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, width or 64)
    if model == "resnet50":
        return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, width or 64)
    raise ValueError(f"unknown model {model}")


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def main():
    from safetensors.torch import save_file

    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "unisal-train", "tests", "data")
    os.makedirs(out_dir, exist_ok=True)

    # Key names and shapes of the full-width networks (torchvision's, plus our proj.weight).
    keys = {}
    for name in ["resnet18", "resnet50"]:
        net = build(name, 1000)
        sd = net.state_dict()
        keys[name] = {
            "params_and_buffers": [[k, list(v.shape)] for k, v in sd.items() if not k.endswith("num_batches_tracked")],
            "num_batches_tracked": [k for k in sd if k.endswith("num_batches_tracked")],
        }
        # torchvision's state_dict has 122 (ResNet-18) and 320 (ResNet-50) entries; ours adds proj.weight.
        expected = {"resnet18": 122, "resnet50": 320}[name] + 1
        assert len(sd) == expected, (name, len(sd))
    with open(os.path.join(out_dir, "torchvision_resnet_keys.json"), "w") as f:
        json.dump(keys, f, indent=0)
    for name in keys:
        n = len(keys[name]["params_and_buffers"])
        print(f"{name}: {n} parameters and buffers (incl. proj.weight), {len(keys[name]['num_batches_tracked'])} "
              f"num_batches_tracked", file=sys.stderr)
        for k, shape in keys[name]["params_and_buffers"]:
            print(f"  {k} {shape}", file=sys.stderr)

    # The narrow ResNet-18 reference.
    torch.manual_seed(20261126)
    net = build("resnet18", 5, width=8)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    sd = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    save_file(sd, os.path.join(out_dir, "resnet18_w8.safetensors"))

    x = torch.randn(2, 3, 32, 32, dtype=torch.float32)
    # Train mode at 32 px leaves layer4's BatchNorm 2 values per channel (N=2, 1x1): so ill-conditioned that
    # PyTorch's own f32 forward is ~2e-3 away from f64. Train mode and gradients are therefore checked tightly on a
    # 2x3x64x64 input (2x2 in layer4; PyTorch f32 vs f64 ~3e-6), and at 32 px only loosely.
    x64 = torch.randn(2, 3, 64, 64, dtype=torch.float32)
    save_file({"input": x64.contiguous()}, os.path.join(out_dir, "resnet18_w8_train_input.safetensors"))
    g = torch.randn(2, 5, dtype=torch.float32)
    ref = {"input_shape": [2, 3, 32, 32], "input": flat(x), "grad_weights": flat(g), "num_classes": 5, "width": 8}

    net = net.double()
    net.eval()
    with torch.no_grad():
        logits, proj, feat = net(x.double())
    ref["eval"] = {"logits": flat(logits), "proj": flat(proj), "feat": flat(feat)}

    net32 = copy.deepcopy(net)
    net32.train()
    with torch.no_grad():
        logits, proj, feat = net32(x.double())
    ref["train32"] = {"logits": flat(logits), "proj": flat(proj), "feat": flat(feat)}
    # How far PyTorch's own f32 forward is from f64 here (relative to each tensor's largest magnitude).
    net32f = copy.deepcopy(net32).float()
    with torch.no_grad():
        got = net32f(x)
    ref["train32_torch_f32_rel_err"] = {
        k: float((a.double() - b).abs().max() / b.abs().max()) for k, a, b in zip(["logits", "proj", "feat"], got, (logits, proj, feat))
    }

    net.train()
    net.zero_grad()
    logits, proj, feat = net(x64.double())
    loss = (logits * g.double()).sum()
    loss.backward()
    ref["train_input_shape"] = [2, 3, 64, 64]
    ref["train"] = {"logits": flat(logits), "proj": flat(proj), "feat": flat(feat)}
    ref["train_running"] = {
        k: flat(net.state_dict()[k])
        for k in ["bn1.running_mean", "bn1.running_var", "layer4.1.bn2.running_mean", "layer4.1.bn2.running_var"]
    }
    ref["grads"] = {
        "conv1.weight": flat(net.conv1.weight.grad),
        "fc.weight": flat(net.fc.weight.grad),
        "fc.bias": flat(net.fc.bias.grad),
        "bn1.weight": flat(net.bn1.weight.grad),
        "layer1.0.conv1.weight": flat(net.layer1[0].conv1.weight.grad),
    }
    ref["loss"] = float(loss.detach())
    with open(os.path.join(out_dir, "resnet18_w8_ref.json"), "w") as f:
        json.dump(ref, f)
    # A narrow ResNet-50 (bottleneck blocks, base width 4, C = 5 + projector) on the same 64 px input.
    torch.manual_seed(50)
    net = build("resnet50", 5, width=4)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    save_file({k: v.detach().float().contiguous() for k, v in net.state_dict().items()},
              os.path.join(out_dir, "resnet50_w4.safetensors"))
    net32 = copy.deepcopy(net)
    net = net.double()
    ref50 = {"input": "resnet18_w8_train_input.safetensors", "grad_weights": flat(g)}
    net.eval()
    with torch.no_grad():
        logits, proj, feat = net(x64.double())
    ref50["eval"] = {"logits": flat(logits), "proj": flat(proj), "feat": flat(feat)}
    net.train()
    logits, proj, feat = net(x64.double())
    (logits * g.double()).sum().backward()
    ref50["train"] = {"logits": flat(logits), "proj": flat(proj), "feat": flat(feat)}
    ref50["grads"] = {"conv1.weight": flat(net.conv1.weight.grad), "fc.weight": flat(net.fc.weight.grad),
                      "layer4.2.bn3.weight": flat(net.layer4[2].bn3.weight.grad)}
    # This deep, narrow network is at the edge of f32 in train mode: record how far PyTorch's own f32 run is.
    net32.train()
    l32, p32, f32_ = net32(x64)
    (l32 * g).sum().backward()
    pairs = {"logits": (l32, logits), "proj": (p32, proj), "feat": (f32_, feat),
             "conv1.weight": (net32.conv1.weight.grad, net.conv1.weight.grad),
             "fc.weight": (net32.fc.weight.grad, net.fc.weight.grad),
             "layer4.2.bn3.weight": (net32.layer4[2].bn3.weight.grad, net.layer4[2].bn3.weight.grad)}
    ref50["train_torch_f32_rel_err"] = {
        k: float((a.detach().double() - b.detach()).abs().max() / b.detach().abs().max()) for k, (a, b) in pairs.items()
    }
    with open(os.path.join(out_dir, "resnet50_w4_ref.json"), "w") as f:
        json.dump(ref50, f)
    print(f"torch {torch.__version__}: wrote resnet18_w8.*, resnet50_w4.*, "
          f"torchvision_resnet_keys.json to {os.path.normpath(out_dir)}", file=sys.stderr)


if __name__ == "__main__":
    main()
