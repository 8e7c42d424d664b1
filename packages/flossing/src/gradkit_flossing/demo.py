"""``gradkit demo flossing``: exponents before/after flossing, and delayed copy with vs without pre-flossing."""

from __future__ import annotations

import time
from typing import Any

import torch

from .config import FlossingConfig
from .lyapunov import flossing_loss, gradient_norm_vs_delay, jacobian_condition
from .schedule import Flosser
from .tasks import DelayTaskRNN, train_delay_task

HIDDEN, K, FLOSS_STEPS = 64, 32, 100
TASK, DELAY, TASK_STEPS, PRE_STEPS = "copy", 30, 500, 100
COND_T = (10, 25, 50, 100)


def run_demo(ctx: Any) -> dict[str, Any]:
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    seed = int(getattr(ctx, "seed", 0))
    out: dict[str, Any] = {}

    # 1. spectrum before/after flossing (N=64, k=32, horizon 55, own Adam lr 1e-3 -> 3e-3 for a short run)
    model = DelayTaskRNN(HIDDEN, generator=torch.Generator().manual_seed(seed))
    f = Flosser(model.rnn, FlossingConfig(k=K, horizon=55, lr=3e-3, seed=seed))
    held = f.sample(8, 300)
    with torch.no_grad():
        lam0 = f.exponents(held).mean(0)
    g0 = gradient_norm_vs_delay(model.rnn, held[:4, :100], generator=torch.Generator().manual_seed(seed))
    c0 = _conditioning(model.rnn, held)
    losses = [f.update()["loss"] for _ in ctx.progress(range(FLOSS_STEPS), desc="flossing", total=FLOSS_STEPS)]
    with torch.no_grad():
        lam1 = f.exponents(held).mean(0)
    g1 = gradient_norm_vs_delay(model.rnn, held[:4, :100], generator=torch.Generator().manual_seed(seed))
    c1 = _conditioning(model.rnn, held)
    out["lambda_1 before"] = round(float(lam0[0]), 4)
    out["lambda_32 before"] = round(float(lam0[-1]), 4)
    out["lambda_1 after"] = round(float(lam1[0]), 4)
    out["lambda_32 after"] = round(float(lam1[-1]), 4)
    out["held-out floss loss cut (x)"] = round(float(flossing_loss(lam0) / flossing_loss(lam1)), 2)
    out["|dL/dh| at delay 50 before"] = f"{float(g0[50]):.2e}"
    out["|dL/dh| at delay 50 after"] = f"{float(g1[50]):.2e}"
    out["log10 cond(top-32 of long-term Jacobian, t=50) before"] = round(c0[50], 2)
    out["log10 cond(top-32 of long-term Jacobian, t=50) after"] = round(c1[50], 2)
    out["floss s/update"] = round(f.seconds / max(f.updates, 1), 3)
    ctx.log(f"lambda_1 {lam0[0]:.3f} -> {lam1[0]:.3f}, lambda_32 {lam0[-1]:.3f} -> {lam1[-1]:.3f}")

    # 2. delayed copy at delay 30, same seed, with and without 100 pre-flossing updates
    runs = {}
    for arm, pre in (("none", 0), ("pre", PRE_STEPS)):
        runs[arm] = train_delay_task(TASK, DELAY, hidden=HIDDEN, steps=TASK_STEPS, pre_steps=pre, seed=seed,
                                     eval_every=100, progress=lambda it, a=arm: ctx.progress(it, desc=f"{TASK} d={DELAY} {a}", total=TASK_STEPS))
        ctx.log(f"{TASK} d={DELAY} {arm}: accuracy {runs[arm].accuracy:.3f}, |dL/dh0| {runs[arm].grad_h0:.2e}")
        out[f"{TASK} d={DELAY} accuracy ({arm})"] = round(runs[arm].accuracy, 3)
        out[f"{TASK} d={DELAY} |dL/dh0| ({arm})"] = f"{runs[arm].grad_h0:.2e}"

    try:
        _plot(ctx, lam0, lam1, losses, g0, g1, c0, c1, runs)
    except ImportError:  # matplotlib is optional
        ctx.log("matplotlib not installed: no plots")
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    return out


def _conditioning(rnn: torch.nn.Module, held: torch.Tensor) -> dict[int, float]:
    """log10(sigma_1 / sigma_32) of the t-step Jacobian product after a 20-step burn-in, float64."""
    import copy

    r64 = copy.deepcopy(rnn).double()
    x = held[:2].double()
    return {t: float(jacobian_condition(r64, x[:, : 20 + t], K, burn_in=20)["log10_cond"].mean()) for t in COND_T}


def _plot(ctx: Any, lam0, lam1, losses, g0, g1, c0, c1, runs) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 5, figsize=(21, 3.6))
    ax[0].plot(range(1, len(lam0) + 1), lam0.tolist(), "o-", label="before")
    ax[0].plot(range(1, len(lam1) + 1), lam1.tolist(), "o-", label="after flossing")
    ax[0].axhline(0, color="k", lw=0.5)
    ax[0].set(xlabel="i", ylabel="lambda_i (per step)", title="top-32 Lyapunov exponents, N=64")
    ax[0].legend()
    ax[1].semilogy(losses)
    ax[1].set(xlabel="flossing update", ylabel="L_floss", title="flossing loss (1 sequence/update)")
    ax[2].semilogy(g0.tolist(), label="before")
    ax[2].semilogy(g1.tolist(), label="after flossing")
    ax[2].set(xlabel="delay d", ylabel="||dL/dh_{T-d}||", title="gradient norm vs delay")
    ax[2].legend()
    for arm, r in runs.items():
        ax[3].plot(*zip(*r.curve), "o-", label=arm)
    ax[3].axhline(0.5, color="k", lw=0.5, ls="--")
    ax[3].set(xlabel="task step", ylabel="held-out bit accuracy", title=f"{TASK} d={DELAY}", ylim=(0.4, 1.02))
    ax[3].legend()
    ax[4].plot(COND_T, [c0[t] for t in COND_T], "o-", label="before")
    ax[4].plot(COND_T, [c1[t] for t in COND_T], "o-", label="after flossing")
    ax[4].set(xlabel="t (steps)", ylabel="log10 sigma_1/sigma_32", title="long-term Jacobian conditioning")
    ax[4].legend()
    ctx.save_figure(fig, "flossing_demo.png")
