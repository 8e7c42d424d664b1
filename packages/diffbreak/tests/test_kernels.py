"""Triton kernels vs their plain-torch references (values and every gradient), odd shapes.

Run with ``TRITON_INTERPRET=1`` on CPU (set in the environment before triton is imported).
"""

from __future__ import annotations

import pytest
import torch
from gradkit_diffbreak.reference import copy_reduce_ref, ddpm_step_bwd_ref, ddpm_step_ref

pytestmark = pytest.mark.kernel

TOL = {torch.float32: dict(rtol=1e-6, atol=1e-6), torch.float16: dict(rtol=2e-3, atol=2e-3)}
COEF = dict(a=1.3, b=0.7, c1=0.45, c2=0.6, sigma=0.11)


@pytest.mark.parametrize("shape", [(63,), (3, 1, 7, 9), (5, 431)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("with_noise", [True, False])
def test_ddpm_step_kernel_matches_reference(shape, dtype, clip, with_noise):
    from gradkit_diffbreak.kernels.ddpm_step import ddpm_step_bwd, ddpm_step_fwd
    from gradkit_diffbreak.ops import ddpm_step

    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(dtype)
    eps = torch.randn(shape, generator=g).to(dtype)
    z = torch.randn(shape, generator=g).to(dtype) if with_noise else None
    c = dict(COEF)
    sig = c.pop("sigma")
    # x0 = a x - b eps is outside [-1, 1] for many elements, so the clamp mask is exercised
    out_k = ddpm_step_fwd(x, eps, z, sigma=sig, clip=clip, **c)
    out_r = ddpm_step_ref(x.float(), eps.float(), None if z is None else z.float(), sigma=sig, clip=clip, **c)
    torch.testing.assert_close(out_k.float(), out_r, **TOL[dtype])
    gr = torch.randn(shape, generator=g).to(dtype)
    dx_k, de_k = ddpm_step_bwd(gr, x, eps, clip=clip, **c)
    dx_r, de_r = ddpm_step_bwd_ref(gr.float(), x.float(), eps.float(), clip=clip, **c)
    torch.testing.assert_close(dx_k.float(), dx_r, **TOL[dtype])
    torch.testing.assert_close(de_k.float(), de_r, **TOL[dtype])
    if dtype == torch.float32:
        # the op (autograd Function around the kernels) vs plain autograd through the reference
        xa, ea = x.clone().requires_grad_(True), eps.clone().requires_grad_(True)
        out = ddpm_step(xa, ea, z, sigma=sig, clip=clip, **c)
        gx, ge = torch.autograd.grad(out, (xa, ea), gr)
        xb, eb = x.clone().requires_grad_(True), eps.clone().requires_grad_(True)
        ref = ddpm_step_ref(xb, eb, z, sigma=sig, clip=clip, **c)
        rx, re = torch.autograd.grad(ref, (xb, eb), gr)
        torch.testing.assert_close(out, ref, **TOL[dtype])
        torch.testing.assert_close(gx, rx, **TOL[dtype])
        torch.testing.assert_close(ge, re, **TOL[dtype])


@pytest.mark.parametrize("lead,copies,inner", [(3, 5, (1, 7, 9)), (2, 1, (431,)), (1, 8, (3, 5))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_copy_reduce_kernel_matches_reference(lead, copies, inner, dtype):
    from gradkit_diffbreak.kernels.eot import copy_reduce_fwd
    from gradkit_diffbreak.ops import broadcast_copies

    g = torch.randn((lead * copies, *inner), generator=torch.Generator().manual_seed(1)).to(dtype)
    for scale in (1.0, 1.0 / copies):
        torch.testing.assert_close(copy_reduce_fwd(g, copies, scale).float(), copy_reduce_ref(g.float(), copies, scale),
                                   **TOL[dtype])
    if dtype == torch.float32:
        x = torch.randn((lead, *inner)).requires_grad_(True)
        y = broadcast_copies(x, copies)
        assert torch.equal(y, x.detach().repeat_interleave(copies, 0))
        (gx,) = torch.autograd.grad(y, x, g)
        torch.testing.assert_close(gx, copy_reduce_ref(g, copies), **TOL[dtype])


def test_exact_gradient_through_kernels_matches_reference_path(monkeypatch):
    """End to end: DDPM purification with the Triton step (exact_recompute) vs the torch reference path."""
    from gradkit_diffbreak import DDPMPurifier, PurifiedClassifier
    from helpers import tiny_classifier, tiny_eps_net, tiny_scheduler

    pur = DDPMPurifier(tiny_eps_net(dtype=torch.float32), tiny_scheduler(), t_star=0.06)
    model = PurifiedClassifier(tiny_classifier(dtype=torch.float32), pur, copies=3, seed=0, deterministic=True)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    res = {}
    for mode in ("triton", "reference"):
        monkeypatch.setenv("GRADKIT_KERNELS", mode)
        xx = x.clone().requires_grad_(True)
        out = model(xx)
        (g,) = torch.autograd.grad(out.log_softmax(-1)[..., 1].sum(), xx)
        res[mode] = (out.detach(), g)
    torch.testing.assert_close(res["triton"][0], res["reference"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(res["triton"][1], res["reference"][1], rtol=1e-4, atol=1e-6)
