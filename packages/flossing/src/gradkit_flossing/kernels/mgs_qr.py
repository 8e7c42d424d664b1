"""Batched thin QR by modified Gram-Schmidt, one program per matrix, returning ``Q`` and ``log R_jj``.

The whole ``n x k`` tile lives in registers/SRAM (``n <= 256``, ``k <= 64``). Each of the ``k``
iterations takes column ``j``, normalises it (``R_jj`` > 0, so the result equals the sign-fixed
Householder QR), records ``log max(R_jj, tiny)`` and removes its component from the later columns.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..kernels_limits import MAX_K, MAX_N

__all__ = ["mgs_qr_fwd", "_mgs_qr_fwd_kernel", "MAX_N", "MAX_K"]


@triton.jit
def _mgs_qr_fwd_kernel(
    A, Q, LOGR,
    N, K, TINY,
    s_ab, s_an, s_ak, s_qb, s_qn, s_qk, s_lb, s_lk,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    b = tl.program_id(0)
    rows = tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_K)
    m = (rows[:, None] < N) & (cols[None, :] < K)
    a = tl.load(A + b * s_ab + rows[:, None] * s_an + cols[None, :] * s_ak, mask=m, other=0.0).to(tl.float32)
    logr = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for j in range(0, K):
        is_j = cols == j
        v = tl.sum(tl.where(is_j[None, :], a, 0.0), axis=1)
        rjj = tl.maximum(tl.sqrt(tl.sum(v * v, axis=0)), TINY)
        qj = v / rjj
        logr = tl.where(is_j, tl.log(rjj), logr)
        r = tl.sum(qj[:, None] * a, axis=0)
        a = tl.where((cols > j)[None, :], a - qj[:, None] * r[None, :], a)
        a = tl.where(is_j[None, :], qj[:, None], a)
    tl.store(Q + b * s_qb + rows[:, None] * s_qn + cols[None, :] * s_qk, a.to(Q.dtype.element_ty), mask=m)
    tl.store(LOGR + b * s_lb + cols * s_lk, logr.to(LOGR.dtype.element_ty), mask=cols < K)


def mgs_qr_fwd(a: torch.Tensor, tiny: float = 1e-30) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the batched MGS QR on ``a`` of shape ``(B, n, k)``; returns ``(q, logr)``."""
    B, N, K = a.shape
    q = torch.empty_like(a)
    logr = torch.empty((B, K), dtype=a.dtype, device=a.device)
    BLOCK_N = max(16, triton.next_power_of_2(N))
    BLOCK_K = max(16, triton.next_power_of_2(K))
    _mgs_qr_fwd_kernel[(B,)](
        a, q, logr, N, K, tiny,
        a.stride(0), a.stride(1), a.stride(2), q.stride(0), q.stride(1), q.stride(2),
        logr.stride(0), logr.stride(1),
        BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,
    )
    return q, logr
