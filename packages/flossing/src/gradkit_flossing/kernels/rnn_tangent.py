"""Fused Elman-RNN step + tangent-frame update: one GEMM ``W @ [h | Q]`` and a row epilogue.

Per batch element ``b`` and block of rows ``r``::

    acc = W[r, :] @ [h_b | Q_b]            # (BLOCK_R, k + 1), fp32 accumulation
    a   = acc[:, 0] + inp[b, r]            # pre-activation
    h'  = phi(a);  s = phi'(a)             # tanh (sech^2 from a, no underflow) or relu
    Z   = s[:, None] * acc[:, 1:]          # D_t Q with D_t = diag(phi'(a)) W
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["rnn_tangent_fwd", "_rnn_tangent_fwd_kernel"]

_ACTS = {"tanh": 0, "relu": 1}


@triton.jit
def _rnn_tangent_fwd_kernel(
    W, H, Q, INP, HOUT, Z,
    N, K,
    s_w0, s_w1, s_hb, s_hn, s_qb, s_qn, s_qk, s_ib, s_in, s_ob, s_on, s_zb, s_zn, s_zk,
    ACT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):
    b = tl.program_id(0)
    rb = tl.program_id(1)
    rows = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)  # column 0 = h, columns 1..K = Q
    row_ok = rows < N
    acc = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        nn = n0 + tl.arange(0, BLOCK_N)
        n_ok = nn < N
        w = tl.load(W + rows[:, None] * s_w0 + nn[None, :] * s_w1,
                    mask=row_ok[:, None] & n_ok[None, :], other=0.0).to(tl.float32)
        hv = tl.load(H + b * s_hb + nn * s_hn, mask=n_ok, other=0.0).to(tl.float32)
        qcols = cols - 1
        qv = tl.load(Q + b * s_qb + nn[:, None] * s_qn + qcols[None, :] * s_qk,
                     mask=n_ok[:, None] & (cols[None, :] >= 1) & (cols[None, :] <= K),
                     other=0.0).to(tl.float32)
        hq = tl.where(cols[None, :] == 0, hv[:, None], qv)
        acc += tl.dot(w, hq, input_precision="ieee")
    wh = tl.sum(tl.where(cols[None, :] == 0, acc, 0.0), axis=1)
    a = wh + tl.load(INP + b * s_ib + rows * s_in, mask=row_ok, other=0.0).to(tl.float32)
    if ACT == 0:
        e = tl.exp(-2.0 * tl.abs(a))
        t = (1.0 - e) / (1.0 + e)
        hn = tl.where(a >= 0, t, -t)
        slope = 4.0 * e / ((1.0 + e) * (1.0 + e))
    else:
        hn = tl.maximum(a, 0.0)
        slope = tl.where(a > 0, 1.0, 0.0)
    tl.store(HOUT + b * s_ob + rows * s_on, hn.to(HOUT.dtype.element_ty), mask=row_ok)
    z = slope[:, None] * acc
    zcols = cols - 1
    tl.store(Z + b * s_zb + rows[:, None] * s_zn + zcols[None, :] * s_zk, z.to(Z.dtype.element_ty),
             mask=row_ok[:, None] & (cols[None, :] >= 1) & (cols[None, :] <= K))


def _block(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(n)))


def rnn_tangent_fwd(
    h: torch.Tensor, q: torch.Tensor, w_hh: torch.Tensor, inp: torch.Tensor, nonlinearity: str = "tanh"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the fused step. Shapes as in ``reference.rnn_tangent_step_reference``; returns
    ``(h_next, z)`` in the dtype of ``h`` (accumulation in float32)."""
    B, N = h.shape
    K = q.shape[-1]
    h_next = torch.empty_like(h)
    z = torch.empty((B, N, K), dtype=h.dtype, device=h.device)
    BLOCK_R = _block(N, 16, 64)
    BLOCK_N = _block(N, 16, 64)
    BLOCK_C = _block(K + 1, 16, 256)
    grid = (B, triton.cdiv(N, BLOCK_R))
    _rnn_tangent_fwd_kernel[grid](
        w_hh, h, q, inp, h_next, z, N, K,
        w_hh.stride(0), w_hh.stride(1), h.stride(0), h.stride(1),
        q.stride(0), q.stride(1), q.stride(2), inp.stride(0), inp.stride(1),
        h_next.stride(0), h_next.stride(1), z.stride(0), z.stride(1), z.stride(2),
        ACT=_ACTS[nonlinearity], BLOCK_R=BLOCK_R, BLOCK_N=BLOCK_N, BLOCK_C=BLOCK_C,
    )
    return h_next, z
