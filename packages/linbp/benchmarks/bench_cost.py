"""Cost of LinBP per attack iteration vs plain I-FGSM, measured in the same run.

    OMP_NUM_THREADS=1 python packages/linbp/benchmarks/bench_cost.py [--batch 128] [--steps 10] [--repeats 5]

For each source (shipped MNIST-5k ``vgg`` and ``res``) and configuration, times ``gradkit.attack``
(method ifgsm) and reports the median seconds per iteration over ``repeats`` runs, and the ratio to
plain I-FGSM (providers interleaved in each repeat). The ratio uses process CPU time
(``time.process_time``, one torch thread), which a shared machine's load disturbs far less than
wall time; the wall-clock median is reported beside it. Writes JSON lines
to ``bench_cost.jsonl`` and a bar plot ``bench_cost.png`` next to this script (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import gradkit
import torch
from gradkit_linbp import LinBP
from gradkit_linbp.experiment import attack_images
from gradkit_linbp.models import load_pretrained

CONFIGS = {
    "vgg": [("I-FGSM", None), ("LinBP start 3", dict(start=3)), ("LinBP start 0", dict(start=0))],
    "res": [("I-FGSM", None), ("LinBP start 3 (renorm)", dict(start=3)), ("LinBP start 1 (renorm)", dict(start=1)),
            ("LinBP start 1 (no renorm)", dict(start=1, renorm=False))],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for source, configs in CONFIGS.items():
        model = load_pretrained(source)
        x, y = attack_images(args.batch, {source: model})
        times: dict[str, list[float]] = {label: [] for label, _ in configs}
        walls: dict[str, list[float]] = {label: [] for label, _ in configs}
        for _label, cfg in configs:  # warm-up (first-forward checks, allocator)
            gradkit.attack(model, x, y, method="ifgsm", eps=0.2, alpha=0.01, steps=1,
                           transforms=[LinBP(**cfg)] if cfg else None)
        for _ in range(args.repeats):
            for label, cfg in configs:
                t0, c0 = time.perf_counter(), time.process_time()
                gradkit.attack(model, x, y, method="ifgsm", eps=0.2, alpha=0.01, steps=args.steps,
                               transforms=[LinBP(**cfg)] if cfg else None)
                times[label].append((time.process_time() - c0) / args.steps)
                walls[label].append((time.perf_counter() - t0) / args.steps)
        base = statistics.median(times["I-FGSM"])
        for label, _ in configs:
            med = statistics.median(times[label])
            row = {"source": source, "config": label, "batch": len(x), "cpu_s_per_iter": round(med, 5),
                   "wall_s_per_iter": round(statistics.median(walls[label]), 5),
                   "ratio_vs_ifgsm": round(med / base, 3), "repeats": args.repeats, "steps": args.steps}
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_cost.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3))
        labels = [f"{r['source']}: {r['config']}" for r in rows]
        ax.barh(labels, [r["ratio_vs_ifgsm"] for r in rows])
        ax.axvline(1.3, ls="--", c="k", lw=1)
        ax.set_xlabel("time per iteration / plain I-FGSM")
        fig.savefig(args.out / "bench_cost.png", dpi=110, bbox_inches="tight")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
