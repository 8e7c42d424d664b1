"""Sign-fixed thin QR that also returns ``log|diag R|`` (plain torch)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["qr_logdiag_reference"]


def qr_logdiag_reference(a: Tensor, tiny: float = 1e-30) -> tuple[Tensor, Tensor]:
    """Thin QR of a batch of tall matrices, normalised so that ``diag R >= 0``.

    Args:
        a: ``(..., n, k)`` with ``n >= k``, float32 or float64.
        tiny: lower clamp of ``|R_jj|`` before the log (a saturated tangent column would
            otherwise give ``log 0 = -inf`` and an infinite gradient).

    Returns:
        ``(q, logr)``: ``q`` of shape ``(..., n, k)`` with orthonormal columns and positive
        ``R_jj`` (the same function that modified Gram-Schmidt computes), and
        ``logr = log(max(|R_jj|, tiny))`` of shape ``(..., k)``. Differentiable.
    """
    q, r = torch.linalg.qr(a, mode="reduced")
    d = torch.diagonal(r, dim1=-2, dim2=-1)
    sign = torch.where(d < 0, -torch.ones_like(d), torch.ones_like(d)).detach()
    q = q * sign.unsqueeze(-2)
    logr = torch.log(d.abs().clamp_min(tiny))
    return q, logr
