"""The plain-PyTorch references (the CPU path) against torch's own SDPA / log_softmax autograd."""

from __future__ import annotations

import pytest
import torch
from gradkit_streambp.ops import prefix_attention, token_logprobs
from gradkit_streambp.reference import (
    prefix_attention_bwd_ref,
    prefix_attention_fwd_ref,
    token_logprobs_ref,
    weighted_ce_bwd_ref,
)


def sdpa_oracle(q, k, v, key_mask, q_offset):
    """Torch SDPA on the prefix with an explicit c x e mask and repeated K/V heads."""
    b, hq, c, d = q.shape
    e = q_offset + c
    g = hq // k.shape[1]
    kk = k[:, :, :e].repeat_interleave(g, dim=1)
    vv = v[:, :, :e].repeat_interleave(g, dim=1)
    allowed = torch.arange(e).view(1, e) <= (torch.arange(c) + q_offset).view(c, 1)
    allowed = allowed.view(1, 1, c, e)
    if key_mask is not None:
        allowed = allowed & key_mask[:, :e].bool().view(b, 1, 1, e)
    return torch.nn.functional.scaled_dot_product_attention(q, kk, vv, attn_mask=allowed)


@pytest.mark.parametrize("q_offset,c,T", [(0, 13, 29), (16, 13, 29), (5, 1, 9), (0, 31, 31)])
@pytest.mark.parametrize("masked", [False, True])
def test_prefix_attention_reference_matches_sdpa(q_offset, c, T, masked):
    g = torch.Generator().manual_seed(0)
    B, Hq, Hkv, D = 2, 6, 2, 12
    q = torch.randn(B, Hq, c, D, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(B, Hkv, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(B, Hkv, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    km = None
    if masked:
        km = torch.ones(B, T, dtype=torch.bool)
        km[0, :7] = False  # left padding: the first queries of row 0 see no key
        km[1, T - 3:] = False
    do = torch.randn(B, Hq, c, D, generator=g, dtype=torch.float64)
    ref = sdpa_oracle(q, k, v, km, q_offset)
    gq, gk, gv = torch.autograd.grad(ref, (q, k, v), do)
    o, lse = prefix_attention_fwd_ref(q.detach(), k.detach(), v.detach(), km, q_offset, D ** -0.5)
    torch.testing.assert_close(o, ref.detach(), rtol=1e-12, atol=1e-12)
    dk = torch.zeros_like(k)
    dv = torch.zeros_like(v)
    dq = prefix_attention_bwd_ref(q.detach(), k.detach(), v.detach(), o, lse, do, km, q_offset, D ** -0.5, dk, dv)
    torch.testing.assert_close(dq, gq, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dk, gk, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dv, gv, rtol=1e-12, atol=1e-12)
    # the differentiable op (reference path on CPU) gives the same gradients
    got = torch.autograd.grad(prefix_attention(q, k, v, km, q_offset), (q, k, v), do)
    for a, b in zip(got, (gq, gk, gv)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_prefix_attention_bwd_accumulates():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 5, 8, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, 11, 8, generator=g, dtype=torch.float64)
    v = torch.randn(1, 1, 11, 8, generator=g, dtype=torch.float64)
    do = torch.randn(1, 2, 5, 8, generator=g, dtype=torch.float64)
    o, lse = prefix_attention_fwd_ref(q, k, v, None, 3, 0.3)
    dk0, dv0 = torch.randn_like(k), torch.randn_like(v)
    dk, dv = dk0.clone(), dv0.clone()
    prefix_attention_bwd_ref(q, k, v, o, lse, do, None, 3, 0.3, dk, dv)
    dk2, dv2 = torch.zeros_like(k), torch.zeros_like(v)
    prefix_attention_bwd_ref(q, k, v, o, lse, do, None, 3, 0.3, dk2, dv2)
    torch.testing.assert_close(dk, dk0 + dk2, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(dv, dv0 + dv2, rtol=1e-14, atol=1e-14)
    assert torch.equal(dk[:, :, 8:], dk0[:, :, 8:])  # keys beyond the prefix untouched


@pytest.mark.parametrize("N,V", [(37, 1001), (1, 5), (64, 97)])
def test_weighted_ce_reference_matches_log_softmax(N, V):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N, V, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, V, (N,), generator=g)
    y[::4] = -100
    w = torch.randn(N, generator=g, dtype=torch.float64)
    valid = y != -100
    full = torch.log_softmax(x, -1).gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid
    (gx,) = torch.autograd.grad(full, x, w)
    logp, lse = token_logprobs_ref(x.detach(), y)
    torch.testing.assert_close(logp, full.detach(), rtol=1e-12, atol=1e-12)
    buf = x.detach().clone()
    weighted_ce_bwd_ref(buf, y, lse, w)
    torch.testing.assert_close(buf, gx, rtol=1e-12, atol=1e-12)
    (gx2,) = torch.autograd.grad(token_logprobs(x, y), x, w)
    torch.testing.assert_close(gx2, gx, rtol=1e-12, atol=1e-12)
