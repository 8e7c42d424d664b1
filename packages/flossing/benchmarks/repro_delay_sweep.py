"""Reproduction (small, CPU): success vs delay on delayed copy / delayed XOR, with and without pre-flossing.

Model: tanh RNN, N=64 (the paper's rate network, g=1), readout from h. Task steps: 16 fresh
sequences of length delay+40, Adam 1e-3, grad-norm clip 1.0. Pre-flossing: 100 updates of
flossing's own Adam (lr 1e-3), k=32, horizon 55, batch 1, transient 16. Accuracy: 512 held-out
sequences, bit accuracy on the scored steps (chance 0.5).

    OMP_NUM_THREADS=1 python packages/flossing/benchmarks/repro_delay_sweep.py \
        --runs copy:10,30,50,70 xor:20,40 --seeds 0 1 2 --steps 1000 --out results/delay_sweep.jsonl

Writes one JSON line per (task, delay, arm, seed) and a plot ``<out>.png``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from gradkit_flossing import FlossingConfig, train_delay_task


def parse_runs(items: list[str]) -> list[tuple[str, int]]:
    out = []
    for item in items:
        task, delays = item.split(":")
        out += [(task, int(d)) for d in delays.split(",")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=["copy:10,30,50,70", "xor:20,40"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["none", "pre"], choices=["none", "pre", "pre+inter"])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--pre", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--out", default="delay_sweep.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["task"], r["delay"], r["arm"], r["seed"]))
    for task, delay in parse_runs(args.runs):
        for seed in args.seeds:
            for arm in args.arms:
                if (task, delay, arm, seed) in done:
                    continue
                t0 = time.perf_counter()
                fc = FlossingConfig(k=args.k, horizon=55, batch=1, lr=1e-3, seed=seed)
                inter = dict(inter_every=250, inter_steps=50, inter_max=2) if arm == "pre+inter" else {}
                r = train_delay_task(task, delay, hidden=args.hidden, steps=args.steps,
                                     pre_steps=0 if arm == "none" else args.pre, floss_config=fc, seed=seed, **inter)
                rec = r.as_dict()
                rec.update(arm=arm, hidden=args.hidden, k=args.k, wall_s=time.perf_counter() - t0,
                           task_step_s=r.seconds_task / max(r.task_steps, 1))
                with out.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                print(f"{task} d={delay} {arm} seed={seed}: acc {r.accuracy:.3f} |dL/dh0| {r.grad_h0:.1e} "
                      f"({rec['wall_s']:.0f}s)", flush=True)
    summarize(out)


def summarize(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["delay"], r["arm"]), []).append(r)
    arms = sorted({r["arm"] for r in rows}, key=["none", "pre", "pre+inter"].index)
    keys = sorted({(t, d) for t, d, _ in groups})
    print("| task | delay | " + " | ".join(f"{a}: accuracy per seed (median)" for a in arms) + " | |dL/dh0| median " + " -> ".join(arms) + " |")
    print("|---|---|" + "---|" * len(arms) + "---|")
    for t, d in keys:
        cells, grads = [], []
        for a in arms:
            rs = sorted(groups.get((t, d, a), []), key=lambda r: r["seed"])
            accs = [r["accuracy"] for r in rs]
            cells.append(", ".join(f"{x:.2f}" for x in accs) + (f" (**{statistics.median(accs):.3f}**)" if accs else ""))
            grads.append(f"{statistics.median([r['grad_h0'] for r in rs]):.1e}" if rs else "-")
        print(f"| {t} | {d} | " + " | ".join(cells) + " | " + " -> ".join(grads) + " |")
    try:
        plot(rows, arms, path.with_suffix(".png"))
    except ImportError:
        pass


def plot(rows: list[dict], arms: list[str], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for i, arm in enumerate(arms):
            rs = [r for r in rows if r["task"] == task and r["arm"] == arm]
            delays = sorted({r["delay"] for r in rs})
            med = [statistics.median([r["accuracy"] for r in rs if r["delay"] == d]) for d in delays]
            ax.plot(delays, med, "o-", color=f"C{i}", label=f"{arm} (median)")
            ax.scatter([r["delay"] + (i - 0.5) for r in rs], [r["accuracy"] for r in rs], color=f"C{i}", s=12, alpha=0.5)
        ax.axhline(0.5, color="k", lw=0.5, ls="--")
        ax.set(xlabel="delay d", ylabel="held-out bit accuracy", title=f"{task}, N=64 tanh RNN", ylim=(0.4, 1.02))
        ax.legend()
    fig.savefig(png, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
