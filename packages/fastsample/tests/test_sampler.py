"""The sampler: cost model, no UNet backprop, DDIM transition, batching, fused == generic, errors."""

import gradkit
import pytest
import torch
from gradkit.errors import ConfigError, GradkitError
from gradkit_fastsample import (
    ConstrainedSampler,
    Deblur,
    DPSSampler,
    FastSample,
    FastSampleConfig,
    FeatureLoss,
    Inpaint,
    SuperResolution,
    gaussian_kernel,
)
from gradkit_fastsample.analytic import GaussianDenoiser
from gradkit_fastsample.sampler import correct, schedule_pairs, transition_coefficients


def _half_mask(b=1, size=8):
    m = torch.zeros(b, 1, size, size)
    m[..., : size // 2] = 1
    return m


def _count_backward(unet):
    calls = []
    h = unet.conv_out.register_full_backward_hook(lambda *a: calls.append(1))
    return calls, h


def test_fd_cost_is_n_times_1_plus_2k_and_no_unet_backward(unet, sched):
    img = torch.rand(2, 1, 8, 8) * 2 - 1
    calls, h = _count_backward(unet)
    grad_modes = []
    pre = unet.register_forward_pre_hook(lambda m, a: grad_modes.append(torch.is_grad_enabled()))
    out = ConstrainedSampler(unet, sched, Inpaint(img, _half_mask()), num_inference_steps=4, inner_steps=3).sample(
        (2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    h.remove()
    pre.remove()
    assert out.trace.nfe_forward == 4 * (1 + 2 * 3)
    assert out.trace.nfe_backward == 0 and calls == []
    assert len(grad_modes) == 28 and not any(grad_modes)
    assert len(out.trace.residuals) == 4 and all(len(r) == 4 for r in out.trace.residuals)


def test_dps_estimator_backprops_once_per_inner_step(unet, sched):
    img = torch.rand(1, 1, 8, 8)
    unet.requires_grad_(False)
    calls = []
    h = unet.conv_out.register_full_backward_hook(lambda *a: calls.append(1))
    out = ConstrainedSampler(unet, sched, Inpaint(img, _half_mask()), estimator="dps", num_inference_steps=3,
                             inner_steps=2).sample((1, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    h.remove()
    assert out.trace.nfe_backward == 3 * 2 == len(calls)
    assert out.trace.nfe_forward == 3 * (1 + 2 * 2)


def test_transition_equals_ddim_scheduler_step_with_eta():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=False)
    pairs = schedule_pairs(sched, 20)
    assert [p[0] for p in pairs][:3] == [999, 949, 899] and pairs[-1][0] == 49
    g = torch.Generator().manual_seed(0)
    for i in (0, 7, 19):
        t, ab_t, ab_prev = pairs[i]
        assert ab_t == pytest.approx(float(sched.alphas_cumprod[t]))
        x = torch.randn(2, 4, 5, 5, generator=g)
        eps = torch.randn(2, 4, 5, 5, generator=g)
        z = torch.randn(2, 4, 5, 5, generator=g)
        want = sched.step(eps, t, x, eta=0.15, variance_noise=z).prev_sample
        from gradkit_fastsample.ops import ddim_transition

        x0 = (x - (1 - ab_t) ** 0.5 * eps) / ab_t**0.5
        a, b, s = transition_coefficients(ab_t, ab_prev, 0.15)
        torch.testing.assert_close(ddim_transition(x0, eps, z, a, b, s), want, rtol=1e-5, atol=1e-5)


def test_batch_empty_mask_sample_equals_unconstrained(unet, sched):
    img = torch.rand(3, 1, 8, 8) * 2 - 1
    mask = _half_mask(3)
    mask[1] = 0
    kw = dict(num_inference_steps=4, inner_steps=2)
    out = ConstrainedSampler(unet, sched, Inpaint(img, mask), **kw).sample((3, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    free = ConstrainedSampler(unet, sched, None, **kw).sample((3, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(out.x0).all()
    torch.testing.assert_close(out.x0[1], free.x0[1], rtol=1e-4, atol=1e-4)
    assert (out.x0[0] - free.x0[0]).abs().max() > 1e-2
    assert out.trace.final_error[1] == 0


@pytest.mark.parametrize("t", [699, 299])
def test_fused_path_matches_generic_path(unet, sched, t):
    from gradkit_fastsample.denoiser import UNetDenoiser

    img = torch.rand(2, 1, 8, 8) * 2 - 1
    mask = _half_mask(2)
    mask[1, ..., :2] = 0
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    den = UNetDenoiser(unet, sched)
    ra, rb = [], []
    # one correction: equal up to float32 rounding
    xa, _, x0a = correct(den, x, t, Inpaint(img, mask), FastSampleConfig(inner_steps=1, fused=True), ra)
    xb, _, x0b = correct(den, x, t, Inpaint(img, mask), FastSampleConfig(inner_steps=1, fused=False), rb)
    torch.testing.assert_close(xa, xb, rtol=1e-5, atol=1e-5)
    # three: the finite-difference round-off of the random net (|x0| ~ 40) compounds; still < 1e-3 of a unit step
    xa, _, _ = correct(den, x, t, Inpaint(img, mask), FastSampleConfig(inner_steps=3, fused=True), ra)
    xb, _, _ = correct(den, x, t, Inpaint(img, mask), FastSampleConfig(inner_steps=3, fused=False), rb)
    assert (xa - xb).abs().max() < 1e-3
    assert (xa - x).abs().max() > 0.1


def _gaussian_problem(seed=0):
    d = 16
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T / d + 0.2 * torch.eye(d, dtype=torch.float64)
    den = GaussianDenoiser(torch.zeros(d, dtype=torch.float64), cov)
    img = torch.randn(1, 1, 4, 4, generator=g)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    x = torch.randn(1, 1, 4, 4, generator=g, dtype=torch.float64)
    return den, Inpaint(img, mask), x


def test_inner_loop_contracts_iff_step_below_two_over_mu_squared():
    """Exact Gaussian prior (symmetric J), inpainting: r_{k+1} = (I - lr M J^2 M) r_k in closed form.

    With nu_max the top eigenvalue of M J^2 M: lr = 1 / nu_max makes the masked residual fall
    monotonically; lr = 3 / nu_max (|1 - lr nu_max| > 1) makes it grow.
    """
    den, c, x = _gaussian_problem()
    t = 500
    jac = den.jacobian(t)
    m = c.mask.flatten().double()
    nu_max = torch.linalg.eigvalsh(m[:, None] * (jac @ jac) * m[None, :]).max().item()
    assert nu_max <= torch.linalg.eigvalsh(jac).abs().max().item() ** 2 + 1e-12
    res = []
    lr = 1.0 / nu_max
    correct(den, x, t, c, FastSampleConfig(inner_steps=40, lr_start=lr, lr_end=lr, step_transform="none"), res)
    assert all(b <= a * (1 + 1e-9) for a, b in zip(res, res[1:])), res
    assert res[-1] < 0.1 * res[0]
    res_big = []
    lr = 3.0 / nu_max
    correct(den, x, t, c, FastSampleConfig(inner_steps=40, lr_start=lr, lr_end=lr, step_transform="none"), res_big)
    assert res_big[-1] > 10 * res_big[0]


def test_inner_loop_inf_norm_reduces_residual_gaussian():
    den, c, x = _gaussian_problem(1)
    res = []
    correct(den, x, 500, c, FastSampleConfig(inner_steps=5), res)  # the paper's defaults
    assert all(b < a for a, b in zip(res, res[1:])), res


def test_feature_loss_decreases_and_no_grad_reaches_unet(unet, sched):
    torch.manual_seed(0)
    feat = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, 4, 3, padding=1))
    ref = torch.rand(1, 1, 8, 8) * 2 - 1

    def gram(x):
        f = feat(x).flatten(2)
        return f @ f.transpose(1, 2) / f.shape[-1]

    target = gram(ref).detach()
    c = FeatureLoss(lambda x: (gram(x) - target).pow(2).flatten(1).sum(1))
    unet.requires_grad_(True)
    x = torch.randn(2, 1, 8, 8)
    from gradkit_fastsample.denoiser import UNetDenoiser

    den = UNetDenoiser(unet, sched)
    sched.set_timesteps(20)
    res = []
    correct(den, x, 499, c, FastSampleConfig(inner_steps=5, lr_start=0.2, lr_end=0.05), res)
    assert res[-1] < res[0]
    assert all(p.grad is None for p in unet.parameters())
    assert den.nfe_backward == 0


def test_gradkit_sample_runs_the_constrained_sampler(unet, sched):
    img = torch.rand(2, 1, 8, 8) * 2 - 1
    x_t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    t = FastSample(constraint=Inpaint(img, _half_mask()), inner_steps=2, eta=0.0)
    got = gradkit.sample(unet, sched, sample=x_t.clone(), num_inference_steps=3, transforms=[t], progress=False)
    ref = ConstrainedSampler(unet, sched, Inpaint(img, _half_mask()), num_inference_steps=3, inner_steps=2, eta=0.0).sample(latents=x_t.clone())
    torch.testing.assert_close(got, ref.sample)
    assert t.last_output is not None and t.last_output.trace.nfe_forward == 3 * 5
    torch.testing.assert_close(t.last_output.x0, ref.x0)
    # not active -> the default step runs (different result)
    plain = gradkit.sample(unet, sched, sample=x_t.clone(), num_inference_steps=3, progress=False)
    assert (plain - got).abs().max() > 1e-3


def test_gradkit_sample_by_name_with_constraint_set_later(unet, sched):
    t = gradkit.transforms.create("fastsample", inner_steps=1)
    assert isinstance(t, FastSample)
    t.constraint = Inpaint(torch.zeros(1, 1, 8, 8), _half_mask())
    out = gradkit.sample(unet, sched, shape=(1, 1, 8, 8), num_inference_steps=2, transforms=[t], progress=False,
                         generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 1, 8, 8) and t.last_output.trace.nfe_forward == 2 * 3


def test_super_resolution_and_deblur_constraints_reduce_error(unet, sched):
    from gradkit_fastsample.denoiser import UNetDenoiser

    img = torch.rand(1, 1, 8, 8) * 2 - 1
    den = UNetDenoiser(unet, sched)
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for c in (SuperResolution.from_image(img, 2), Deblur.from_image(img, gaussian_kernel(3, 1.0))):
        res = []
        correct(den, x, 299, c, FastSampleConfig(inner_steps=6, lr_start=0.3, lr_end=0.05), res)
        assert res[-1] < 0.5 * res[0], (type(c).__name__, res)
    # the SR direction is A^T (y - A x0): compare with the explicit adjoint of average pooling
    sr = SuperResolution.from_image(img, 2)
    x0 = torch.randn(1, 1, 8, 8)
    r = sr.y - torch.nn.functional.avg_pool2d(x0, 2)
    want = torch.nn.functional.interpolate(r, scale_factor=2, mode="nearest") / 4
    torch.testing.assert_close(sr.direction(x0), want)


def test_dps_sampler_runs_with_backward_per_step(unet, sched):
    img = torch.rand(1, 1, 8, 8) * 2 - 1
    out = DPSSampler(unet, sched, Inpaint(img, _half_mask()), num_inference_steps=5, scale=0.5).sample(
        (1, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert out.trace.nfe_forward == 5 and out.trace.nfe_backward == 5 and torch.isfinite(out.x0).all()


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Inpaint(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 7)),
        lambda: Inpaint(torch.zeros(1, 1, 8, 8), torch.full((1, 1, 8, 8), 0.5)),
        lambda: SuperResolution.from_image(torch.zeros(1, 1, 8, 8), 3),
        lambda: SuperResolution(torch.zeros(1, 1, 4, 4), 0),
        lambda: Deblur(torch.zeros(1, 1, 8, 8), torch.ones(4, 4)),
        lambda: FastSampleConfig(num_inference_steps=0),
        lambda: FastSampleConfig(inner_steps=-1),
        lambda: FastSampleConfig(estimator="newton"),
        lambda: FastSampleConfig(probe=0.0),
        lambda: FastSampleConfig(eta=1.5),
        lambda: gaussian_kernel(4),
    ],
)
def test_bad_input_raises_config_error(bad):
    with pytest.raises(ConfigError):
        bad()


def test_shape_mismatch_at_sample_time_names_the_parameter(unet, sched):
    s = ConstrainedSampler(unet, sched, Inpaint(torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16)), num_inference_steps=2)
    with pytest.raises(ConfigError, match="mask|image"):
        s.sample((1, 1, 8, 8))
    s = ConstrainedSampler(unet, sched, SuperResolution(torch.zeros(1, 1, 2, 2), 3), num_inference_steps=2)
    with pytest.raises(ConfigError, match="factor"):
        s.sample((1, 1, 8, 8))
    with pytest.raises(GradkitError):
        ConstrainedSampler(unet, sched, num_inference_steps=-2)
