"""Causal prefix attention for one query chunk (GQA by index, padding from a key mask vector).

``prefix_attention_fwd`` returns ``(o, lse)``; ``prefix_attention_bwd`` returns dq and ADDS into the
caller's full-length dK/dV buffers, which is how StreamBP accumulates the key/value gradient over
query chunks. ``prefix_attention`` is the differentiable form (``PrefixAttentionFunction``).
Float64 always uses the reference (the kernel computes in float32).
"""

from __future__ import annotations

import torch
from gradkit.kernels import use_triton

from gradkit_streambp.reference.prefix_attention import prefix_attention_bwd_ref, prefix_attention_fwd_ref


def _kernel_ok(*ts) -> bool:
    return ts[0].dtype != torch.float64 and use_triton(*[t for t in ts if t is not None])


def prefix_attention_fwd(q, k, v, key_mask, q_offset: int, scale: float):
    if _kernel_ok(q, k, v, key_mask):
        from gradkit_streambp.kernels.prefix_attention import prefix_attention_fwd as kf

        return kf(q, k, v, key_mask, q_offset, scale)
    return prefix_attention_fwd_ref(q, k, v, key_mask, q_offset, scale)


def prefix_attention_bwd(q, k, v, o, lse, do, key_mask, q_offset: int, scale: float, dk, dv):
    if _kernel_ok(q, k, v, key_mask) and dk.dtype == k.dtype == v.dtype and dv.dtype == k.dtype:
        from gradkit_streambp.kernels.prefix_attention import prefix_attention_bwd as kb

        return kb(q, k, v, o, lse, do, key_mask, q_offset, scale, dk, dv)
    return prefix_attention_bwd_ref(q, k, v, o, lse, do, key_mask, q_offset, scale, dk, dv)


class PrefixAttentionFunction(torch.autograd.Function):
    """Differentiable ``o = softmax(q k^T * scale + causal/padding mask) v`` for one query chunk."""

    @staticmethod
    def forward(q, k, v, key_mask, q_offset, scale):
        o, lse = prefix_attention_fwd(q, k, v, key_mask, q_offset, scale)
        return o, lse

    @staticmethod
    def setup_context(ctx, inputs, output):
        q, k, v, key_mask, q_offset, scale = inputs
        o, lse = output
        ctx.save_for_backward(q, k, v, o, lse, key_mask)
        ctx.q_offset, ctx.scale = q_offset, scale
        ctx.mark_non_differentiable(lse)

    @staticmethod
    def backward(ctx, do, _dlse):
        q, k, v, o, lse, key_mask = ctx.saved_tensors
        dk = torch.zeros_like(k)
        dv = torch.zeros_like(v)
        dq = prefix_attention_bwd(q, k, v, o, lse, do.contiguous(), key_mask, ctx.q_offset, ctx.scale, dk, dv)
        return dq, dk, dv, None, None, None


def chunk_mask(key_mask, b: int, c: int, e: int, q_offset: int, device) -> torch.Tensor | None:
    """Boolean (B|1, 1, c, e) visibility mask of one query chunk (None: plain causal from the start)."""
    if key_mask is None and q_offset == 0:
        return None
    qpos = torch.arange(c, device=device).unsqueeze(-1) + q_offset
    allowed = torch.arange(e, device=device).unsqueeze(0) <= qpos
    allowed = allowed.view(1, 1, c, e)
    if key_mask is not None:
        allowed = allowed & key_mask[:, :e].bool().view(b, 1, 1, e)
    return allowed


def prefix_attention_sdpa(q, k, v, key_mask, q_offset: int, scale: float) -> torch.Tensor:
    """Differentiable CPU path: ``torch.nn.functional.scaled_dot_product_attention`` on the key prefix with
    a c x e chunk mask and ``enable_gqa`` (no repeated K/V). Queries that see no key output zeros."""
    b, hq, c, _ = q.shape
    e = q_offset + c
    mask = chunk_mask(key_mask, b, c, e, q_offset, q.device)
    return torch.nn.functional.scaled_dot_product_attention(
        q, k[:, :, :e], v[:, :, :e], attn_mask=mask, is_causal=mask is None, scale=scale,
        enable_gqa=k.shape[1] != hq,
    )


def prefix_attention(q, k, v, key_mask=None, q_offset: int = 0, scale: float | None = None) -> torch.Tensor:
    """Differentiable causal prefix attention; see :mod:`gradkit_streambp.reference.prefix_attention`."""
    if scale is None:
        scale = q.shape[-1] ** -0.5
    return PrefixAttentionFunction.apply(q, k, v, key_mask, q_offset, scale)[0]
