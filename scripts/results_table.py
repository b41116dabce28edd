#!/usr/bin/env python3
"""Markdown tables from a `unisal simulate` results.csv: accuracy and macro-F1 (%) per strategy and labeled count,
mean over seeds (a cell from fewer seeds says so), the mean over rounds 1..N, and the `full` (all labels) bound.

  python3 scripts/results_table.py results/crc5-cpu-full/results.csv
"""
import csv
import statistics
import sys
from collections import defaultdict


def main(path):
    rows = list(csv.DictReader(open(path)))
    by = defaultdict(lambda: defaultdict(list))  # strategy -> labeled -> [(seed, acc, f1)]
    full = []
    for r in rows:
        if r["strategy"] == "full":
            full.append((int(r["seed"]), float(r["accuracy"]), float(r["macro_f1"])))
            continue
        by[r["strategy"]][int(r["labeled"])].append((int(r["seed"]), float(r["accuracy"]), float(r["macro_f1"])))
    labeled = sorted({n for s in by.values() for n in s})
    seeds = sorted({seed for s in by.values() for v in s.values() for seed, _, _ in v})
    for metric, idx in (("accuracy", 1), ("macro-F1", 2)):
        print(f"\n{metric} (%), mean of seeds {', '.join(map(str, seeds))}:\n")
        print("| strategy | " + " | ".join(map(str, labeled)) + " | mean of rounds 1-%d |" % (len(labeled) - 1))
        print("| --- |" + " ---: |" * (len(labeled) + 1))
        for strategy, cells in by.items():
            means = []
            out = []
            for n in labeled:
                vals = [v[idx] for v in cells.get(n, [])]
                if vals:
                    m = statistics.mean(vals) * 100
                    means.append((n, m, len(vals)))
                    out.append(f"{m:.1f}" + ("" if len(vals) == len(seeds) else f" ({len(vals)} seed)"))
                else:
                    out.append("–")
            later = [m for n, m, k in means if n != labeled[0]]
            tail = f"{statistics.mean(later):.1f}" if later else "–"
            print(f"| {strategy} | " + " | ".join(out) + f" | {tail} |")
        if full:
            vals = [f[idx] * 100 for f in full]
            print(f"\nall labels (`full`, seeds {', '.join(str(f[0]) for f in full)}): "
                  + ", ".join(f"{v:.1f}" for v in vals))


if __name__ == "__main__":
    main(sys.argv[1])
