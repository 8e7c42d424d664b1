"""Triton kernels against the plain-PyTorch references (GPU, or CPU under TRITON_INTERPRET=1):
values and every gradient, odd shapes, fp32 and fp16."""

from __future__ import annotations

import copy
import os

import pytest
import torch

pytestmark = pytest.mark.kernel

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
    pytest.skip("Triton kernels need a GPU or TRITON_INTERPRET=1", allow_module_level=True)

triton = pytest.importorskip("triton")

from gradkit_streambp.kernels.prefix_attention import prefix_attention_bwd, prefix_attention_fwd  # noqa: E402
from gradkit_streambp.kernels.weighted_ce import weighted_ce_bwd, weighted_ce_fwd  # noqa: E402
from gradkit_streambp.reference import (  # noqa: E402
    prefix_attention_bwd_ref,
    prefix_attention_fwd_ref,
    token_logprobs_ref,
    weighted_ce_bwd_ref,
)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 2e-5, torch.float16: 2e-3}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("N,V", [(37, 1001), (3, 7), (63, 431)])
def test_weighted_ce_kernel(N, V, dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(N, V, generator=g) * 3).to(dtype).to(DEV)
    y = torch.randint(0, V, (N,), generator=g).to(DEV)
    y[1::5] = -100
    w = torch.randn(N, generator=g).to(DEV)
    lp_r, lse_r = token_logprobs_ref(x, y)
    lp_k, lse_k = weighted_ce_fwd(x, y)
    t = TOL[dtype]
    torch.testing.assert_close(lp_k, lp_r.float(), rtol=t, atol=t)
    torch.testing.assert_close(lse_k, lse_r.float(), rtol=t, atol=t)
    d_r = weighted_ce_bwd_ref(x.clone(), y, lse_r, w)
    d_k = weighted_ce_bwd(x.clone(), y, lse_k, w)  # in place
    torch.testing.assert_close(d_k.float(), d_r.float(), rtol=t, atol=t)
    assert torch.count_nonzero(d_k[1::5]) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("q_offset,c,T,D,masked", [
    (0, 13, 29, 16, True), (16, 13, 29, 16, True), (5, 7, 12, 20, False), (0, 31, 31, 16, False), (9, 1, 10, 16, True),
])
def test_prefix_attention_kernel(q_offset, c, T, D, masked, dtype):
    g = torch.Generator().manual_seed(1)
    B, Hq, Hkv = 2, 4, 2
    q = torch.randn(B, Hq, c, D, generator=g).to(dtype).to(DEV)
    k = torch.randn(B, Hkv, T, D, generator=g).to(dtype).to(DEV)
    v = torch.randn(B, Hkv, T, D, generator=g).to(dtype).to(DEV)
    km = None
    if masked:
        km = torch.ones(B, T, dtype=torch.bool)
        km[0, :9] = False
        km[1, T - 4:] = False
        km = km.to(DEV)
    scale = D ** -0.5
    t = TOL[dtype]
    o_r, lse_r = prefix_attention_fwd_ref(q, k, v, km, q_offset, scale)
    o_k, lse_k = prefix_attention_fwd(q, k, v, km, q_offset, scale)
    torch.testing.assert_close(o_k.float(), o_r.float(), rtol=t, atol=t)
    assert torch.equal(torch.isinf(lse_k), torch.isinf(lse_r))
    fin = ~torch.isinf(lse_r)
    torch.testing.assert_close(lse_k[fin], lse_r[fin].float(), rtol=t, atol=t)
    do = torch.randn(B, Hq, c, D, generator=g).to(dtype).to(DEV)
    dk0 = torch.randn(B, Hkv, T, D, generator=g).to(dtype).to(DEV)
    dv0 = torch.randn(B, Hkv, T, D, generator=g).to(dtype).to(DEV)
    dk_r, dv_r, dk_k, dv_k = dk0.clone(), dv0.clone(), dk0.clone(), dv0.clone()
    dq_r = prefix_attention_bwd_ref(q, k, v, o_r, lse_r, do, km, q_offset, scale, dk_r, dv_r)
    dq_k = prefix_attention_bwd(q, k, v, o_k, lse_k, do, km, q_offset, scale, dk_k, dv_k)
    torch.testing.assert_close(dq_k.float(), dq_r.float(), rtol=t, atol=t)
    torch.testing.assert_close(dk_k.float(), dk_r.float(), rtol=t, atol=t)
    torch.testing.assert_close(dv_k.float(), dv_r.float(), rtol=t, atol=t)
    e = q_offset + c
    assert torch.equal(dk_k[:, :, e:], dk0[:, :, e:])  # beyond the prefix: untouched


def test_stream_backward_runs_the_kernels_end_to_end():
    """The whole engine with both kernels (dispatch picks Triton here) vs plain autograd, fp32."""
    import gradkit.objectives as O
    from gradkit.kernels import use_triton
    from gradkit_streambp import stream_backward
    from gradkit_streambp.tiny import max_rel_error, oracle_loss_and_grads, random_batch, tiny_causal_lm

    m = tiny_causal_lm("qwen3", dtype=torch.float32, layers=1, vocab=61).to(DEV)
    s = copy.deepcopy(m)
    b = {k: v.to(DEV) for k, v in random_batch(2, 21, vocab=61, padding="both", pad=4, prompt=5).items()}
    assert use_triton(b["input_ids"])
    lr = oracle_loss_and_grads(m, b, O.CausalLMSFT())
    ls = stream_backward(s, b, O.CausalLMSFT(), layer_chunk=8, head_chunk=8)
    err, where = max_rel_error(m, s)
    assert err < 1e-5, (err, where)
    assert abs(float(lr) - float(ls)) < 1e-5
