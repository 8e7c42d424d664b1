"""Fused attack update op: Triton kernel on CUDA / under the interpreter, else the reference.

Used by the plugin's ``gradkit_attack_step`` when the ``linbp`` transform is active. Not
differentiable (attack updates run outside autograd).
"""

from __future__ import annotations

import torch
from gradkit.errors import ConfigError
from gradkit.kernels import use_triton

from ..reference.update import attack_update_ref

_KERNEL_DTYPES = (torch.float32, torch.float16)


def attack_update(
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
    """One l_inf/l_2 (MI-)FGSM step with eps-ball projection and [0, 1] clamp; see ``reference/update.py``."""
    if norm not in ("linf", "l2"):
        raise ConfigError(f"attack_update: `norm` must be 'linf' or 'l2', got {norm!r}")
    if not (x_adv.shape == x_clean.shape == grad.shape) or (momentum is not None and momentum.shape != grad.shape):
        raise ConfigError("attack_update: `x_adv`, `x_clean`, `grad` (and `momentum`) must have the same shape")
    tensors = [x_adv, x_clean, grad] + ([momentum] if momentum is not None else [])
    same_dtype = all(t.dtype == x_adv.dtype for t in tensors)
    if same_dtype and x_adv.dtype in _KERNEL_DTYPES and x_adv.numel() > 0 and use_triton(*tensors):
        from ..kernels.update import attack_update_fwd

        return attack_update_fwd(x_adv, x_clean, grad, momentum, alpha=alpha, eps=eps, l2=norm == "l2", decay=decay)
    return attack_update_ref(x_adv, x_clean, grad, alpha=alpha, eps=eps, norm=norm, momentum=momentum, decay=decay)
