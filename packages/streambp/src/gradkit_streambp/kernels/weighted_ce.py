"""Triton kernels: per-token log-probabilities of a logits chunk and the in-place
weighted cross-entropy gradient. One program per row, online log-sum-exp over
vocabulary blocks; maths in float32. Reference: ``reference/weighted_ce.py``."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _weighted_ce_fwd_kernel(
    logits_ptr, stride_row, targets_ptr, logp_ptr, lse_ptr, V, ignore_index, BLOCK_V: tl.constexpr
):
    row = tl.program_id(0)
    base = logits_ptr + row.to(tl.int64) * stride_row
    m = -float("inf")
    s = 0.0
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(base + cols, mask=cols < V, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    lse = m + tl.log(s)
    y = tl.load(targets_ptr + row)
    valid = y != ignore_index
    y_safe = tl.where(valid, y, 0)
    picked = tl.load(base + y_safe).to(tl.float32)
    logp = tl.where(valid, picked - lse, 0.0)
    tl.store(logp_ptr + row, logp)
    tl.store(lse_ptr + row, lse)


@triton.jit
def _weighted_ce_bwd_kernel(
    logits_ptr, stride_row, targets_ptr, lse_ptr, grad_ptr, V, ignore_index, BLOCK_V: tl.constexpr
):
    row = tl.program_id(0)
    base = logits_ptr + row.to(tl.int64) * stride_row
    y = tl.load(targets_ptr + row)
    valid = y != ignore_index
    g = tl.where(valid, tl.load(grad_ptr + row).to(tl.float32), 0.0)
    lse = tl.load(lse_ptr + row).to(tl.float32)
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        inb = cols < V
        x = tl.load(base + cols, mask=inb, other=0.0).to(tl.float32)
        p = tl.exp(x - lse)
        d = tl.where(cols == y, g, 0.0) - g * p
        tl.store(base + cols, d.to(logits_ptr.dtype.element_ty), mask=inb)


def _block_v(v: int) -> int:
    return min(triton.next_power_of_2(v), 4096)


def weighted_ce_fwd(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100):
    """``(logp, lse)`` float32 (N,) for ``logits`` (N, V) with unit stride along V."""
    n, v = logits.shape
    assert logits.stride(1) == 1
    logp = torch.empty(n, device=logits.device, dtype=torch.float32)
    lse = torch.empty(n, device=logits.device, dtype=torch.float32)
    if n:
        _weighted_ce_fwd_kernel[(n,)](
            logits, logits.stride(0), targets.contiguous(), logp, lse, v, ignore_index, BLOCK_V=_block_v(v)
        )
    return logp, lse


def weighted_ce_bwd(logits, targets, lse, grad_logp, ignore_index: int = -100):
    """Overwrite ``logits`` with ``grad_logp * (onehot - softmax)`` and return it."""
    n, v = logits.shape
    assert logits.stride(1) == 1
    if n:
        _weighted_ce_bwd_kernel[(n,)](
            logits,
            logits.stride(0),
            targets.contiguous(),
            lse.float().contiguous(),
            grad_logp.float().contiguous(),
            v,
            ignore_index,
            BLOCK_V=_block_v(v),
        )
    return logits
