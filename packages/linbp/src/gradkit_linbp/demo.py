"""``gradkit demo linbp``: the MNIST-5k transfer table on the shipped models (a few minutes on 2 CPU cores)."""

from __future__ import annotations

from typing import Any

import torch

from .experiment import Row, format_table, run_rows
from .models import VICTIMS

# small, fixed settings so the demo stays well under 3 minutes on a shared 2-core CPU
DEMO = dict(n=100, eps=0.2, alpha=0.025, steps=20)


def demo(ctx: Any) -> dict[str, Any]:
    torch.set_num_threads(1)
    rows = [
        Row("I-FGSM"),
        Row("I-FGSM + LinBP (start 4)", start=4),
        Row("I-FGSM + LinBP (start 2)", start=2),
        Row("I-FGSM + LinBP (start 0)", start=0),
        Row("PGD", "pgd"),
        Row("PGD + LinBP (start 0)", "pgd", 0),
        Row("MI-FGSM", "mifgsm"),
        Row("MI-FGSM + LinBP (start 0)", "mifgsm", 0),
        Row("I-FGSM + ILA", ila=True),
        Row("I-FGSM + LinBP (start 0) + ILA", start=0, ila=True),
    ]
    ctx.log(f"source vgg (6 ReLUs: start k linearises ReLUs k..5), victims {', '.join(VICTIMS)}; "
            f"untargeted l_inf, eps={DEMO['eps']}, alpha={DEMO['alpha']}, {DEMO['steps']} steps")
    rows, n = run_rows("vgg", rows, seed=ctx.seed, progress=ctx.progress, **DEMO)
    table = format_table("vgg", rows)
    ctx.log(f"transfer success rate (%), {n} test images every model classifies correctly:\n{table}")
    (ctx.out_dir / "transfer_table.md").write_text(table + "\n")
    out: dict[str, Any] = {"images": n}
    for r in rows:
        out[f"{r.label} avg"] = round(r.result["avg"], 1)
    base = rows[0].result["avg"]
    out["best LinBP gain over I-FGSM (avg points)"] = round(max(r.result["avg"] for r in rows[1:4]) - base, 1)
    return out
