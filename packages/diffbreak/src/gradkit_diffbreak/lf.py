"""The low-frequency ("LF", systemic) attack of DiffBreak, adapted from UnMarker.

Jointly optimised (Adam), for a :class:`~gradkit_diffbreak.model.PurifiedClassifier`:

1. a modifier ``w`` in tanh space: ``x' = (tanh(atanh(2x - 1) + w) + 1) / 2``;
2. a cascade of learnable, spatially varying joint-bilateral filters: for each kernel size
   ``(kh, kw)`` (odd) one kernel per pixel, logits initialised log-Gaussian (``sigma_init`` in
   normalised offsets), softmax-normalised, times a fixed range kernel from the clean image,
   ``exp(-||patch - centre||^2 / (2 sigma_color^2))``, renormalised: only smooth,
   structure-aligned changes are expressible.

Objective per input: the margin ``z_y - max_{j != y} z_j`` through purification, averaged over the
EOT copies (exact gradients by default), plus ``c * [d >= eps] * d`` with ``d`` a perceptual
distance to the clean image. Offline there are no LPIPS backbone weights, so ``d = 1 - SSIM``
(Gaussian window) stands in for LPIPS; the bound ``perceptual_eps`` refers to that distance.
The returned image is the best iterate: the lowest copy-averaged margin within the bound.

Deviations from the reference description (documented, not hidden): full (not quadrant-symmetric)
per-pixel kernels; SSIM distance instead of LPIPS-VGG; no binary search on ``c``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from gradkit.config import Config
from gradkit.errors import ConfigError
from torch import nn

from .purifiers import ssim

__all__ = ["LFConfig", "BilateralCascade", "lf_attack", "LFResult"]


@dataclass(frozen=True)
class LFConfig(Config):
    """Hyperparameters of :func:`lf_attack` (paper-style defaults scaled to 16 x 16 digits)."""

    kernels: tuple[tuple[int, int], ...] = ((5, 5), (7, 7), (5, 5), (3, 3))
    iters: int = 30
    lr_filters: float = 0.05
    lr_modifier: float = 0.008
    sigma_color: float = 0.05
    sigma_init: float = 0.2
    c: float = 1e4
    perceptual_eps: float = 0.05
    ssim_window: int = 5
    grad_clip: float = 1.0
    copies: int = 4
    backward: str = "exact_recompute"
    tanh_margin: float = 1e-6  # x is mapped into [-1 + m, 1 - m] before atanh; saturated pixels barely move when m is tiny

    def __post_init__(self) -> None:
        for k in self.kernels:
            if len(k) != 2 or any((not isinstance(v, int)) or v < 1 or v % 2 == 0 for v in k):
                raise ConfigError(f"LF: every entry of `kernels` must be a pair of odd positive ints, got {k!r}")
        for name in ("iters", "copies"):
            if getattr(self, name) < 1:
                raise ConfigError(f"LF: `{name}` must be >= 1")
        if not 0 < self.tanh_margin < 1:
            raise ConfigError("LF: `tanh_margin` must be in (0, 1)")
        for name in ("lr_filters", "lr_modifier", "sigma_color", "sigma_init", "c", "perceptual_eps", "grad_clip"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"LF: `{name}` must be > 0")


def _patches(img: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """``(B, C, kh*kw, H, W)`` neighbourhoods with reflect padding."""
    b, c, h, w = img.shape
    pad = (kw // 2, kw // 2, kh // 2, kh // 2)
    p = F.pad(img, pad, mode="reflect" if min(h, w) > max(kh, kw) // 2 else "replicate")
    return F.unfold(p, (kh, kw)).view(b, c, kh * kw, h, w)


class BilateralCascade(nn.Module):
    """Learnable per-pixel joint-bilateral filters guided by the clean image ``x_ref``."""

    def __init__(self, x_ref: torch.Tensor, kernels: Any, *, sigma_color: float = 0.05, sigma_init: float = 0.2) -> None:
        super().__init__()
        b, _, h, w = x_ref.shape
        self.kernels = [tuple(k) for k in kernels]
        self.logits = nn.ParameterList()
        ranges = []
        for kh, kw in self.kernels:
            dy = torch.arange(kh, dtype=x_ref.dtype) - kh // 2
            dx = torch.arange(kw, dtype=x_ref.dtype) - kw // 2
            ny = dy / max(1, kh // 2)
            nx = dx / max(1, kw // 2)
            logg = -(ny[:, None] ** 2 + nx[None, :] ** 2) / (2 * sigma_init**2)
            self.logits.append(nn.Parameter(logg.reshape(1, kh * kw, 1, 1).expand(b, kh * kw, h, w).clone()))
            pt = _patches(x_ref, kh, kw)
            centre = x_ref.unsqueeze(2)
            dist = ((pt - centre) ** 2).sum(1)
            ranges.append(torch.exp(-dist / (2 * sigma_color**2)))
        self.ranges = ranges

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        out = img
        for (kh, kw), logit, rng in zip(self.kernels, self.logits, self.ranges):
            wgt = logit.softmax(1) * rng
            wgt = wgt / wgt.sum(1, keepdim=True).clamp_min(1e-12)
            out = (_patches(out, kh, kw) * wgt.unsqueeze(1)).sum(2)
        return out


@dataclass
class LFResult:
    x_adv: torch.Tensor
    distance: torch.Tensor  # 1 - SSIM to the clean image
    margin: torch.Tensor  # best copy-averaged margin (negative: fooled on average)


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    zy = logits.gather(-1, y.view(-1, 1, 1).expand(-1, logits.shape[1], 1)).squeeze(-1)
    other = logits.scatter(-1, y.view(-1, 1, 1).expand(-1, logits.shape[1], 1), float("-inf")).max(-1).values
    return (zy - other).mean(1)


def lf_attack(model: Any, x: torch.Tensor, y: torch.Tensor, config: LFConfig | None = None, **overrides: Any) -> LFResult:
    """Run the LF attack on ``model`` (a PurifiedClassifier); see the module docstring."""
    cfg = (config or LFConfig()).replace(**overrides) if overrides else (config or LFConfig())
    x = x.detach()
    cascade = BilateralCascade(x, cfg.kernels, sigma_color=cfg.sigma_color, sigma_init=cfg.sigma_init)
    a0 = torch.atanh((2 * x - 1).clamp(-1 + cfg.tanh_margin, 1 - cfg.tanh_margin))
    w = torch.zeros_like(x, requires_grad=True)
    opt = torch.optim.Adam([{"params": list(cascade.parameters()), "lr": cfg.lr_filters},
                            {"params": [w], "lr": cfg.lr_modifier}])
    best = x.clone()
    best_m = torch.full((x.shape[0],), math.inf)
    best_d = torch.zeros(x.shape[0])
    for _ in range(cfg.iters):
        with torch.enable_grad():
            xm = (torch.tanh(a0 + w) + 1) / 2
            xa = cascade(xm).clamp(0, 1)
            m = _margin(model.logits_per_copy(xa, copies=cfg.copies, backward=cfg.backward), y)
            d = 1 - ssim(xa, x, window=cfg.ssim_window, data_range=1.0)
            loss = m.sum() + cfg.c * (d * (d >= cfg.perceptual_eps).to(d.dtype)).sum()
            opt.zero_grad()
            loss.backward()
        for group in opt.param_groups:
            torch.nn.utils.clip_grad_norm_(group["params"], cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            ok = (d < cfg.perceptual_eps) & (m < best_m)
            best[ok] = xa.detach()[ok]
            best_m = torch.where(ok, m.detach(), best_m)
            best_d = torch.where(ok, d.detach(), best_d)
    return LFResult(x_adv=best, distance=best_d, margin=best_m)
