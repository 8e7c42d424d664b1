"""Triton kernels vs the reference (run with TRITON_INTERPRET=1 on CPU, or on a GPU)."""

import pytest
import torch
from gradkit_snn_sd.reference import lif_rate_bwd_reference, lif_spike_pass_reference

pytestmark = pytest.mark.kernel

MODES = [(None, True), (None, False), (0.0, True), (-0.2, False)]


def _dev():
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("T", [1, 3, 6])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"vr{m[0]}-det{m[1]}")
def test_lif_rate_fwd_kernel_matches_reference(T, mode):
    from gradkit_snn_sd.kernels.lif_rate import lif_rate_fwd

    v_reset, detach = mode
    torch.manual_seed(T)
    x = (torch.rand(T, 431, device=_dev()) * 3 - 0.5)
    kw = dict(lam=0.2, theta=1.0, v_reset=v_reset, detach_reset=detach, alpha=4.0, input_scale=0.8)
    ref = lif_spike_pass_reference(x, **kw)
    v0 = torch.full((431,), 0.0 if v_reset is None else v_reset, device=x.device)
    k0 = torch.full((431,), 0.8, device=x.device)
    got = lif_rate_fwd(x, v0, k0, **kw)
    assert torch.equal(got[0], ref[0])  # spikes
    assert torch.equal(got[1], ref[1])  # spike counts
    for a, b in zip(got[2:], ref[2:]):  # elig, v, kappa
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_lif_rate_fwd_kernel_fp16_and_carried_state():
    from gradkit_snn_sd.kernels.lif_rate import lif_rate_fwd

    torch.manual_seed(0)
    x = (torch.rand(4, 3, 63, device=_dev()) * 3).half()
    kw = dict(lam=0.5, theta=1.0, v_reset=None, detach_reset=False, alpha=4.0, input_scale=1.0)
    v0 = torch.rand(3, 63, device=x.device)
    k0 = torch.rand(3, 63, device=x.device) + 1
    got = lif_rate_fwd(x, v0, k0, **kw)
    ref = lif_spike_pass_reference(x, v0, k0, **kw)
    assert got[0].dtype == torch.float16 and torch.equal(got[0], ref[0])
    for a, b in zip(got[1:], ref[1:]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_lif_rate_bwd_kernel_matches_reference(dtype):
    from gradkit_snn_sd.kernels.lif_rate import lif_rate_bwd

    torch.manual_seed(0)
    g = torch.randn(5, 431, device=_dev()).to(dtype)
    e = torch.rand(5, 431, device=g.device)
    got = lif_rate_bwd(g, e)
    assert got.dtype == dtype
    torch.testing.assert_close(got, lif_rate_bwd_reference(g, e), atol=1e-3 if dtype == torch.float16 else 1e-7, rtol=1e-3)


def test_ops_dispatch_to_kernel_and_network_gradients_match():
    """Through the ops (dispatching to Triton here): a small network's rate-BP gradients match the reference path."""
    import os

    import gradkit_snn_sd as sd
    import torch.nn.functional as F
    from gradkit.kernels import use_triton

    x0 = torch.rand(2, device=_dev())
    assert use_triton(x0)
    torch.manual_seed(0)
    net = sd.SpikingConvNet(widths=(8, 8), T=3).to(_dev())
    x = torch.rand(6, 1, 8, 8, device=_dev()) * 2
    y = torch.arange(6, device=_dev())

    def run():
        net.zero_grad(set_to_none=True)
        with sd.RateBackpropM(net, loss_scale=1.0):
            F.cross_entropy(net(x), y).backward()
        return {n: p.grad.clone() for n, p in net.named_parameters()}

    state = {k: v.clone() for k, v in net.state_dict().items()}
    g_kernel = run()
    net.load_state_dict(state)
    old = os.environ.get("GRADKIT_KERNELS")
    os.environ["GRADKIT_KERNELS"] = "reference"
    try:
        g_ref = run()
    finally:
        if old is None:
            del os.environ["GRADKIT_KERNELS"]
        else:
            os.environ["GRADKIT_KERNELS"] = old
    for k in g_ref:
        torch.testing.assert_close(g_kernel[k], g_ref[k], atol=1e-5, rtol=1e-4, msg=k)
