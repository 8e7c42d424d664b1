"""One attack update: (momentum) -> l_inf sign step or l_2 normalised step -> eps-ball projection -> [0, 1].

The same arithmetic, in the same order, as ``gradkit.loops.attack.default_attack_step``:

* MI-FGSM momentum: ``m = decay * m + (g / max(||g||_1, 1e-12)) * D`` (``D`` = elements per example,
  i.e. division by ``mean|g|`` as in torchattacks), then step along ``m``.
* l_inf: ``x' = x + alpha * sign(d)``; ``x'' = x0 + clamp(x' - x0, -eps, eps)``.
* l_2: ``x' = x + (alpha * d) / max(||d||_2, 1e-12)``; ``delta = x' - x0``;
  ``x'' = x0 + delta * min(eps / max(||delta||_2, 1e-12), 1)``.
* finally ``clamp(x'', 0, 1)``.
"""

from __future__ import annotations

import torch


def _norm(v: torch.Tensor, p: float) -> torch.Tensor:
    return v.flatten(1).norm(p=p, dim=1).view(-1, *([1] * (v.dim() - 1)))


def attack_update_ref(
    x_adv: torch.Tensor,
    x_clean: torch.Tensor,
    grad: torch.Tensor,
    *,
    alpha: float,
    eps: float,
    norm: str = "linf",
    momentum: torch.Tensor | None = None,
    decay: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return ``(x_new, momentum_new)`` (``momentum_new`` is ``None`` without momentum)."""
    d = grad
    if momentum is not None:
        d = decay * momentum + d / _norm(d, 1.0).clamp_min(1e-12) * d[0].numel()
    if norm == "linf":
        x1 = x_adv + alpha * d.sign()
        delta = (x1 - x_clean).clamp(-eps, eps)
    else:
        x1 = x_adv + alpha * d / _norm(d, 2.0).clamp_min(1e-12)
        delta = x1 - x_clean
        delta = delta * torch.clamp(eps / _norm(delta, 2.0).clamp_min(1e-12), max=1.0)
    return (x_clean + delta).clamp(0.0, 1.0), (d if momentum is not None else None)
