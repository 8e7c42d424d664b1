from __future__ import annotations

import torch

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def kernel_wanted(*tensors: torch.Tensor) -> bool:
    """True when the Triton path should run for these tensors (never for float64)."""
    if any(t.dtype not in _KERNEL_DTYPES for t in tensors):
        return False
    from gradkit.kernels import use_triton

    return bool(use_triton(*tensors))


def recompute_grads(fn, inputs: tuple, grads: tuple, needs: tuple) -> tuple:
    """Re-run the reference ``fn`` on detached ``inputs`` and backpropagate ``grads`` through it."""
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_(bool(n)) if isinstance(x, torch.Tensor) else x for x, n in zip(inputs, needs)]
        outs = fn(*leaves)
        wrt = [x for x, n in zip(leaves, needs) if n]
        got = torch.autograd.grad(outs, wrt, grads, allow_unused=True) if wrt else ()
    it = iter(got)
    return tuple(next(it) if n else None for n in needs)
