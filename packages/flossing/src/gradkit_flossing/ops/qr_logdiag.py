"""``qr_logdiag``: batched thin QR returning ``(Q, log|diag R|)`` with kernel/reference dispatch."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..kernels_limits import MAX_K, MAX_N
from ..reference.qr import qr_logdiag_reference
from ._dispatch import kernel_wanted, recompute_grads

__all__ = ["QRLogDiagFunction", "qr_logdiag"]


class QRLogDiagFunction(torch.autograd.Function):
    """Triton MGS forward; gradients by recomputing the sign-fixed torch QR in backward."""

    @staticmethod
    def forward(a: Tensor, tiny: float) -> tuple[Tensor, Tensor]:
        from ..kernels.mgs_qr import mgs_qr_fwd

        return mgs_qr_fwd(a.contiguous(), tiny)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        a, tiny = inputs
        ctx.save_for_backward(a)
        ctx.tiny = tiny

    @staticmethod
    def backward(ctx: Any, g_q: Tensor, g_logr: Tensor) -> tuple:
        (a,) = ctx.saved_tensors
        (g_a,) = recompute_grads(
            lambda a_: qr_logdiag_reference(a_, ctx.tiny), (a,), (g_q, g_logr), ctx.needs_input_grad[:1]
        )
        return g_a, None


def qr_logdiag(a: Tensor, tiny: float = 1e-30) -> tuple[Tensor, Tensor]:
    """Thin QR of ``a`` ``(B, n, k)`` with ``diag R > 0``; returns ``(Q, log max(R_jj, tiny))``."""
    if a.dim() == 3 and a.shape[-2] <= MAX_N and a.shape[-1] <= MAX_K and kernel_wanted(a):
        return QRLogDiagFunction.apply(a, tiny)
    return qr_logdiag_reference(a, tiny)
