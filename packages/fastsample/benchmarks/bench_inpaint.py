"""Inpainting benchmark on the shipped MNIST-16 UNet: fastsample vs DPS vs x0-only, one run.

Every method starts from the same noise and is scored on the same held-out digits. Budget: the
FD method's N(1 + 2K) = 220 UNet forwards; DPS gets 220 steps (equal forwards, plus 220 backwards)
and 100 steps (about equal wall time). Prints a markdown table with speed ratios against DPS-220,
writes JSON lines, a bar plot and image grids to benchmarks/results/.

    OMP_NUM_THREADS=1 python packages/fastsample/benchmarks/bench_inpaint.py --n 16
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from gradkit_fastsample import evaluation as ev
from gradkit_fastsample.sampler import DPSSampler

OUT = Path(__file__).resolve().parent / "results"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--masks", default="top_half,left_half")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="fastsample (fd),dps,dps (100 steps),vjp in our loop,x0_only,unconstrained",
                   help="comma-separated; also available: 'fastsample K=10' (420 forwards)")
    args = p.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)

    def dps100(unet, sched, c, shape, g):
        return DPSSampler(unet, sched, c, num_inference_steps=100, scale=1.0).sample(shape, generator=g)

    ev.METHODS["dps (100 steps)"] = (dps100, "DPS, 100 steps, zeta=1 (about our wall time)")
    ev.METHODS["fastsample K=10"] = (ev._ours(inner_steps=10), "ours with K=10 (420 forwards)")
    names = args.methods.split(",")
    if "dps" not in names:
        names.insert(0, "dps")  # the ratio baseline
    unet, sched = ev.load()
    truth = ev.heldout_batch(args.n, seed=args.seed)
    rows = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(OUT / ("inpaint.jsonl" if len(names) >= 6 else "inpaint_subset.jsonl"), "a") as fh:
        for mk in args.masks.split(","):
            mask = ev.make_mask(mk)
            grid = [("masked input", truth * mask + (1 - mask) * -0.4)]
            per = {}
            for name in names:
                row, x0 = ev.run_method(name, unet, sched, truth, mask, seed=args.seed)
                row.update(mask=mk, time=stamp, torch=torch.__version__, machine=platform.machine(), threads=1)
                per[name] = row
                if name in ("fastsample (fd)", "dps", "x0_only", "vjp in our loop"):
                    grid.append((name, x0))
                print(f"{mk:10s} {name:18s} {row['s_per_image']:.3f} s/img fwd {row['unet_fwd']} bwd {row['unet_bwd']} "
                      f"known {row['known_mse']:.2e} hole {row['hole_mse']:.3f} psnr {row['psnr']:.2f}", flush=True)
            base = per["dps"]["s_per_image"]
            for row in per.values():
                row["speedup_vs_dps220"] = base / row["s_per_image"]
                fh.write(json.dumps(row) + "\n")
                rows.append(row)
            grid.append(("ground truth", truth))
            if len(names) >= 6:
                ev.image_grid(grid, OUT / f"inpaint_grid_{mk}.png")
    print("\n| mask | method | s/image | speed vs DPS-220 | UNet fwd | UNet bwd | known-pixel MSE | hole MSE | PSNR dB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mask']} | {r['method']} | {r['s_per_image']:.3f} | {r['speedup_vs_dps220']:.2f}x | {r['unet_fwd']} | "
              f"{r['unet_bwd']} | {r['known_mse']:.2e} | {r['hole_mse']:.3f} | {r['psnr']:.2f} |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
        masks = args.masks.split(",")
        w = 0.8 / len(masks)
        for j, mk in enumerate(masks):
            rs = [r for r in rows if r["mask"] == mk]
            xs = [i + j * w for i in range(len(rs))]
            ax[0].bar(xs, [r["s_per_image"] for r in rs], w, label=mk)
            ax[1].bar(xs, [r["known_mse"] for r in rs], w, label=mk)
        for a, title in zip(ax, ["seconds per image (1 CPU thread)", "known-pixel MSE (log)"]):
            a.set_xticks(range(len(names)))
            a.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
            a.set_title(title)
            a.legend()
        ax[1].set_yscale("log")
        fig.tight_layout()
        fig.savefig(OUT / ("inpaint.png" if len(names) >= 6 else "inpaint_subset.png"), dpi=90)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
