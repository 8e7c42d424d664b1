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


def _probs(qg, kp, key_mask, b, hkv, g, c, e, q_offset, scale, lse=None):
    """Scores -> probabilities in one (B, Hkv, G*c, e) buffer (in place). Returns (p, lse)."""
    s = torch.matmul(qg, kp.transpose(-1, -2))
    s.mul_(scale)
    s5 = s.view(b, hkv, g, c, e)
    if key_mask is None:  # only the diagonal c x c block has hidden keys
        diag = torch.ones(c, c, dtype=torch.bool, device=qg.device).triu_(1)
        s5[..., q_offset:e].masked_fill_(diag, float("-inf"))
    else:
        s5.masked_fill_(~_allowed(key_mask, b, c, e, q_offset, qg.device), float("-inf"))
    if lse is None:
        lse = torch.logsumexp(s5, dim=-1)
    safe = torch.where(torch.isinf(lse), torch.zeros((), dtype=lse.dtype, device=lse.device), lse)
    s5.sub_(safe.unsqueeze(-1)).exp_()  # masked entries: exp(-inf) = 0; queries with no key: all 0
    return s, lse


def prefix_attention_fwd_ref(q, k, v, key_mask, q_offset: int, scale: float):
    """Return ``(o, lse)``: o (B, Hq, c, D) in q's dtype, lse (B, Hq, c) in the compute dtype
    (``-inf`` for queries that see no key)."""
    b, hq, c, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    e = q_offset + c
    cd = _cd(q.dtype)
    qg = q.to(cd).reshape(b, hkv, g * c, d)
    kp = k[:, :, :e].to(cd)
    vp = v[:, :, :e].to(cd)
    p, lse = _probs(qg, kp, key_mask, b, hkv, g, c, e, q_offset, scale)
    o = torch.matmul(p, vp)
    return o.view(b, hq, c, d).to(q.dtype), lse.reshape(b, hq, c)


def prefix_attention_bwd_ref(q, k, v, o, lse, do, key_mask, q_offset: int, scale: float, dk, dv):
    """Return dq; ADD the key/value gradients into ``dk[:, :, :e]`` and ``dv[:, :, :e]``."""
    b, hq, c, d = q.shape
    hkv = k.shape[1]
    g = hq // hkv
    e = q_offset + c
    cd = _cd(q.dtype)
    qg = q.to(cd).reshape(b, hkv, g * c, d)
    kp = k[:, :, :e].to(cd)
    vp = v[:, :, :e].to(cd)
    dog = do.to(cd).reshape(b, hkv, g * c, d)
    og = o.to(cd).reshape(b, hkv, g * c, d)
    p, _ = _probs(qg, kp, key_mask, b, hkv, g, c, e, q_offset, scale, lse=lse.to(cd).view(b, hkv, g, c))
    delta = (dog * og).sum(-1, keepdim=True)
    ds = torch.matmul(dog, vp.transpose(-1, -2))
    ds.sub_(delta).mul_(p).mul_(scale)
    dq = torch.matmul(ds, kp).view(b, hq, c, d)
    dk[:, :, :e] += torch.matmul(ds.transpose(-1, -2), qg).to(dk.dtype)
    dv[:, :, :e] += torch.matmul(p.transpose(-1, -2), dog).to(dv.dtype)
    return dq.to(q.dtype)
