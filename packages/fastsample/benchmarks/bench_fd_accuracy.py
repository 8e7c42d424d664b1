"""Finite-difference J g vs the exact JVP on the shipped UNet: error vs probe size h.

Relative error ||FD - J g|| / ||J g|| for forward (fp32, fp64) and central (fp64) differences,
``g`` a masked inpainting error, exact ``J g`` by double VJP on a float64 copy. JSON lines and a
log-log plot go to benchmarks/results/.

    OMP_NUM_THREADS=1 python packages/fastsample/benchmarks/bench_fd_accuracy.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from gradkit_fastsample import Inpaint, load_pretrained
from gradkit_fastsample.denoiser import UNetDenoiser
from gradkit_fastsample.estimators import fd_central_direction, fd_direction, jvp_direction
from gradkit_fastsample.evaluation import heldout_batch, make_mask

OUT = Path(__file__).resolve().parent / "results"
HS = [1e-1, 1e-2, 5e-3, 1e-3, 1e-4, 1e-5]


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    unet32, sched = load_pretrained()
    unet64, _ = load_pretrained(dtype=torch.float64)
    d32, d64 = UNetDenoiser(unet32, sched), UNetDenoiser(unet64, sched)
    truth = heldout_batch(4, seed=0)
    c = Inpaint(truth, make_mask("left_half"))
    rows = []
    for t in (899, 499, 99):
        x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
        _, x0_64 = d64.eps_x0(x, t)
        g = c.direction(x0_64)
        exact = jvp_direction(d64, x, t, x0_64, g, 0.0)
        _, x0_32 = d32.eps_x0(x.float(), t)
        g32 = c.direction(x0_32)
        for h in HS:
            def rel(v: torch.Tensor) -> float:
                return float((v.double() - exact).norm() / exact.norm())

            row = {"t": t, "h": h,
                   "forward_fp32": rel(fd_direction(d32, x.float(), t, x0_32, g32, h)),
                   "forward_fp64": rel(fd_direction(d64, x, t, x0_64, g, h)),
                   "central_fp64": rel(fd_central_direction(d64, x, t, x0_64, g, h))}
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(OUT / "fd_accuracy.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    print("\n| t | h | forward fp32 | forward fp64 | central fp64 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['t']} | {r['h']:.0e} | {r['forward_fp32']:.1e} | {r['forward_fp64']:.1e} | {r['central_fp64']:.1e} |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 3, figsize=(11, 3.3), sharey=True)
        for a, t in zip(ax, (899, 499, 99)):
            rs = [r for r in rows if r["t"] == t]
            for k in ("forward_fp32", "forward_fp64", "central_fp64"):
                a.loglog([r["h"] for r in rs], [r[k] for r in rs], "o-", label=k)
            a.set_title(f"t = {t}")
            a.set_xlabel("probe h (max |perturbation|)")
        ax[0].set_ylabel("||FD - Jg|| / ||Jg||")
        ax[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(OUT / "fd_accuracy.png", dpi=90)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
