"""Per-example re-normalisation scale: Triton kernel on CUDA / under the interpreter, else the reference.

Not differentiable (it runs inside LinBP's backward, which is ``once_differentiable``).
"""

from __future__ import annotations

import torch
from gradkit.errors import ConfigError
from gradkit.kernels import use_triton

from ..reference.renorm import renorm_scale_ref

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def renorm_scale(g_lin: torch.Tensor, g_true: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """``lam * ||g_true[n]|| / ||g_lin[n]|| * g_lin[n]`` for each example ``n`` (zeros where ``g_lin[n] == 0``)."""
    if g_lin.shape != g_true.shape or g_lin.dtype != g_true.dtype:
        raise ConfigError(f"renorm_scale: g_lin {tuple(g_lin.shape)}/{g_lin.dtype} and g_true "
                         f"{tuple(g_true.shape)}/{g_true.dtype} must match")
    if g_lin.dtype in _KERNEL_DTYPES and g_lin.numel() > 0 and use_triton(g_lin, g_true):
        from ..kernels.renorm import renorm_fwd

        return renorm_fwd(g_lin, g_true, lam)
    return renorm_scale_ref(g_lin, g_true, lam)
