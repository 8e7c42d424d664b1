"""The LIF maths: eligibility = BPTT summed gradient for time-constant input (float64, 1e-10)."""

import itertools

import pytest
import torch
from gradkit_snn_sd.reference import lif_bptt_reference, lif_spike_pass_reference

# (v_reset, detach_reset): soft/hard x detached/not, plus a hard reset to a negative potential
MODES = [(None, True), (None, False), (0.0, True), (0.0, False), (-0.3, False)]


@pytest.mark.parametrize("T", [1, 2, 5, 16])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"vr{m[0]}-det{m[1]}")
def test_eligibility_matches_bptt_constant_input(T, mode):
    v_reset, detach = mode
    g = torch.Generator().manual_seed(T)
    for theta, lam, c in itertools.product([0.7, 1.0, 1.3], [0.2, 0.9], [1.0, 0.5]):
        i_bar = (torch.rand(257, generator=g, dtype=torch.float64) * 3 - 0.5).requires_grad_()
        kw = dict(lam=lam, theta=theta, v_reset=v_reset, detach_reset=detach, alpha=4.0, input_scale=c)
        s = lif_bptt_reference(i_bar.unsqueeze(0).expand(T, -1), **kw)
        rate_bptt = s.mean(0)
        (grad_bptt,) = torch.autograd.grad(rate_bptt.sum(), i_bar)
        spikes, r, e, _, _ = lif_spike_pass_reference(i_bar.detach().unsqueeze(0).expand(T, -1).contiguous(), **kw)
        assert torch.equal(spikes, s.detach())
        assert torch.equal(r / T, rate_bptt.detach())
        torch.testing.assert_close(e / T, grad_bptt, atol=1e-10, rtol=0)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"vr{m[0]}-det{m[1]}")
def test_eligibility_is_summed_bptt_gradient_for_any_input(mode):
    """kappa follows the actual trajectory, so for ANY input sequence e equals sum_k d(mean rate)/dI_k
    (the gradient for a time-uniform input perturbation). What rate-BP approximates is the upstream
    gradient (taken constant over t) and the pairing of per-step gradients with per-step inputs."""
    v_reset, detach = mode
    torch.manual_seed(0)
    x = (torch.rand(8, 300, dtype=torch.float64) * 3 - 0.5).requires_grad_()
    kw = dict(lam=0.5, theta=1.0, v_reset=v_reset, detach_reset=detach, alpha=4.0, input_scale=1.0)
    s = lif_bptt_reference(x, **kw)
    (g,) = torch.autograd.grad(s.mean(0).sum(), x, retain_graph=True)
    _, _, e, _, _ = lif_spike_pass_reference(x.detach(), **kw)
    torch.testing.assert_close(e / 8, g.sum(0), atol=1e-10, rtol=0)
    # ... but a time-varying upstream gradient is not reproduced by e:
    w = torch.linspace(0.0, 2.0, 8, dtype=torch.float64).view(8, 1)
    (gw,) = torch.autograd.grad((s * w).mean(0).sum(), x)
    assert (gw.sum(0) - e / 8 * w.mean()).abs().max() > 1e-3


@pytest.mark.parametrize("mode", MODES[:4])
def test_spike_pass_chunks_carry_state(mode):
    v_reset, detach = mode
    torch.manual_seed(1)
    x = torch.rand(7, 5, 33, dtype=torch.float64) * 2
    kw = dict(lam=0.3, theta=1.0, v_reset=v_reset, detach_reset=detach, alpha=4.0, input_scale=1.0)
    s_all, r_all, e_all, v_all, k_all = lif_spike_pass_reference(x, **kw)
    v = k = None
    r = e = 0
    outs = []
    for t in range(7):
        s, rr, ee, v, k = lif_spike_pass_reference(x[t : t + 1], v, k, **kw)
        r, e = r + rr, e + ee
        outs.append(s)
    assert torch.equal(torch.cat(outs), s_all)
    torch.testing.assert_close(r, r_all, atol=0, rtol=0)
    torch.testing.assert_close(e, e_all, atol=1e-14, rtol=0)
    torch.testing.assert_close(v, v_all, atol=0, rtol=0)
    torch.testing.assert_close(k, k_all, atol=1e-14, rtol=0)


def test_spike_pass_spikes_equal_bptt_for_varying_input():
    torch.manual_seed(2)
    x = torch.randn(6, 4, 50, dtype=torch.float64) + 0.8
    for v_reset, detach in MODES:
        kw = dict(lam=0.2, theta=1.0, v_reset=v_reset, detach_reset=detach, alpha=4.0, input_scale=1.0)
        assert torch.equal(lif_spike_pass_reference(x, **kw)[0], lif_bptt_reference(x, **kw))
