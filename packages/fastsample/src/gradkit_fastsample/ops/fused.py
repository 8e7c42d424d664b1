"""The sampler's fused element-wise steps, dispatched between Triton and the plain-torch reference.

These steps run under ``torch.no_grad`` inside the sampler (the method never differentiates through
them). When autograd is recording and an input requires grad, the reference (differentiable
plain torch) is used so gradients stay correct; the kernels are inference-only.
"""

from __future__ import annotations

import torch
from gradkit.kernels import use_triton

from ..reference.fused import ddim_transition_ref, fd_update_ref, masked_error_probe_ref

__all__ = ["masked_error_probe", "fd_update", "ddim_transition"]


def _needs_autograd(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _coef(c: torch.Tensor | float, bsz: int, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(c, dtype=torch.float32, device=device).reshape(-1).expand(bsz)


def masked_error_probe(
    x: torch.Tensor, x0: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, h: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``g = mask*(y-x0)``; ``delta = h/max|g|`` per sample (0 if ``g == 0``); ``x_probe = x + delta*g``.

    Returns ``(g float32, x_probe, delta [B] float32)``. ``y``/``mask`` broadcast to ``x0``.
    """
    if not _needs_autograd(x, x0, y, mask) and use_triton(x, x0, y, mask):
        from ..kernels.fused import masked_error_probe_fwd

        return masked_error_probe_fwd(x, x0, y.expand_as(x0), mask.to(x0.dtype).expand_as(x0), h)
    return masked_error_probe_ref(x, x0, y, mask, h)


def fd_update(x: torch.Tensor, x0_probe: torch.Tensor, x0: torch.Tensor, lr: torch.Tensor | float) -> torch.Tensor:
    """``x + lr * d / max|d|`` per sample, ``d = x0_probe - x0``; rows with ``d == 0`` unchanged."""
    lr_t = _coef(lr, x.shape[0], x.device)
    if not _needs_autograd(x, x0_probe, x0) and use_triton(x, x0_probe, x0):
        from ..kernels.fused import fd_update_fwd

        return fd_update_fwd(x, x0_probe, x0, lr_t)
    return fd_update_ref(x, x0_probe, x0, lr_t)


def ddim_transition(
    x0: torch.Tensor,
    eps: torch.Tensor,
    noise: torch.Tensor | None,
    a: torch.Tensor | float,
    b: torch.Tensor | float,
    s: torch.Tensor | float,
) -> torch.Tensor:
    """``a*x0 + b*eps + s*noise`` with scalar or per-sample ``[B]`` coefficients (DDIM step with sigma)."""
    bsz = x0.shape[0]
    a_t, b_t, s_t = (_coef(c, bsz, x0.device) for c in (a, b, s))
    tensors = [t for t in (x0, eps, noise) if t is not None]
    if not _needs_autograd(*tensors) and use_triton(*tensors):
        from ..kernels.fused import ddim_transition_fwd

        return ddim_transition_fwd(x0, eps, noise, a_t, b_t, s_t)
    return ddim_transition_ref(x0, eps, noise, a_t, b_t, s_t)
