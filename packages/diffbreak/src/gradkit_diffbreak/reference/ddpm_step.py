"""The fused reverse-step update, in plain PyTorch.

One reverse step of a DDPM (and, with ``clip=False``, one Euler-Maruyama / Euler step of the VP-SDE /
probability-flow ODE) is an element-wise function of the current state ``x``, the network output
``eps`` and the step noise ``z``::

    x0  = a * x - b * eps                 # predicted clean image
    x0  = clamp(x0, -1, 1)                # only when clip=True
    out = c1 * x0 + c2 * x + sigma * z    # posterior mean + noise

DDPM: ``a = 1/sqrt(abar_t)``, ``b = sqrt(1-abar_t)/sqrt(abar_t)``, ``c1``/``c2`` the posterior-mean
coefficients, ``sigma`` the step standard deviation. VP-SDE Euler-Maruyama (reverse, step ``d``):
``a = 0``, ``b = beta d / sigma_t``, ``c1 = 1``, ``c2 = 1 + beta d / 2``, ``sigma = sqrt(beta d)``,
``clip=False``.
"""

from __future__ import annotations

import torch


def ddpm_step_ref(
    x: torch.Tensor,
    eps: torch.Tensor,
    noise: torch.Tensor | None,
    a: float,
    b: float,
    c1: float,
    c2: float,
    sigma: float,
    clip: bool = True,
) -> torch.Tensor:
    """Forward of the fused step (autograd-differentiable: this is also the CPU path)."""
    x0 = a * x - b * eps
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
    out = c1 * x0 + c2 * x
    if noise is not None and sigma != 0.0:
        out = out + sigma * noise
    return out


def ddpm_step_bwd_ref(
    grad: torch.Tensor,
    x: torch.Tensor,
    eps: torch.Tensor,
    a: float,
    b: float,
    c1: float,
    c2: float,
    clip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form backward: ``(d out/d x)^T grad`` and ``(d out/d eps)^T grad``.

    The clamp passes gradient where ``-1 <= x0 <= 1`` (inclusive, as ``torch.clamp`` does).
    """
    if clip:
        x0 = a * x - b * eps
        g = grad * ((x0 >= -1.0) & (x0 <= 1.0)).to(grad.dtype)
    else:
        g = grad
    return c2 * grad + (a * c1) * g, (-b * c1) * g
