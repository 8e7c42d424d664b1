"""Fused attack update: one program per example, 2-3 passes over its row.

pass 1 (momentum and/or l_2): ``||g||_1`` and ``||d||_2`` of the step direction ``d``
(``d = decay * m + g / ||g||_1 * D`` with momentum, else ``g``; the momentum is recomputed
elementwise, never re-read after being stored);
pass 2 (l_2 only): ``||x + alpha * d / ||d|| - x0||_2``;
last pass: write the new momentum and ``clamp(x0 + project(x + step - x0), 0, 1)``.
Reference: ``reference/update.py`` (same arithmetic as gradkit's default attack step).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _direction(g_ptr, m_ptr, idx, msk, l1, Df, decay, MOMENTUM: tl.constexpr):
    """The step direction at ``idx``: ``g``, or the new momentum ``decay * m + g / ||g||_1 * D``."""
    d = tl.load(g_ptr + idx, mask=msk, other=0.0).to(tl.float32)
    if MOMENTUM:
        m = tl.load(m_ptr + idx, mask=msk, other=0.0).to(tl.float32)
        d = decay * m + d / l1 * Df
    return d


@triton.jit
def _attack_update_fwd_kernel(
    x_ptr, x0_ptr, g_ptr, m_ptr, out_ptr, m_out_ptr, D, alpha, eps, decay,
    L2: tl.constexpr, MOMENTUM: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = row * D
    Df = D.to(tl.float32)
    l1 = 1.0
    if MOMENTUM:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, D, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            msk = offs < D
            g = tl.load(g_ptr + base + offs, mask=msk, other=0.0).to(tl.float32)
            acc += tl.abs(g)
        l1 = tl.maximum(tl.sum(acc, axis=0), 1e-12)
    n2 = 1.0
    if L2:
        acc2 = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, D, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            msk = offs < D
            d = _direction(g_ptr, m_ptr, base + offs, msk, l1, Df, decay, MOMENTUM)
            acc2 += d * d
        n2 = tl.maximum(tl.sqrt(tl.sum(acc2, axis=0)), 1e-12)
        acc3 = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, D, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            msk = offs < D
            d = _direction(g_ptr, m_ptr, base + offs, msk, l1, Df, decay, MOMENTUM)
            x = tl.load(x_ptr + base + offs, mask=msk, other=0.0).to(tl.float32)
            x0 = tl.load(x0_ptr + base + offs, mask=msk, other=0.0).to(tl.float32)
            delta = (x + alpha * d / n2) - x0
            acc3 += delta * delta
        factor = tl.minimum(eps / tl.maximum(tl.sqrt(tl.sum(acc3, axis=0)), 1e-12), 1.0)
    for start in range(0, D, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        msk = offs < D
        d = _direction(g_ptr, m_ptr, base + offs, msk, l1, Df, decay, MOMENTUM)
        if MOMENTUM:
            tl.store(m_out_ptr + base + offs, d.to(m_out_ptr.dtype.element_ty), mask=msk)
        x = tl.load(x_ptr + base + offs, mask=msk, other=0.0).to(tl.float32)
        x0 = tl.load(x0_ptr + base + offs, mask=msk, other=0.0).to(tl.float32)
        if L2:
            delta = ((x + alpha * d / n2) - x0) * factor
        else:
            s = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
            delta = tl.minimum(tl.maximum((x + alpha * s) - x0, -eps), eps)
        y = tl.minimum(tl.maximum(x0 + delta, 0.0), 1.0)
        tl.store(out_ptr + base + offs, y.to(out_ptr.dtype.element_ty), mask=msk)


def attack_update_fwd(
    x_adv: torch.Tensor, x_clean: torch.Tensor, grad: torch.Tensor, momentum: torch.Tensor | None,
    *, alpha: float, eps: float, l2: bool, decay: float, block: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch :func:`_attack_update_fwd_kernel`; returns ``(x_new, momentum_new)``."""
    x = x_adv.contiguous()
    x0 = x_clean.contiguous()
    g = grad.contiguous()
    out = torch.empty_like(x)
    n = x.shape[0]
    d = x.numel() // max(n, 1)
    m = momentum.contiguous() if momentum is not None else g
    m_out = torch.empty_like(g) if momentum is not None else out
    blk = min(block, triton.next_power_of_2(max(d, 16)))
    _attack_update_fwd_kernel[(n,)](
        x, x0, g, m, out, m_out, d, float(alpha), float(eps), float(decay),
        L2=l2, MOMENTUM=momentum is not None, BLOCK=blk,
    )
    return out, (m_out if momentum is not None else None)
