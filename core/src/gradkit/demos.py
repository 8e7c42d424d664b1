"""Demos: small end-to-end runs on embedded defaults, for ``gradkit demo``.

Plugins register demos through ``gradkit_register_demos``. The core registers ``core``: a small
classifier trained on scikit-learn's digits with :func:`gradkit.train`, then attacked with
:func:`gradkit.attack`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import UnknownNameError
from .manager import demo_entries, hookimpl

__all__ = ["DemoContext", "run_demos", "available"]

T = TypeVar("T")


@dataclass
class DemoContext:
    """What a demo function receives.

    Attributes:
        name: the demo's name.
        out_dir: a folder for this demo's plots, images and files (created).
        seed: the random seed to use.
        show_progress: whether to draw progress bars.
    """

    name: str
    out_dir: Path
    seed: int = 0
    show_progress: bool = True
    messages: list[str] = field(default_factory=list)

    def progress(self, iterable: Iterable[T], *, desc: str | None = None, total: int | None = None) -> Iterator[T]:
        """Wrap ``iterable`` in a progress bar (tqdm) labelled with the demo name."""
        if not self.show_progress:
            yield from iterable
            return
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=f"{self.name}: {desc}" if desc else self.name, total=total, leave=False)

    def log(self, message: str) -> None:
        """Print a line under the demo's name and keep it for the report."""
        self.messages.append(message)
        print(f"[{self.name}] {message}", flush=True)

    def save_figure(self, fig: Any, filename: str) -> Path:
        """Save a matplotlib figure into ``out_dir`` and close it."""
        path = self.out_dir / filename
        fig.savefig(path, dpi=110, bbox_inches="tight")
        try:
            import matplotlib.pyplot as plt

            plt.close(fig)
        except ImportError:  # pragma: no cover
            pass
        return path


def available() -> dict[str, str]:
    """Registered demo names and summaries."""
    return {n: e.summary for n, e in sorted(demo_entries().items())}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}"
    return str(v)


def run_demos(names: list[str] | None, out_dir: Path, *, seed: int = 0, progress: bool = True,
              echo: Callable[[str], None] = print, keep_going: bool = False) -> dict[str, dict[str, Any]]:
    """Run the named demos (all when ``names`` is empty) and write ``report.md``/``report.json``.

    With ``keep_going`` a failing demo is reported (``{"error": ...}``) and the others still run.
    """
    entries = demo_entries()
    names = list(names or sorted(entries))
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise UnknownNameError(
            f"unknown demo(s) {unknown}; available demos: {', '.join(sorted(entries)) or '(none installed)'}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        ctx = DemoContext(name=name, out_dir=out_dir / name, seed=seed, show_progress=progress)
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        echo(f"== demo {name}: {entries[name].summary}")
        t0 = time.perf_counter()
        try:
            summary = dict(entries[name].fn(ctx) or {})
        except Exception as exc:  # one broken demo must not hide the others' results
            if not keep_going:
                raise
            summary = {"error": f"{type(exc).__name__}: {exc}"}
            echo(f"   demo {name} FAILED: {summary['error']}")
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        results[name] = summary
        echo(format_table(name, summary))
        files = sorted(p.name for p in ctx.out_dir.iterdir())
        if files:
            echo(f"   files in {ctx.out_dir}: {', '.join(files)}")
    _write_report(out_dir, results)
    echo(f"report: {out_dir / 'report.md'}")
    return results


def format_table(name: str, summary: dict[str, Any]) -> str:
    width = max([len(k) for k in summary] + [6])
    lines = [f"   {'metric'.ljust(width)} | value", f"   {'-' * width}-+-{'-' * 12}"]
    lines += [f"   {k.ljust(width)} | {_fmt(v)}" for k, v in summary.items()]
    return "\n".join(lines)


def _write_report(out_dir: Path, results: dict[str, dict[str, Any]]) -> None:
    md = ["# gradkit demo report", ""]
    for name, summary in results.items():
        md += [f"## {name}", "", "| metric | value |", "|---|---|"]
        md += [f"| {k} | {_fmt(v)} |" for k, v in summary.items()]
        pngs = sorted((out_dir / name).glob("*.png"))
        md += [""] + [f"![{p.stem}]({name}/{p.name})" for p in pngs] + [""]
    (out_dir / "report.md").write_text("\n".join(md))
    (out_dir / "report.json").write_text(json.dumps(results, indent=2, default=str))


# -- the core's own demo -----------------------------------------------------------------------


def core_demo(ctx: DemoContext) -> dict[str, Any]:
    """Train a small MLP on sklearn digits with gradkit.train, then attack it with gradkit.attack."""
    import torch

    from . import data
    from .loops import attack, train
    from .objectives import ClassificationCE

    torch.manual_seed(ctx.seed)
    x, y = data.load_digits()
    xtr, ytr, xte, yte = data.split(x, y, 0.25, seed=ctx.seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr), batch_size=64, shuffle=True)
    summary = train(model, loader, objective=ClassificationCE(), steps=200, lr=3e-3, seed=ctx.seed,
                    progress=ctx.show_progress)
    model.eval()
    with torch.no_grad():
        acc = float((model(xte).argmax(1) == yte).float().mean())
    res = attack(model, xte, yte, method="pgd", eps=0.1, steps=10, generator=torch.Generator().manual_seed(ctx.seed))
    with torch.no_grad():
        adv_acc = float((model(res.x_adv).argmax(1) == yte).float().mean())
    losses = [h["loss"] for h in summary["history"]]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot(losses)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title("gradkit.train on sklearn digits")
        ctx.save_figure(fig, "loss.png")
    except ImportError:
        ctx.log("matplotlib not installed: no plot (pip install 'gradkit[plot]')")
    return {"train_steps": summary["steps"], "final_loss": losses[-1], "test_accuracy": acc,
            "pgd_eps0.1_accuracy": adv_acc}


@hookimpl
def gradkit_register_demos(register: Callable[..., None]) -> None:
    register("core", core_demo, summary="MLP on sklearn digits: gradkit.train, then gradkit.attack (PGD)")
