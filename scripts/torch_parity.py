#!/usr/bin/env python3
"""Reference values for unisal-train's parity tests, computed with PyTorch in float64.

Writes crates/unisal-train/tests/data/parity.json: fixed small inputs (logits of networks A and B for 6
labeled + 6 unlabeled images, 4 classes; 8-d projections), the three UniSAL loss terms of
shared/method/UNISAL.md section 1.3 (the contrastive loss in its clean symmetric form and in the reference's
"faithful" form: negatives only j > i, last image of the batch unused), their gradients with respect to the
logits and projections, and two steps of torch.optim.SGD (momentum 0.9, weight decay) on a small parameter.

The losses are written here with explicit per-image loops, independently of the Rust matrix formulation.

Usage: /work/venv-torch/bin/python scripts/torch_parity.py [OUT.json]
"""

import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

NL, NU, C, D = 6, 6, 4, 8
TAU, T, LAMBDA, W_CL = 0.7, 0.15, 0.5, 0.1


def inputs():
    rng = np.random.RandomState(20261126)
    la = rng.randn(NL + NU, C) * 1.5
    lb = rng.randn(NL + NU, C) * 1.5
    # unlabeled rows 6, 7, 11 are confident (> tau) in both networks and agree; row 8 is confident in A only;
    # row 10 is confident in both but they disagree; row 9 is unconfident in both. The last row (11) has a
    # contrastive label, so the faithful form's "last image unused" quirk changes the result.
    la[6, 2] += 5.0
    lb[6, 2] += 5.0
    la[7, 0] += 4.0
    lb[7, 0] += 4.5
    la[11, 3] += 6.0
    lb[11, 3] += 5.0
    la[8, 3] += 5.0
    la[10, 1] += 5.0
    lb[10, 3] += 5.0
    la[9] = [0.1, -0.2, 0.05, 0.0]
    lb[9] = [-0.3, 0.2, 0.0, 0.1]
    labels = [0, 1, 2, 3, 1, 2]
    za = rng.randn(NL + NU, D)
    zb = za * 0.5 + rng.randn(NL + NU, D) * 0.8
    return la, lb, labels, za, zb


def supervised(la, lb, y):
    return F.cross_entropy(la[:NL], y) + F.cross_entropy(lb[:NL], y)


def pseudo(student_u, teacher_u):
    p = torch.softmax(teacher_u.detach(), dim=1)
    conf, lab = p.max(dim=1)
    mask = (conf > TAU).double()
    ce = F.cross_entropy(student_u, lab, reduction="none")
    return (mask * ce).sum() / student_u.shape[0], lab, conf > TAU


def contrastive(za, zb, cl_labels, faithful):
    n = za.shape[0]
    usable = n - 1 if faithful else n
    total = torch.zeros(())
    count = 0
    for i in range(usable):
        if cl_labels[i] is None:
            continue
        pos = torch.exp(F.cosine_similarity(zb[i], za[i], dim=0) / T)
        neg = torch.zeros(())
        has_neg = False
        for j in range(i + 1 if faithful else 0, usable):
            if j == i or cl_labels[j] is None or cl_labels[j] == cl_labels[i]:
                continue
            has_neg = True
            neg = neg + torch.exp(F.cosine_similarity(zb[i], zb[j], dim=0) / T)
            neg = neg + torch.exp(F.cosine_similarity(za[i], za[j], dim=0) / T)
        if has_neg:
            total = total - torch.log(pos / (pos + neg))
            count += 1
    return total / (1 + count), count


def grads(value, tensors):
    gs = torch.autograd.grad(value, tensors, allow_unused=True, retain_graph=True)
    return [None if g is None else g.tolist() for g in gs]


def sgd_steps():
    w0 = [0.5, -1.0, 2.0, 0.0, -0.25]
    a = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5])
    b = torch.tensor([0.3, -0.2, 0.1, 0.4, -0.5])
    w = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.05, momentum=0.9, weight_decay=0.01)
    after = []
    for _ in range(2):
        opt.zero_grad()
        loss = 0.5 * (a * w * w).sum() + (b * w).sum()
        loss.backward()
        opt.step()
        after.append(w.detach().tolist())
    return {
        "w0": w0, "a": a.tolist(), "b": b.tolist(), "lr": 0.05, "momentum": 0.9, "weight_decay": 0.01,
        "loss": "0.5 * sum(a * w^2) + sum(b * w)", "after_step": after,
    }


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "crates/unisal-train/tests/data/parity.json"
    la_np, lb_np, labels, za_np, zb_np = inputs()
    la = torch.tensor(la_np, requires_grad=True)
    lb = torch.tensor(lb_np, requires_grad=True)
    za = torch.tensor(za_np, requires_grad=True)
    zb = torch.tensor(zb_np, requires_grad=True)
    y = torch.tensor(labels)

    sup = supervised(la, lb, y)
    ps_a, lab_b, conf_b = pseudo(la[NL:], lb[NL:])
    ps_b, lab_a, conf_a = pseudo(lb[NL:], la[NL:])
    cl_labels = list(labels) + [
        int(lab_a[u]) if (bool(conf_a[u]) and bool(conf_b[u]) and int(lab_a[u]) == int(lab_b[u])) else None
        for u in range(NU)
    ]
    cl_clean, anchors_clean = contrastive(za, zb, cl_labels, faithful=False)
    cl_faithful, anchors_faithful = contrastive(za, zb, cl_labels, faithful=True)
    total = sup + LAMBDA * (ps_a + ps_b) + W_CL * cl_clean
    total_faithful = sup + LAMBDA * (ps_a + ps_b) + W_CL * cl_faithful
    inputs4 = [la, lb, za, zb]

    data = {
        "nl": NL, "nu": NU, "classes": C, "dim": D, "tau": TAU, "temperature": T,
        "lambda": LAMBDA, "contrastive_weight": W_CL,
        "logits_a": la_np.tolist(), "logits_b": lb_np.tolist(), "labels": labels,
        "proj_a": za_np.tolist(), "proj_b": zb_np.tolist(),
        "contrastive_labels": cl_labels,
        "gated_for_a": int(conf_b.sum()), "gated_for_b": int(conf_a.sum()),
        "anchors_clean": anchors_clean, "anchors_faithful": anchors_faithful,
        "supervised": sup.item(), "pseudo_a": ps_a.item(), "pseudo_b": ps_b.item(),
        "contrastive_clean": cl_clean.item(), "contrastive_faithful": cl_faithful.item(),
        "total_clean": total.item(), "total_faithful": total_faithful.item(),
        # gradients, each as [d/d logits_a, d/d logits_b, d/d proj_a, d/d proj_b] (null = no dependence)
        "grad_supervised": grads(sup, inputs4),
        "grad_pseudo_a": grads(ps_a, inputs4),
        "grad_pseudo_b": grads(ps_b, inputs4),
        "grad_contrastive_clean": grads(cl_clean, inputs4),
        "grad_contrastive_faithful": grads(cl_faithful, inputs4),
        "grad_total_clean": grads(total, inputs4),
        "sgd": sgd_steps(),
        "generator": "scripts/torch_parity.py, torch " + torch.__version__,
    }
    assert 0 < data["gated_for_a"] < NU and 0 < data["gated_for_b"] < NU
    assert any(c is not None for c in cl_labels[NL:]) and any(c is None for c in cl_labels[NL:])
    assert math.isfinite(total.item())
    with open(out_path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(f"wrote {out_path}: sup {sup.item():.6f} psA {ps_a.item():.6f} psB {ps_b.item():.6f} "
          f"cl {cl_clean.item():.6f} / faithful {cl_faithful.item():.6f}")


if __name__ == "__main__":
    main()
