"""Triton kernels: causal attention of a query chunk (absolute offset ``q_offset``)
against its key prefix, with key padding read from a (B, T) vector and GQA by
head index. Forward returns O and the row log-sum-exp; backward computes dQ and
ADDS dK/dV into caller-owned full-length buffers (one program per key block, so no
atomics). Maths in float32 (``input_precision="ieee"``: no TF32).
Reference: ``reference/prefix_attention.py``."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _prefix_attention_fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, km_ptr,
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sob, soh, som, skmb,
    Hq, G, C, E, D, q_offset, scale,
    HAS_MASK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // Hq
    h = pid_bh % Hq
    kvh = h // G
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    qpos = offs_m + q_offset
    mmask = offs_m < C
    dmask = offs_d < D
    q = tl.load(
        q_ptr + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :],
        mask=mmask[:, None] & dmask[None, :], other=0.0,
    ).to(tl.float32)
    m_i = tl.full([BLOCK_M], -float("inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    hi = tl.minimum(E, q_offset + pid_m * BLOCK_M + BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        nmask = offs_n < E
        k = tl.load(
            k_ptr + b * skb + kvh * skh + offs_n[:, None] * skn + offs_d[None, :],
            mask=nmask[:, None] & dmask[None, :], other=0.0,
        ).to(tl.float32)
        v = tl.load(
            v_ptr + b * svb + kvh * svh + offs_n[:, None] * svn + offs_d[None, :],
            mask=nmask[:, None] & dmask[None, :], other=0.0,
        ).to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
        valid = (offs_n[None, :] <= qpos[:, None]) & nmask[None, :]
        if HAS_MASK:
            kv_ok = tl.load(km_ptr + b * skmb + offs_n, mask=nmask, other=0)
            valid = valid & (kv_ok[None, :] != 0)
        s = tl.where(valid, s, -float("inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == -float("inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
        m_i = m_new
    nonempty = l_i > 0.0
    o = acc / tl.where(nonempty, l_i, 1.0)[:, None]
    lse = tl.where(nonempty, m_i + tl.log(tl.where(nonempty, l_i, 1.0)), -float("inf"))
    tl.store(
        o_ptr + b * sob + h * soh + offs_m[:, None] * som + offs_d[None, :],
        o.to(o_ptr.dtype.element_ty), mask=mmask[:, None] & dmask[None, :],
    )
    tl.store(lse_ptr + (b * Hq + h) * C + offs_m, lse, mask=mmask)


@triton.jit
def _prefix_attention_bwd_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, km_ptr, dk_ptr, dv_ptr,
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sdob, sdoh, sdom,
    sdkb, sdkh, sdkn, sdvb, sdvh, sdvn, skmb,
    Hq, Hkv, G, C, E, D, q_offset, scale,
    HAS_MASK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // Hkv
    kvh = pid_bh % Hkv
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    nmask = offs_n < E
    dmask = offs_d < D
    kvmask = nmask[:, None] & dmask[None, :]
    k = tl.load(k_ptr + b * skb + kvh * skh + offs_n[:, None] * skn + offs_d[None, :], mask=kvmask, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + b * svb + kvh * svh + offs_n[:, None] * svn + offs_d[None, :], mask=kvmask, other=0.0).to(tl.float32)
    key_ok = nmask
    if HAS_MASK:
        kv_ok = tl.load(km_ptr + b * skmb + offs_n, mask=nmask, other=0)
        key_ok = key_ok & (kv_ok != 0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    # first query row that can see this key block: position >= pid_n*BLOCK_N
    lo = tl.maximum(pid_n * BLOCK_N - q_offset, 0)
    lo = (lo // BLOCK_M) * BLOCK_M
    for g in range(0, G):
        h = kvh * G + g
        for start_m in range(lo, C, BLOCK_M):
            offs_m = start_m + tl.arange(0, BLOCK_M)
            mmask = offs_m < C
            qmask = mmask[:, None] & dmask[None, :]
            q = tl.load(q_ptr + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :], mask=qmask, other=0.0).to(tl.float32)
            do = tl.load(do_ptr + b * sdob + h * sdoh + offs_m[:, None] * sdom + offs_d[None, :], mask=qmask, other=0.0).to(tl.float32)
            lse = tl.load(lse_ptr + (b * Hq + h) * C + offs_m, mask=mmask, other=0.0)
            delta = tl.load(delta_ptr + (b * Hq + h) * C + offs_m, mask=mmask, other=0.0)
            lse = tl.where(lse == -float("inf"), 0.0, lse)
            s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
            valid = (offs_n[None, :] <= (offs_m + q_offset)[:, None]) & key_ok[None, :] & mmask[:, None]
            p = tl.where(valid, tl.exp(s - lse[:, None]), 0.0)
            dv += tl.dot(tl.trans(p), do, input_precision="ieee")
            dp = tl.dot(do, tl.trans(v), input_precision="ieee")
            ds = p * (dp - delta[:, None]) * scale
            dk += tl.dot(tl.trans(ds), q, input_precision="ieee")
    dk_ptrs = dk_ptr + b * sdkb + kvh * sdkh + offs_n[:, None] * sdkn + offs_d[None, :]
    dv_ptrs = dv_ptr + b * sdvb + kvh * sdvh + offs_n[:, None] * sdvn + offs_d[None, :]
    old_dk = tl.load(dk_ptrs, mask=kvmask, other=0.0).to(tl.float32)
    old_dv = tl.load(dv_ptrs, mask=kvmask, other=0.0).to(tl.float32)
    tl.store(dk_ptrs, (old_dk + dk).to(dk_ptr.dtype.element_ty), mask=kvmask)
    tl.store(dv_ptrs, (old_dv + dv).to(dv_ptr.dtype.element_ty), mask=kvmask)


@triton.jit
def _prefix_attention_bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, km_ptr, dq_ptr,
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sdob, sdoh, sdom, sdqb, sdqh, sdqm, skmb,
    Hq, G, C, E, D, q_offset, scale,
    HAS_MASK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // Hq
    h = pid_bh % Hq
    kvh = h // G
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mmask = offs_m < C
    dmask = offs_d < D
    qmask = mmask[:, None] & dmask[None, :]
    qpos = offs_m + q_offset
    q = tl.load(q_ptr + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :], mask=qmask, other=0.0).to(tl.float32)
    do = tl.load(do_ptr + b * sdob + h * sdoh + offs_m[:, None] * sdom + offs_d[None, :], mask=qmask, other=0.0).to(tl.float32)
    lse = tl.load(lse_ptr + (b * Hq + h) * C + offs_m, mask=mmask, other=0.0)
    delta = tl.load(delta_ptr + (b * Hq + h) * C + offs_m, mask=mmask, other=0.0)
    lse = tl.where(lse == -float("inf"), 0.0, lse)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    hi = tl.minimum(E, q_offset + pid_m * BLOCK_M + BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        nmask = offs_n < E
        kvmask = nmask[:, None] & dmask[None, :]
        k = tl.load(k_ptr + b * skb + kvh * skh + offs_n[:, None] * skn + offs_d[None, :], mask=kvmask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + b * svb + kvh * svh + offs_n[:, None] * svn + offs_d[None, :], mask=kvmask, other=0.0).to(tl.float32)
        valid = (offs_n[None, :] <= qpos[:, None]) & nmask[None, :] & mmask[:, None]
        if HAS_MASK:
            kv_ok = tl.load(km_ptr + b * skmb + offs_n, mask=nmask, other=0)
            valid = valid & (kv_ok[None, :] != 0)
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
        p = tl.where(valid, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision="ieee")
        ds = p * (dp - delta[:, None]) * scale
        dq += tl.dot(ds, k, input_precision="ieee")
    tl.store(dq_ptr + b * sdqb + h * sdqh + offs_m[:, None] * sdqm + offs_d[None, :], dq.to(dq_ptr.dtype.element_ty), mask=qmask)


def _blocks(d: int):
    return 16, 16, max(16, triton.next_power_of_2(d))


def _mask_args(key_mask, q):
    if key_mask is None:
        return torch.empty(1, 1, dtype=torch.int32, device=q.device), 0, False
    km = key_mask.to(torch.int32)
    return km, km.stride(0), True


def _check(t):
    assert t.stride(-1) == 1, "last dimension must be contiguous"


def prefix_attention_fwd(q, k, v, key_mask, q_offset: int, scale: float):
    """Triton forward. Returns ``(o, lse)`` like ``prefix_attention_fwd_ref``."""
    for t in (q, k, v):
        _check(t)
    b, hq, c, d = q.shape
    hkv = k.shape[1]
    e = q_offset + c
    o = torch.empty_like(q)
    lse = torch.empty(b, hq, c, device=q.device, dtype=torch.float32)
    km, skmb, has_mask = _mask_args(key_mask, q)
    bm, bn, bd = _blocks(d)
    grid = (triton.cdiv(c, bm), b * hq)
    _prefix_attention_fwd_kernel[grid](
        q, k, v, o, lse, km,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2), skmb,
        hq, hq // hkv, c, e, d, q_offset, scale,
        HAS_MASK=has_mask, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd,
    )
    return o, lse


def prefix_attention_bwd(q, k, v, o, lse, do, key_mask, q_offset: int, scale: float, dk, dv):
    """Triton backward: returns dq and adds into ``dk[:, :, :e]``, ``dv[:, :, :e]``."""
    do = do.contiguous() if do.stride(-1) != 1 else do
    for t in (q, k, v, dk, dv):
        _check(t)
    b, hq, c, d = q.shape
    hkv = k.shape[1]
    e = q_offset + c
    delta = (do.float() * o.float()).sum(-1).contiguous()
    lse = lse.float().contiguous()
    km, skmb, has_mask = _mask_args(key_mask, q)
    bm, bn, bd = _blocks(d)
    _prefix_attention_bwd_dkdv_kernel[(triton.cdiv(e, bn), b * hkv)](
        q, k, v, do, lse, delta, km, dk, dv,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2),
        dk.stride(0), dk.stride(1), dk.stride(2), dv.stride(0), dv.stride(1), dv.stride(2), skmb,
        hq, hkv, hq // hkv, c, e, d, q_offset, scale,
        HAS_MASK=has_mask, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd,
    )
    dq = torch.empty_like(q)
    _prefix_attention_bwd_dq_kernel[(triton.cdiv(c, bm), b * hq)](
        q, k, v, do, lse, delta, km, dq,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2),
        dq.stride(0), dq.stride(1), dq.stride(2), skmb,
        hq, hq // hkv, c, e, d, q_offset, scale,
        HAS_MASK=has_mask, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd,
    )
    return dq
