"""Memory and time of the input gradient through purification: exact_recompute vs full-graph autograd.

For DDPM (t* = 0.1 of 1000 timesteps; 10 respaced steps vs all 100) and the VP-SDE (Euler-Maruyama,
10 vs 100 steps) on the shipped 16 x 16 UNet, 2 inputs x 4 copies, fp32, 1 thread:

- ``saved_peak``: peak bytes autograd saved for backward (gradkit.metrics.SavedTensorMeter, UNet and
  classifier parameters excluded) during forward + backward;
- ``state_bytes``: the per-step states exact_recompute keeps outside autograd (host memory);
- ``seconds``: wall time of forward + backward (median of ``--repeats``);
- ``rel_err``: relative difference of the input gradient vs full autograd (same noise tape).

    OMP_NUM_THREADS=1 python benchmarks/bench_memory_time.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from gradkit.metrics import SavedTensorMeter
from gradkit_diffbreak import DDPMPurifier, NoiseTape, VPSDEPurifier
from gradkit_diffbreak.exact import exact_purify
from gradkit_diffbreak.ops import broadcast_copies
from gradkit_diffbreak.pretrained import load_pretrained, load_test_data


def one(pur, clf, x, y, rule, copies, seed=0):
    xx = x.clone().requires_grad_(True)
    tape = NoiseTape(seed)
    with SavedTensorMeter(exclude=[pur.unet, clf]) as meter:
        t0 = time.perf_counter()
        u = broadcast_copies(xx, copies) * 2 - 1
        if rule == "exact_recompute":
            s, buf = exact_purify(pur, u, None, tape)
            state_bytes = buf.nbytes()
        else:
            s, state_bytes = pur.run(u, None, tape), 0
        logits = clf((s.clamp(-1, 1) + 1) / 2)
        loss = torch.nn.functional.cross_entropy(logits, y.repeat_interleave(copies))
        (g,) = torch.autograd.grad(loss, xx)
        dt = time.perf_counter() - t0
    return g, meter.peak_bytes, state_bytes, dt


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--copies", type=int, default=4)
    a = p.parse_args()
    torch.set_num_threads(1)
    clf, unet, sched = load_pretrained()
    x, y = load_test_data(2)
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for fam, make in (("ddpm", lambda n: DDPMPurifier(unet, sched, t_star=0.1, steps=n)),
                      ("vpsde", lambda n: VPSDEPurifier(unet, sched, t_star=0.1, steps=n))):
        for n in (10, 100):
            pur = make(n)
            res = {}
            for rule in ("full", "exact_recompute"):
                runs = [one(pur, clf, x, y, rule, a.copies) for _ in range(a.repeats)]
                g, peak, sb, _ = runs[0]
                dt = sorted(r[3] for r in runs)[len(runs) // 2]
                res[rule] = g
                row = {"purifier": fam, "steps": n, "rule": rule, "copies": a.copies, "inputs": x.shape[0],
                       "saved_peak": peak, "state_bytes": sb, "seconds": round(dt, 3)}
                if rule == "exact_recompute":
                    gf = res["full"]
                    row["rel_err"] = float((g - gf).norm() / gf.norm())
                    row["bitwise_equal"] = bool(torch.equal(g, gf))
                rows.append(row)
                print(json.dumps(row), flush=True)
    with open(a.out / "bench_memory_time.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    # ratios
    for fam in ("ddpm", "vpsde"):
        get = {(r["rule"], r["steps"]): r for r in rows if r["purifier"] == fam}
        ex10, ex100 = get[("exact_recompute", 10)], get[("exact_recompute", 100)]
        f10, f100 = get[("full", 10)], get[("full", 100)]
        print(json.dumps({"purifier": fam,
                          "exact_saved_100_over_10": ex100["saved_peak"] / ex10["saved_peak"],
                          "exact_saved+states_100_over_10": (ex100["saved_peak"] + ex100["state_bytes"]) / (ex10["saved_peak"] + ex10["state_bytes"]),
                          "full_saved_100_over_10": f100["saved_peak"] / f10["saved_peak"],
                          "time_exact_over_full_100": ex100["seconds"] / f100["seconds"]}), flush=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        for fam, ls in (("ddpm", "-"), ("vpsde", "--")):
            for rule, c in (("full", "C3"), ("exact_recompute", "C0")):
                pts = [(r["steps"], r["saved_peak"] / 2**20) for r in rows if r["purifier"] == fam and r["rule"] == rule]
                ax.plot(*zip(*pts), ls, color=c, marker="o", label=f"{fam} {rule}")
        ax.set_xlabel("purification steps")
        ax.set_ylabel("autograd-saved peak (MiB)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        fig.savefig(a.out / "bench_memory_time.png", dpi=110, bbox_inches="tight")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
