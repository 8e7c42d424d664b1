"""``gradkit demo diffbreak`` and the robustness-table experiment behind the README.

DDPM purification (shipped MNIST-5k 16 x 16 models) in front of the shipped CNN; PGD with EOT
through ``gradkit.attack`` with exact (per-step recompute) gradients vs BPDA; every attacked set is
evaluated with fresh purifications under the single-purification, majority-vote and all-correct
protocols.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["Settings", "robustness_table", "run_demo"]


@dataclass(frozen=True)
class Settings:
    n_images: int = 8
    t_star: float = 0.1
    steps: int = 5
    eps: float = 0.25
    iters: int = 5
    copies: int = 4
    eval_n: int = 16
    loss: str = "ce"
    seed: int = 0
    rules: tuple[str, ...] = ("exact_recompute", "bpda_identity")
    lf_iters: int = 0  # 0: no LF attack
    lf_eps: float = 0.05  # bound on 1 - SSIM (LPIPS stand-in)
    lf_tanh_margin: float = 1e-6
    lf_lr_modifier: float = 0.008


def robustness_table(s: Settings, log: Callable[[str], None] = print) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (one per setting) of clean/attacked accuracies; plus tensors for plotting."""
    import gradkit

    from .attacks import pgd_eot
    from .evaluation import evaluate, wilson_interval
    from .model import PurifiedClassifier
    from .pretrained import load_pretrained, load_test_data
    from .purifiers import DDPMPurifier

    torch.manual_seed(s.seed)
    clf, unet, sched = load_pretrained()
    x, y = load_test_data(s.n_images, seed=0)
    pur = DDPMPurifier(unet, sched, t_star=s.t_star, steps=s.steps)
    model = PurifiedClassifier(clf, pur, copies=s.copies, seed=s.seed)
    rows: list[dict[str, Any]] = []
    n = x.shape[0]

    with torch.no_grad():
        acc = float((clf(x).argmax(1) == y).float().mean())
    rows.append({"setting": "undefended, clean", "single": acc, "mv": None, "all": None, "seconds": 0.0})
    t0 = time.time()
    res = gradkit.attack(clf, x, y, method="pgd", eps=s.eps, alpha=s.eps / 4, steps=s.iters,
                         generator=torch.Generator().manual_seed(s.seed))
    rows.append({"setting": f"undefended, PGD-{s.iters}", "single": 1 - res.success_rate, "mv": None, "all": None,
                 "seconds": time.time() - t0})
    log(f"undefended clean {acc:.3f}, PGD {1 - res.success_rate:.3f}")

    t0 = time.time()
    rec = evaluate(model, x, y, n=s.eval_n)
    rows.append(_row("DBP, clean", rec, time.time() - t0))
    log(f"DBP clean: single {rec.single_accuracy():.3f} MV {rec.mv_accuracy():.3f}")
    adv: dict[str, torch.Tensor] = {}
    for rule in s.rules:
        t0 = time.time()
        rep = pgd_eot(model, x, y, eps=s.eps, steps=s.iters, backward=rule, copies=s.copies, loss=s.loss, eval_n=s.eval_n,
                      generator=torch.Generator().manual_seed(s.seed))
        rows.append(_row(f"DBP, PGD-EOT ({rule})", rep.record, time.time() - t0))
        adv[rule] = rep.x_adv
        log(f"PGD-EOT {rule}: single {rep.record.single_accuracy():.3f} MV {rep.record.mv_accuracy():.3f} "
            f"({time.time() - t0:.0f} s)")
    if s.lf_iters:
        from .lf import LFConfig, lf_attack

        t0 = time.time()
        lf = lf_attack(model, x, y, LFConfig(iters=s.lf_iters, copies=s.copies, perceptual_eps=s.lf_eps,
                                                 tanh_margin=s.lf_tanh_margin, lr_modifier=s.lf_lr_modifier))
        rec = evaluate(model, lf.x_adv, y, n=s.eval_n)
        rows.append(_row(f"DBP, LF-{s.lf_iters} (1-SSIM<{s.lf_eps}, tanh margin {s.lf_tanh_margin}, lr_mod {s.lf_lr_modifier})",
                         rec, time.time() - t0))
        adv["lf"] = lf.x_adv
        linf = float((lf.x_adv - x).abs().flatten(1).max(1).values.mean())
        rows[-1]["mean_linf"] = linf
        log(f"LF: single {rec.single_accuracy():.3f} MV {rec.mv_accuracy():.3f} mean Linf {linf:.3f} ({time.time() - t0:.0f} s)")
    for r in rows:
        r["n_images"] = n
        if r["mv"] is not None:
            r["mv_ci95"] = wilson_interval(round(r["mv"] * n), n)
    return rows, {"x": x, "y": y, "adv": adv, "model": model, "settings": asdict(s)}


def _row(name: str, rec: Any, seconds: float) -> dict[str, Any]:
    return {"setting": name, "single": rec.single_accuracy(), "mv": rec.mv_accuracy(), "all": rec.all_correct_accuracy(),
            "seconds": seconds}


def run_demo(ctx: Any) -> dict[str, Any]:
    t0 = time.time()
    s = Settings(seed=int(getattr(ctx, "seed", 0)))
    rows, extra = robustness_table(s, log=ctx.log)
    out: dict[str, Any] = {}
    for r in rows:
        key = r["setting"].replace(", ", "/").replace(" ", "_")
        out[f"{key}/single_acc"] = round(r["single"], 4)
        if r["mv"] is not None:
            out[f"{key}/mv_acc"] = round(r["mv"], 4)
    out["images"] = s.n_images
    out["eps_linf"] = s.eps
    out["pgd_iters"] = s.iters
    out["copies_grad/eval"] = f"{s.copies}/{s.eval_n}"
    out["purifier"] = f"DDPM t*={s.t_star}, {s.steps} steps"
    out["seconds"] = round(time.time() - t0, 1)
    try:
        _plot(ctx, extra)
    except ImportError:  # matplotlib is optional
        ctx.log("matplotlib not installed: no figure")
    return out


def _plot(ctx: Any, extra: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, model = extra["x"], extra["model"]
    rows = [("clean", x)] + [(f"adv ({k})", v) for k, v in extra["adv"].items()]
    k = min(6, x.shape[0])
    fig, axes = plt.subplots(2 * len(rows), k, figsize=(1.3 * k, 2.6 * len(rows)))
    with torch.no_grad():
        for r, (name, imgs) in enumerate(rows):
            pur = model.purify(imgs[:k], copies=1)
            for j in range(k):
                for rr, im, lab in ((2 * r, imgs[j], name), (2 * r + 1, pur[j], "purified")):
                    ax = axes[rr, j]
                    ax.imshow(im[0].numpy(), cmap="gray", vmin=0, vmax=1)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if j == 0:
                        ax.set_ylabel(lab, fontsize=7)
    ctx.save_figure(fig, "diffbreak_examples.png")
