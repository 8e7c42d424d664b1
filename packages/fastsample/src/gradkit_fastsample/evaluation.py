"""Shared evaluation for the demo and the benchmarks: inpainting held-out MNIST-16 digits.

Every method draws from the same initial noise (same seed) and is scored on the same held-out
images (never trained on): constraint error on the known pixels, MSE on the generated pixels, PSNR
of the whole image in ``[0, 1]`` units, wall time per image and network evaluations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from .constraints import Inpaint
from .models import load_mnist16, load_pretrained
from .sampler import ConstrainedSampler, DPSSampler, SampleOutput

__all__ = ["heldout_batch", "make_mask", "METHODS", "run_method", "score", "image_grid"]


def heldout_batch(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` held-out 16x16 digits in ``[-1, 1]``, cycling through the classes (``[n, 1, 16, 16]``)."""
    x, y = load_mnist16("test")
    g = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(y == c).flatten() for c in range(10)]
    picks = []
    for i in range(n):
        idx = per_class[i % 10]
        picks.append(idx[torch.randint(len(idx), (1,), generator=g)].item())
    return x[picks]


def make_mask(kind: str = "top_half", size: int = 16) -> torch.Tensor:
    """``[1, 1, size, size]`` mask, 1 = known: ``top_half``, ``left_half`` or ``center_box`` (8x8 hole)."""
    m = torch.zeros(1, 1, size, size)
    if kind == "top_half":
        m[..., : size // 2, :] = 1
    elif kind == "left_half":
        m[..., : size // 2] = 1
    elif kind == "center_box":
        m[:] = 1
        q = size // 4
        m[..., q : size - q, q : size - q] = 0
    else:
        from gradkit.errors import ConfigError

        raise ConfigError(f"make_mask: `kind` must be top_half, left_half or center_box, got {kind!r}")
    return m


def _ours(**kw: Any) -> Callable[..., SampleOutput]:
    def run(unet: Any, sched: Any, c: Inpaint, shape: tuple[int, ...], g: torch.Generator) -> SampleOutput:
        return ConstrainedSampler(unet, sched, c, **kw).sample(shape, generator=g)

    return run


def _dps(steps: int, scale: float) -> Callable[..., SampleOutput]:
    def run(unet: Any, sched: Any, c: Inpaint, shape: tuple[int, ...], g: torch.Generator) -> SampleOutput:
        return DPSSampler(unet, sched, c, num_inference_steps=steps, scale=scale).sample(shape, generator=g)

    return run


#: name -> (runner, description). Budget: the FD method's N(1+2K) = 220 forwards.
METHODS: dict[str, tuple[Callable[..., SampleOutput], str]] = {
    "fastsample (fd)": (_ours(), "ours: N=20, K=5, J g by finite differences"),
    "dps": (_dps(220, 1.0), "DPS, 220 steps, zeta=1 (1 backward per step)"),
    "x0_only": (_ours(estimator="x0_only"), "MPGD-style: correct x0_hat only, N=20, K=5"),
    "vjp in our loop": (_ours(estimator="dps"), "our loop with J^T g (backprop), N=20, K=5"),
    "unconstrained": (_ours(inner_steps=0), "plain DDIM(eta=0.15), N=20"),
}


def score(out: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    m = mask.expand_as(truth)
    err = (out - truth).pow(2)
    known = (err * m).flatten(1).sum(1) / m.flatten(1).sum(1)
    hole = (err * (1 - m)).flatten(1).sum(1) / (1 - m).flatten(1).sum(1)
    mse01 = ((out.clamp(-1, 1) - truth) / 2).pow(2).flatten(1).mean(1)
    psnr = 10 * torch.log10(1.0 / mse01.clamp_min(1e-10))
    return {"known_mse": known.mean().item(), "hole_mse": hole.mean().item(), "psnr": psnr.mean().item()}


def run_method(name: str, unet: Any, sched: Any, truth: torch.Tensor, mask: torch.Tensor, seed: int = 0) -> tuple[dict[str, Any], torch.Tensor]:
    """Run one method of :data:`METHODS` on ``truth`` with ``mask``; returns (metrics row, x0)."""
    runner, desc = METHODS[name]
    c = Inpaint(truth, mask)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    out = runner(unet, sched, c, tuple(truth.shape), g)
    secs = time.perf_counter() - t0
    row = {"method": name, "desc": desc, "images": truth.shape[0], "s_per_image": secs / truth.shape[0],
           "unet_fwd": out.trace.nfe_forward, "unet_bwd": out.trace.nfe_backward}
    row.update(score(out.x0, truth, mask))
    return row, out.x0


def image_grid(rows: list[tuple[str, torch.Tensor]], path: Any, ncol: int = 8) -> None:
    """Save a labelled grid (one row per entry) of ``[-1, 1]`` images with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(ncol, rows[0][1].shape[0])
    fig, ax = plt.subplots(len(rows), n, figsize=(1.1 * n + 1.6, 1.15 * len(rows)), squeeze=False)
    for i, (label, imgs) in enumerate(rows):
        for j in range(n):
            ax[i, j].imshow(imgs[j, 0].detach().clamp(-1, 1).cpu(), cmap="gray", vmin=-1, vmax=1)
            ax[i, j].set_xticks([])
            ax[i, j].set_yticks([])
        ax[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def load() -> tuple[Any, Any]:
    return load_pretrained()
