"""Autograd functions that pick the Triton kernel or the reference (``gradkit.kernels.use_triton``)."""

from __future__ import annotations

from typing import Any

import torch
from gradkit.kernels import use_triton

from ..reference import scale_reference


def _scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    if use_triton(x):
        from ..kernels.scale import scale_fwd

        return scale_fwd(x, factor)
    return scale_reference(x, factor)


class GradScaleFunction(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``factor``."""

    @staticmethod
    def forward(x: torch.Tensor, factor: float) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.factor = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _scale(grad, ctx.factor), None


def grad_scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    return GradScaleFunction.apply(x, factor)
