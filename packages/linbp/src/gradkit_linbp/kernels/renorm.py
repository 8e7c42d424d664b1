"""Fused per-example re-normalisation: one program per example, two passes over its row.

Pass 1 accumulates ``sum(g_lin^2)`` and ``sum(g_true^2)`` in float32; pass 2 writes
``lam * sqrt(st / sl) * g_lin`` (zeros where ``sl == 0``). Reference: ``reference/renorm.py``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _renorm_fwd_kernel(gl_ptr, gt_ptr, out_ptr, D, lam, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = row * D
    acc_l = tl.zeros([BLOCK], dtype=tl.float32)
    acc_t = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, D, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < D
        a = tl.load(gl_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
        b = tl.load(gt_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
        acc_l += a * a
        acc_t += b * b
    sl = tl.sum(acc_l, axis=0)
    st = tl.sum(acc_t, axis=0)
    safe = tl.where(sl > 0, sl, 1.0)
    scale = tl.where(sl > 0, lam * tl.sqrt(st) / tl.sqrt(safe), 0.0)
    for start in range(0, D, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < D
        a = tl.load(gl_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + base + offs, (a * scale).to(out_ptr.dtype.element_ty), mask=mask)


def renorm_fwd(g_lin: torch.Tensor, g_true: torch.Tensor, lam: float, block: int = 1024) -> torch.Tensor:
    """Launch :func:`_renorm_fwd_kernel` over ``g_lin.shape[0]`` rows."""
    gl = g_lin.contiguous()
    gt = g_true.contiguous()
    out = torch.empty_like(gl)
    n = gl.shape[0]
    d = gl.numel() // max(n, 1)
    blk = min(block, triton.next_power_of_2(max(d, 16)))
    _renorm_fwd_kernel[(n,)](gl, gt, out, d, float(lam), BLOCK=blk)
    return out
