"""Reference for causal attention of one query chunk against its key prefix.

Shapes: ``q`` (B, Hq, c, D) holds the queries at absolute positions
``q_offset .. q_offset + c - 1``; ``k``, ``v`` (B, Hkv, >=e, D) hold keys/values at
positions ``0 ..``; only the first ``e = q_offset + c`` keys are read. Query head
``h`` reads key head ``h // (Hq // Hkv)`` (GQA by index, no repeated K/V).
``key_mask`` (B, >=e) bool/int marks valid keys (padding = 0); None = all valid.
Key ``j`` is visible to query ``i`` iff ``j <= i`` and ``key_mask[b, j]``.
A query with no visible key outputs zeros (the convention of torch SDPA, which
Hugging Face models hit for left padding) and receives no gradient.

The reference builds a c x e score block per chunk (never T x T).
"""

from __future__ import annotations

import torch


def _cd(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _allowed(key_mask, b, c, e, q_offset, device):
    qpos = torch.arange(c, device=device).unsqueeze(-1) + q_offset
    kpos = torch.arange(e, device=device).unsqueeze(0)
    allowed = (kpos <= qpos).view(1, 1, 1, c, e)
    if key_mask is not None:
        allowed = allowed & key_mask[:, :e].bool().view(b, 1, 1, 1, e)
    return allowed  # (B|1, 1, 1, c, e)


def prefix_attention_fwd_ref(q, k, v, key_mask, q_offset: int, scale: float):
    """Return ``(o, lse)``: o (B, Hq, c, D) in q's dtype, lse (B, Hq, c) in the compute dtype
    (``-inf`` for queries that see no key)."""
    b, hq, c, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    e = q_offset + c
    cd = _cd(q.dtype)
    qg = q.to(cd).view(b, hkv, g, c, d)
    kp = k[:, :, :e].to(cd)
    vp = v[:, :, :e].to(cd)
    s = torch.einsum("bhgcd,bhed->bhgce", qg, kp) * scale
    allowed = _allowed(key_mask, b, c, e, q_offset, q.device)
    s = s.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    p = torch.exp(s - safe.unsqueeze(-1))  # masked entries exp(-inf) = 0
    o = torch.einsum("bhgce,bhed->bhgcd", p, vp)
    return o.reshape(b, hq, c, d).to(q.dtype), lse.reshape(b, hq, c)


def prefix_attention_bwd_ref(q, k, v, o, lse, do, key_mask, q_offset: int, scale: float, dk, dv):
    """Return dq; ADD the key/value gradients into ``dk[:, :, :e]`` and ``dv[:, :, :e]``."""
    b, hq, c, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    e = q_offset + c
    cd = _cd(q.dtype)
    qg = q.to(cd).view(b, hkv, g, c, d)
    kp = k[:, :, :e].to(cd)
    vp = v[:, :, :e].to(cd)
    dog = do.to(cd).view(b, hkv, g, c, d)
    og = o.to(cd).view(b, hkv, g, c, d)
    lseg = lse.to(cd).view(b, hkv, g, c)
    allowed = _allowed(key_mask, b, c, e, q_offset, q.device)
    s = torch.einsum("bhgcd,bhed->bhgce", qg, kp) * scale
    safe = torch.where(torch.isinf(lseg), torch.zeros_like(lseg), lseg)
    p = torch.where(allowed, torch.exp(s - safe.unsqueeze(-1)), torch.zeros((), dtype=cd, device=q.device))
    delta = (dog * og).sum(-1, keepdim=True)
    dp = torch.einsum("bhgcd,bhed->bhgce", dog, vp)
    ds = p * (dp - delta) * scale
    dq = torch.einsum("bhgce,bhed->bhgcd", ds, kp).reshape(b, hq, c, d)
    dk[:, :, :e] += torch.einsum("bhgce,bhgcd->bhed", ds, qg).to(dk.dtype)
    dv[:, :, :e] += torch.einsum("bhgce,bhgcd->bhed", p, dog).to(dv.dtype)
    return dq.to(q.dtype)
