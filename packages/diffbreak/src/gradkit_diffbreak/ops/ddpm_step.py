"""``ddpm_step``: the fused reverse-step update, dispatched to Triton or the torch reference."""

from __future__ import annotations

from typing import Any

import torch
from gradkit.kernels import use_triton
from torch.autograd.function import once_differentiable

from ..reference.ddpm_step import ddpm_step_ref

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class DDPMStepFunction(torch.autograd.Function):
    """Autograd wrapper of the Triton fused step (forward and closed-form backward kernels).

    Gradients flow to ``x`` and ``eps``; the step noise is a constant (it is replayed, never learned).
    """

    @staticmethod
    def forward(x, eps, noise, a, b, c1, c2, sigma, clip):  # type: ignore[override]
        from ..kernels.ddpm_step import ddpm_step_fwd

        return ddpm_step_fwd(x, eps, noise, a, b, c1, c2, sigma, clip)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, eps, _noise, a, b, c1, c2, _sigma, clip = inputs
        ctx.save_for_backward(x, eps)
        ctx.coef = (a, b, c1, c2, clip)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        from ..kernels.ddpm_step import ddpm_step_bwd

        x, eps = ctx.saved_tensors
        a, b, c1, c2, clip = ctx.coef
        dx, deps = ddpm_step_bwd(grad, x, eps, a, b, c1, c2, clip)
        return dx, deps, None, None, None, None, None, None, None


def ddpm_step(
    x: torch.Tensor,
    eps: torch.Tensor,
    noise: torch.Tensor | None = None,
    *,
    a: float,
    b: float,
    c1: float,
    c2: float,
    sigma: float = 0.0,
    clip: bool = True,
) -> torch.Tensor:
    """``c1 * clamp(a x - b eps, -1, 1) + c2 x + sigma noise`` (clamp only when ``clip``).

    Triton (fused forward and backward) when :func:`gradkit.kernels.use_triton` says so and the dtype
    is fp32/fp16/bf16; otherwise the plain-PyTorch reference, differentiated by autograd.
    """
    tensors = (x, eps) if noise is None else (x, eps, noise)
    if x.dtype in _KERNEL_DTYPES and use_triton(*tensors):
        return DDPMStepFunction.apply(x, eps, noise, float(a), float(b), float(c1), float(c2), float(sigma), bool(clip))
    return ddpm_step_ref(x, eps, noise, a, b, c1, c2, sigma, clip)
