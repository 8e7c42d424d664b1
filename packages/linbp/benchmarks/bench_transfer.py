"""MNIST-5k transfer reproduction: I-FGSM / PGD / MI-FGSM / ILA with and without LinBP, position sweep.

    OMP_NUM_THREADS=1 python packages/linbp/benchmarks/bench_transfer.py [--n 500] [--steps 100] \\
        [--eps 0.2] [--alpha 0.01] [--sources vgg,res] [--out DIR]

Attacks the shipped ``vgg`` and ``res`` sources white-box through ``gradkit.attack`` and measures the
success rate on the shipped victims (mlp, lenet, wide, elu, res_v) of the 8-bit-rounded examples.
Writes one JSON line per row to ``bench_transfer.jsonl``, a markdown table ``bench_transfer.md``
and a plot of the position sweep ``bench_transfer.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from gradkit_linbp.experiment import Row, format_table, run_rows
from gradkit_linbp.models import VICTIMS, build
from gradkit_linbp.transform import find_units


def rows_for(source: str, best: int) -> list[Row]:
    n_units = len(find_units(build(source)))
    rows = [Row("I-FGSM")]
    rows += [Row(f"I-FGSM + LinBP (start {k})", start=k) for k in range(n_units - 1, -1, -1)]
    if source == "res":
        rows += [Row(f"I-FGSM + LinBP (start {best}, no renorm)", start=best, renorm=False),
                 Row(f"I-FGSM + LinBP (start {best}, lam 0.5)", start=best, lam=0.5)]
    rows += [
        Row("PGD", "pgd"), Row(f"PGD + LinBP (start {best})", "pgd", best),
        Row("MI-FGSM", "mifgsm"), Row(f"MI-FGSM + LinBP (start {best})", "mifgsm", best),
        Row("I-FGSM + ILA", ila=True), Row(f"I-FGSM + LinBP (start {best}) + ILA", start=best, ila=True),
        Row("targeted I-FGSM", targeted=True), Row(f"targeted I-FGSM + LinBP (start {best})", start=best, targeted=True),
    ]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--eps", type=float, default=0.2)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--sources", default="vgg,res")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    jl = (args.out / "bench_transfer.jsonl").open("w")
    tables, sweeps = [], {}
    for source in args.sources.split(","):
        rows = rows_for(source, best=0)
        rows, n = run_rows(source, rows, n=args.n, eps=args.eps, alpha=args.alpha, steps=args.steps)
        for r in rows:
            rec = {"source": source, "attack": r.label, "n": n, "eps": args.eps, "alpha": args.alpha,
                   "steps": args.steps, "seconds": round(r.seconds, 2), **{k: round(v, 2) for k, v in r.result.items()}}
            jl.write(json.dumps(rec) + "\n")
            jl.flush()
            print(json.dumps(rec), flush=True)
        tables.append(f"n = {n}\n\n" + format_table(source, rows, VICTIMS))
        sweeps[source] = [(r.start, r.result["avg"]) for r in rows if r.method == "ifgsm" and not r.ila
                          and not r.targeted and r.renorm and r.lam == 1.0]
    (args.out / "bench_transfer.md").write_text("\n\n".join(tables) + "\n")
    print("\n\n".join(tables))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for source, pts in sweeps.items():
            base = [a for s, a in pts if s is None][0]
            xs = [s for s, _ in pts if s is not None]
            ax.plot(xs, [a for s, a in pts if s is not None], "o-", label=f"{source}: LinBP from unit k")
            ax.axhline(base, ls="--", lw=1, color=ax.lines[-1].get_color(), label=f"{source}: I-FGSM")
        ax.set_xlabel("start (first linearised unit)")
        ax.set_ylabel("avg transfer success (%)")
        ax.legend(fontsize=7)
        fig.savefig(args.out / "bench_transfer.png", dpi=110, bbox_inches="tight")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
