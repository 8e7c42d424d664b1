"""The MNIST-5k transfer experiment shared by the demo and ``benchmarks/bench_transfer.py``.

Source models are attacked white-box with ``gradkit.attack`` (optionally LinBP / ILA); the
adversarial images (rounded to 8-bit like the paper's saved PNGs) are then classified by the
victims. Attack images: the first ``n`` test images (``gradkit.data.split(seed=0)`` test part)
that every model classifies correctly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from .attacks import linbp_attack, success_on
from .models import VICTIMS, load_pretrained

__all__ = ["Row", "attack_images", "run_rows", "format_table", "default_rows", "ILA_LAYERS"]

# ILA layer per source: a middle feature map, before the linearised region of the default starts
ILA_LAYERS = {"vgg": "features.9", "res": "layer2.0"}


@dataclass
class Row:
    label: str
    method: str = "ifgsm"
    start: int | str | None = None
    renorm: bool = True
    lam: float = 1.0
    ila: bool = False
    targeted: bool = False  # target (y + 1) mod 10; success = the model predicts the target
    result: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def attack_images(n: int, models: dict[str, torch.nn.Module]) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``n`` MNIST-5k test images that every model in ``models`` classifies correctly."""
    from gradkit.data import load_mnist5k, split

    x, y = load_mnist5k()
    _, _, xte, yte = split(x, y, 0.2, seed=0)
    ok = torch.ones(len(xte), dtype=torch.bool)
    with torch.no_grad():
        for m in models.values():
            ok &= m(xte).argmax(1).eq(yte)
    idx = torch.nonzero(ok).flatten()[:n]
    return xte[idx], yte[idx]


def default_rows(sweep: Iterable[int | str] = (), methods: Iterable[str] = ("ifgsm", "pgd", "mifgsm"),
                 start: int | str = 0, ila: bool = True) -> list[Row]:
    names = {"ifgsm": "I-FGSM", "pgd": "PGD", "mifgsm": "MI-FGSM"}
    rows: list[Row] = []
    for m in methods:
        rows.append(Row(names[m], m))
        rows.append(Row(f"{names[m]} + LinBP (start {start})", m, start))
        if m == "ifgsm":
            rows += [Row(f"I-FGSM + LinBP (start {s})", m, s) for s in sweep if s != start]
    if ila:
        rows.append(Row("I-FGSM + ILA", "ifgsm", None, ila=True))
        rows.append(Row(f"I-FGSM + LinBP (start {start}) + ILA", "ifgsm", start, ila=True))
    return rows


def run_rows(source: str, rows: list[Row], *, n: int = 200, eps: float = 0.2, alpha: float = 0.01, steps: int = 100,
             ila_steps: int | None = None, seed: int = 0, progress: Callable[..., Any] | None = None,
             victims: Iterable[str] = VICTIMS) -> tuple[list[Row], int]:
    """Run every row on ``source``; fills ``row.result`` (white-box ``wb`` + each victim + ``avg``)."""
    torch.manual_seed(seed)
    src = load_pretrained(source)
    vic = {v: load_pretrained(v) for v in victims}
    x, y = attack_images(n, {"wb": src, **vic})
    it = progress(rows, desc=source, total=len(rows)) if progress else rows
    for row in it:
        g = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        target = (y + 1) % 10 if row.targeted else y
        res = linbp_attack(src, x, target, method=row.method, start=row.start, renorm=row.renorm, lam=row.lam, eps=eps,
                           alpha=alpha, steps=steps, ila_layer=ILA_LAYERS[source] if row.ila else None,
                           ila_steps=ila_steps, targeted=row.targeted, generator=g)
        row.seconds = time.perf_counter() - t0
        x_adv = torch.round(res.x_adv * 255) / 255
        rates = success_on({"wb": src, **vic}, x_adv, target, targeted=row.targeted)
        rates["avg"] = sum(rates[v] for v in vic) / len(vic)
        row.result = rates
    return rows, len(x)


def format_table(source: str, rows: list[Row], victims: Iterable[str] = VICTIMS) -> str:
    cols = ["wb", *victims, "avg"]
    head = "| source / attack | " + " | ".join(cols) + " | s |"
    sep = "|" + "---|" * (len(cols) + 2)
    lines = [head, sep]
    for r in rows:
        cells = " | ".join(f"{r.result[c]:.1f}" for c in cols)
        lines.append(f"| {source}: {r.label} | {cells} | {r.seconds:.1f} |")
    return "\n".join(lines)

