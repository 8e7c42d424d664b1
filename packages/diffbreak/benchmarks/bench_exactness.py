"""Exactness of exact_recompute vs full-graph autograd (same noise tape) for every purifier.

Shipped 16 x 16 UNet + CNN, 2 inputs x 2 copies, t* = 0.1, 10 reverse steps (GDMP-MSE: 2 repeats),
fp64 and fp32. Reports the relative L2 error of the input gradient and whether it is bitwise equal.

    OMP_NUM_THREADS=1 python benchmarks/bench_exactness.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from gradkit_diffbreak import DDPMPurifier, GDMPGuidance, PurifiedClassifier, VPSDEPurifier
from gradkit_diffbreak.pretrained import load_pretrained, load_test_data

PURIFIERS = {
    "ddpm": lambda u, s: DDPMPurifier(u, s, t_star=0.1, steps=10),
    "ddim (ode)": lambda u, s: DDPMPurifier(u, s, t_star=0.1, steps=10, ode=True),
    "vpsde": lambda u, s: VPSDEPurifier(u, s, t_star=0.1, steps=10),
    "vpode": lambda u, s: VPSDEPurifier(u, s, t_star=0.1, steps=10, ode=True),
    "gdmp-mse x2": lambda u, s: DDPMPurifier(u, s, t_star=0.1, steps=10, guidance=GDMPGuidance("mse", scale=1e3), repeats=2),
    "gdmp-ssim": lambda u, s: DDPMPurifier(u, s, t_star=0.1, steps=10, guidance=GDMPGuidance("ssim", scale=1e3)),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    a = p.parse_args()
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for dtype in (torch.float64, torch.float32):
        clf, unet, sched = load_pretrained(dtype)
        x, y = load_test_data(2)
        x = x.to(dtype)
        for name, make in PURIFIERS.items():
            m = PurifiedClassifier(clf, make(unet, sched), copies=2, seed=0, deterministic=True)
            g = {}
            for rule in ("full", "exact_recompute"):
                m.backward = rule
                xx = x.clone().requires_grad_(True)
                loss = torch.nn.functional.cross_entropy(m(xx).flatten(0, 1), y.repeat_interleave(2))
                (g[rule],) = torch.autograd.grad(loss, xx)
            rel = float((g["exact_recompute"] - g["full"]).norm() / g["full"].norm())
            row = {"purifier": name, "dtype": str(dtype).replace("torch.", ""), "rel_err": rel,
                   "bitwise_equal": bool(torch.equal(g["exact_recompute"], g["full"])), "grad_norm": float(g["full"].norm())}
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(a.out / "bench_exactness.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
