"""EOT copies: broadcast an input to ``copies`` adjacent batch rows; backward = copy reduction."""

from __future__ import annotations

from typing import Any

import torch
from gradkit.kernels import use_triton

from ..reference.eot import copy_reduce_ref

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def copy_reduce(g: torch.Tensor, copies: int, scale: float = 1.0) -> torch.Tensor:
    """``scale * sum`` over the ``copies`` adjacent rows of each input: ``(B*copies, ...) -> (B, ...)``.

    ``scale = 1/copies`` gives the EOT mean of per-copy gradients.
    """
    if g.dtype in _KERNEL_DTYPES and use_triton(g):
        from ..kernels.eot import copy_reduce_fwd

        return copy_reduce_fwd(g, copies, scale)
    return copy_reduce_ref(g, copies, scale)


class BroadcastCopiesFunction(torch.autograd.Function):
    """``x (B, ...) -> (B*copies, ...)`` with row ``b*copies + j`` = ``x[b]``; backward sums over copies."""

    @staticmethod
    def forward(x: torch.Tensor, copies: int) -> torch.Tensor:  # type: ignore[override]
        return x.repeat_interleave(copies, dim=0)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.copies = inputs[1]

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):  # type: ignore[override]
        return copy_reduce(g, ctx.copies), None


def broadcast_copies(x: torch.Tensor, copies: int) -> torch.Tensor:
    """Repeat each input ``copies`` times along the batch (adjacent rows)."""
    if copies == 1:
        return x
    return BroadcastCopiesFunction.apply(x, copies)
