"""Exactness: the per-step-recompute gradient equals full-graph autograd through the same chain."""

from __future__ import annotations

import pytest
import torch
from gradkit_diffbreak import DDPMPurifier, GDMPGuidance, NoiseTape, PurifiedClassifier, VPSDEPurifier
from gradkit_diffbreak.exact import exact_purify
from helpers import tiny_classifier, tiny_eps_net, tiny_scheduler, tiny_unet

PURIFIERS = {
    "ddpm": lambda u, s: DDPMPurifier(u, s, t_star=0.1),
    "ddpm_respaced": lambda u, s: DDPMPurifier(u, s, t_star=0.3, steps=7),
    "ddim": lambda u, s: DDPMPurifier(u, s, t_star=0.1, ode=True),
    "vpsde": lambda u, s: VPSDEPurifier(u, s, t_star=0.1, steps=12),
    "vpode": lambda u, s: VPSDEPurifier(u, s, t_star=0.1, steps=12, ode=True),
    "gdmp_mse_x2": lambda u, s: DDPMPurifier(u, s, t_star=0.1, guidance=GDMPGuidance("mse", scale=20.0), repeats=2),
    "gdmp_ssim": lambda u, s: DDPMPurifier(u, s, t_star=0.1, guidance=GDMPGuidance("ssim", scale=5.0, window=3)),
}


def _grads(model, x, rule):
    model.backward = rule
    xx = x.clone().requires_grad_(True)
    out = model(xx)
    w = torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)
    loss = (out.log_softmax(-1) * w).sum()
    (g,) = torch.autograd.grad(loss, xx)
    return out.detach(), g


@pytest.mark.parametrize("name", list(PURIFIERS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_recompute_equals_full_autograd(name, dtype):
    unet, sched = tiny_eps_net(dtype=dtype), tiny_scheduler()
    model = PurifiedClassifier(tiny_classifier(dtype=dtype), PURIFIERS[name](unet, sched), copies=3, seed=7, deterministic=True)
    x = torch.rand(2, 1, 8, 8, dtype=dtype, generator=torch.Generator().manual_seed(3))
    out_full, g_full = _grads(model, x, "full")
    out_ex, g_ex = _grads(model, x, "exact_recompute")
    assert torch.equal(out_full, out_ex), "forward differs between rules"
    assert g_full.abs().sum() > 0
    rel = ((g_ex - g_full).norm() / g_full.norm()).item()
    assert rel <= (1e-8 if dtype == torch.float64 else 1e-4), rel
    if "gdmp" not in name:  # no guide accumulation: identical op sequence, so bitwise equal on CPU
        assert torch.equal(g_ex, g_full)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_recompute_equals_full_autograd_through_diffusers_unet(dtype):
    """The same check through a real diffusers UNet2DModel (DDPM, 10 steps, 3 copies)."""
    unet = tiny_unet(dtype=dtype)
    model = PurifiedClassifier(tiny_classifier(dtype=dtype), DDPMPurifier(unet, tiny_scheduler(), t_star=0.1), copies=3,
                               seed=7, deterministic=True)
    x = torch.rand(2, 1, 8, 8, dtype=dtype, generator=torch.Generator().manual_seed(3))
    _, g_full = _grads(model, x, "full")
    _, g_ex = _grads(model, x, "exact_recompute")
    assert g_full.abs().sum() > 0
    assert torch.equal(g_ex, g_full)


def test_gradient_depends_on_noise_and_replay_is_needed():
    """A different tape gives a different gradient, so replay in backward is load-bearing."""
    unet, sched = tiny_eps_net(), tiny_scheduler()
    pur = DDPMPurifier(unet, sched, t_star=0.1)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64) * 2 - 1
    grads = []
    for seed in (1, 2):
        u = x.clone().requires_grad_(True)
        out, _ = exact_purify(pur, u, None, NoiseTape(seed))
        (g,) = torch.autograd.grad(out.pow(2).sum(), u)
        grads.append(g)
    assert not torch.allclose(grads[0], grads[1])


def test_gdmp_gradcheck_second_order_and_guide_path():
    """fp64 gradcheck of the guided chain w.r.t. both the state and the guide (second-order step)."""
    unet, sched = tiny_eps_net(T=50), tiny_scheduler(T=50)
    pur = DDPMPurifier(unet, sched, t_star=0.1, guidance=GDMPGuidance("mse", scale=20.0))
    tape = NoiseTape(11)
    u = (torch.rand(1, 1, 4, 4, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    g = (torch.rand(1, 1, 4, 4, dtype=torch.float64) * 2 - 1).requires_grad_(True)

    def f(u, g):
        return exact_purify(pur, u, g, tape)[0]

    assert torch.autograd.gradcheck(f, (u, g), eps=1e-6, atol=1e-7, rtol=1e-5)
    # the guide path is non-zero: dropping it (a detached guide) would change the gradient
    out = f(u, g)
    gu, gg = torch.autograd.grad(out.sum(), (u, g))
    assert gg.abs().sum() > 0


def test_ssim_guidance_gradcheck():
    unet, sched = tiny_eps_net(T=50), tiny_scheduler(T=50)
    pur = DDPMPurifier(unet, sched, t_star=0.08, guidance=GDMPGuidance("ssim", scale=5.0, window=3))
    tape = NoiseTape(5)
    u = (torch.rand(1, 1, 4, 4, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda u: exact_purify(pur, u, u, tape)[0], (u,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_fresh_noise_per_call_and_deterministic_mode():
    unet, sched = tiny_eps_net(), tiny_scheduler()
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    m = PurifiedClassifier(tiny_classifier(), DDPMPurifier(unet, sched, t_star=0.1), copies=2, seed=0)
    assert not torch.equal(m.purify(x), m.purify(x))
    # copies of one input are different purifications
    p = m.purify(x)
    assert not torch.equal(p[0], p[1])
    d = PurifiedClassifier(tiny_classifier(), DDPMPurifier(unet, sched, t_star=0.1), copies=2, seed=0, deterministic=True)
    assert torch.equal(d.purify(x), d.purify(x))


def test_bpda_and_blind_rules():
    unet, sched = tiny_eps_net(), tiny_scheduler()
    clf = tiny_classifier()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    m = PurifiedClassifier(clf, DDPMPurifier(unet, sched, t_star=0.1), copies=1, seed=0, deterministic=True, backward="blind")
    xx = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(m(xx)[:, 0, 0].sum(), xx)
    xb = x.clone().requires_grad_(True)
    (gb,) = torch.autograd.grad(clf(xb)[:, 0].sum(), xb)
    torch.testing.assert_close(g, gb, rtol=1e-12, atol=0)
    # bpda: gradient of the classifier at the purified image, passed straight through
    m.backward = "bpda_identity"
    xx = x.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(m(xx)[:, 0, 0].sum(), xx)
    xp = m.purify(x).clone().requires_grad_(True)
    (gp,) = torch.autograd.grad(clf(xp)[:, 0].sum(), xp)
    torch.testing.assert_close(g2, gp, rtol=1e-12, atol=0)


def test_ddpm_step_matches_diffusers_scheduler_step():
    """The purifier's reverse step equals diffusers' DDPMScheduler.step with the same noise."""
    from diffusers import DDPMScheduler
    from gradkit_diffbreak.process import NoiseTape as Tape

    unet, sched = tiny_unet(dtype=torch.float32), DDPMScheduler(num_train_timesteps=100)
    pur = DDPMPurifier(unet, sched, t_star=0.3, steps=5)
    sched.set_timesteps(timesteps=pur.timesteps)
    tape = Tape(3)
    x = torch.randn(2, 1, 8, 8)
    for i, t in enumerate(pur.timesteps):
        k = i + 1
        ours = pur.step(k, x, None, tape)
        eps = unet(x, t).sample
        noise = tape.randn(x.shape, step=k, stream=1, device=x.device, dtype=x.dtype)  # the noise we used

        ref = _diffusers_step(sched, eps, t, x, noise)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
        x = ours


def _diffusers_step(sched, eps, t, x, noise):
    import diffusers.schedulers.scheduling_ddpm as mod

    orig = mod.randn_tensor
    mod.randn_tensor = lambda *a, **k: noise
    try:
        return sched.step(eps, t, x).prev_sample
    finally:
        mod.randn_tensor = orig
