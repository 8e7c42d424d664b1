"""spikingjelly 2.0 (optional, installed --no-deps): oracle for our BPTT LIF, and rate-BP on its networks."""

import copy

import gradkit_snn_sd as sd
import pytest
import torch
import torch.nn.functional as F
from gradkit.errors import ConfigError
from gradkit_snn_sd.reference import lif_bptt_reference
from snnsd_helpers import cosine, digits_batch
from torch import nn

sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, layer, neuron, surrogate  # noqa: E402


@pytest.mark.parametrize("v_reset", [None, 0.0, -0.2])
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("decay_input", [False, True])
def test_spikingjelly_lif_oracle(v_reset, detach, decay_input):
    torch.manual_seed(0)
    node = neuron.LIFNode(tau=1.25, decay_input=decay_input, v_reset=v_reset, detach_reset=detach,
                          surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m")
    x = (torch.rand(6, 4, 37) * 3 - 0.5).requires_grad_()
    s_sj = node(x)
    (g_sj,) = torch.autograd.grad((s_sj * torch.linspace(0, 1, 37)).sum(), x)
    x2 = x.detach().clone().requires_grad_()
    s = lif_bptt_reference(x2, lam=0.2, theta=1.0, v_reset=v_reset, detach_reset=detach, alpha=4.0,
                           input_scale=0.8 if decay_input else 1.0)
    (g,) = torch.autograd.grad((s * torch.linspace(0, 1, 37)).sum(), x2)
    assert torch.equal(s.detach(), s_sj.detach())
    torch.testing.assert_close(g, g_sj, atol=1e-6, rtol=0)


def _sj_net(T_bn=True, v_reset=None, node="lif"):
    def sn():
        if node == "if":
            return neuron.IFNode(v_reset=v_reset, detach_reset=True, surrogate_function=surrogate.Sigmoid(), step_mode="m")
        return neuron.LIFNode(tau=1.25, decay_input=False, v_reset=v_reset, detach_reset=True,
                              surrogate_function=surrogate.Sigmoid(), step_mode="m")

    net = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(8, step_mode="m"), sn(),
        layer.Conv2d(8, 16, 3, stride=2, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(16, step_mode="m"), sn(),
        layer.SeqToANNContainer(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)),
    )
    return net


def _run(net, xs, y, transform=None):
    functional.reset_net(net)
    net.zero_grad(set_to_none=True)
    h = transform.attach(net) if transform is not None else None
    try:
        out = net(xs).mean(0)
        F.cross_entropy(out, y).backward()
    finally:
        if h is not None:
            h.remove()
    functional.reset_net(net)
    g = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    return out.detach(), g


@pytest.mark.parametrize("node", ["lif", "if"])
@pytest.mark.parametrize("cls", [sd.RateBackpropM, sd.RateBackpropS])
def test_rate_bp_on_spikingjelly_net_T1_equals_bptt(cls, node):
    torch.manual_seed(0)
    net = _sj_net(node=node).double()
    x, y = digits_batch(16, torch.float64)
    xs = x.unsqueeze(0)
    out_b, g_b = _run(copy.deepcopy(net), xs, y)
    out_r, g_r = _run(net, xs, y, cls(loss_scale=1.0))
    torch.testing.assert_close(out_r, out_b, atol=1e-12, rtol=0)
    for k in g_b:
        torch.testing.assert_close(g_r[k], g_b[k], atol=1e-10, rtol=1e-9, msg=k)


def test_rate_bp_on_spikingjelly_net_aligns_and_restores():
    torch.manual_seed(0)
    net = _sj_net().float()
    x, y = digits_batch(32)
    xs = x.unsqueeze(0).repeat(4, 1, 1, 1, 1)
    before = _run(copy.deepcopy(net), xs, y)
    ref = copy.deepcopy(net)
    out_r, g_r = _run(net, xs, y, sd.RateBackpropM(loss_scale=1.0))
    torch.testing.assert_close(out_r, before[0], atol=1e-5, rtol=0)  # rate logits = mean_t logits
    assert min(cosine(g_r[k], before[1][k]) for k in g_r) > 0.9
    # after remove(): spikingjelly nodes/BN are the original objects with their own forward again
    assert all("forward" not in m.__dict__ for m in net.modules())
    net.load_state_dict(ref.state_dict())  # undo the BN running-stat update of the rate-BP step
    after = _run(net, xs, y)
    assert torch.equal(after[0], before[0])
    for k in before[1]:
        assert torch.equal(after[1][k], before[1][k]), k


def test_spikingjelly_single_step_and_unsupported_surrogate_are_errors():
    net = nn.Sequential(nn.Linear(3, 3), neuron.LIFNode(step_mode="s"))
    with pytest.raises(ConfigError, match="step_mode"):
        sd.RateBackpropM().attach(net)
    net = nn.Sequential(nn.Linear(3, 3), neuron.LIFNode(step_mode="m", surrogate_function=surrogate.ATan()))
    with pytest.raises(ConfigError, match="sigmoid"):
        sd.RateBackpropM().attach(net)
    net = nn.Sequential(nn.Linear(3, 3), neuron.ParametricLIFNode(step_mode="m"))
    with pytest.raises(ConfigError, match="does not support"):
        sd.RateBackpropM().attach(net)


def test_sd_on_spikingjelly_net_with_rate_bp():
    torch.manual_seed(0)
    net = _sj_net().float()
    x, y = digits_batch(16)
    xs = x.unsqueeze(0).repeat(3, 1, 1, 1, 1)
    esd = sd.SelfDistillation(stages=("2", "5"), example_input=torch.zeros(3, 2, 1, 8, 8))
    with sd.RateBackpropM(net), pytest.warns(UserWarning, match="Sequential"), esd.attach(net):
        assert not hasattr(net, "sd_branches")  # a Sequential would run a new child as a layer
        functional.reset_net(net)
        out = net(xs).mean(0)
        assert [tuple(e.shape) for e in esd.exits] == [(16, 10), (16, 10)]
        (F.cross_entropy(out, y) + esd.loss(out, y)).backward()
        assert all(p.grad is not None for p in esd.branches.parameters())
    assert esd.branches is None
