"""Rate-BP on whole networks: values, T = 1 exactness, alignment with BPTT, BN statistics, memory."""


import gradkit_snn_sd as sd
import pytest
import torch
import torch.nn.functional as F
from gradkit.errors import ConfigError, TransformError
from gradkit.metrics import SavedTensorMeter
from snnsd_helpers import MaxPoolNet, clone, cosine, digits_batch, grads
from torch import nn

NETS = {
    "convnet": lambda T: sd.SpikingConvNet(widths=(8, 16, 16, 32), T=T),
    "resnet": lambda T: sd.tiny_resnet(T=T),
    "vgg": lambda T: sd.SpikingVGG([[8], [16, 16], [16]], in_channels=1, input_size=8, T=T),
}


def _neuron_inputs(net, x, transform):
    """Inputs each neuron sees in the spike pass ([T, B, ...]) and in the rate pass ([1, B, ...])."""
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: seen.setdefault(n, []).append(a[0].detach().clone()))
             for n, m in sd.find_neurons(net)]
    with transform.attach(net):
        net(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("arch", sorted(NETS))
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_rate_pass_values_equal_time_average(arch, dtype, atol):
    torch.manual_seed(0)
    net = NETS[arch](4).to(dtype)
    x, _ = digits_batch(16, dtype)
    seen = []
    h = net.fc.register_forward_hook(lambda m, a, o: seen.append(o.detach().clone()))
    with sd.RateBackpropM(net, loss_scale=1.0):
        out = net(x)
    h.remove()
    spike_logits, rate_logits = seen[0], seen[1]  # [T, B, C] and [1, B, C]
    assert spike_logits.shape[0] == 4 and rate_logits.shape[0] == 1
    torch.testing.assert_close(rate_logits[0], spike_logits.mean(0), atol=atol, rtol=0)
    torch.testing.assert_close(out.detach(), spike_logits.mean(0), atol=atol, rtol=0)
    # every neuron's rate-pass input is the time average of its spike-pass input (BN included)
    for name, (spk, rate) in _neuron_inputs(net, x, sd.RateBackpropM()).items():
        torch.testing.assert_close(rate[0], spk.mean(0), atol=atol * 10, rtol=0, msg=name)


def test_rate_pass_inputs_wrong_with_maxpool_between_neurons():
    torch.manual_seed(0)
    net = MaxPoolNet(T=4).double()
    x, _ = digits_batch(16, torch.float64)
    with pytest.warns(UserWarning, match="max pooling"):
        seen = _neuron_inputs(net, x, sd.RateBackpropM())
    spk, rate = seen["body.4"]
    assert (rate[0] - spk.mean(0)).abs().max() > 1e-3


@pytest.mark.parametrize("cls", [sd.RateBackpropM, sd.RateBackpropS])
@pytest.mark.parametrize("arch", sorted(NETS))
def test_T1_equals_bptt(cls, arch):
    torch.manual_seed(0)
    net = NETS[arch](1).double()
    x, y = digits_batch(16, torch.float64)
    ref_net = clone(net)
    out_b, g_b = grads(ref_net, x, y)
    out_r, g_r = grads(net, x, y, cls(loss_scale=1.0))
    torch.testing.assert_close(out_r, out_b, atol=1e-12, rtol=0)
    assert g_b.keys() == g_r.keys()
    for k in g_b:
        torch.testing.assert_close(g_r[k], g_b[k], atol=1e-10, rtol=1e-9, msg=k)
    for (k, a), b in zip(net.state_dict().items(), ref_net.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=k)  # running stats too


def test_first_layer_weight_gradient_exact_under_direct_encoding():
    """Direct encoding makes the first LIF's input constant in time: its input gradient is exact, so
    rate-BP = BPTT for everything *before* it whenever the gradient arriving at its rate is the same.
    With a single LIF layer followed by a time-linear readout that holds for every parameter."""
    torch.manual_seed(0)
    net = sd.SpikingConvNet(widths=(8,), T=6).double()
    x, y = digits_batch(16, torch.float64)
    _, g_b = grads(clone(net), x, y)
    _, g_r = grads(net, x, y, sd.RateBackpropM(loss_scale=1.0))
    for k in g_b:
        torch.testing.assert_close(g_r[k], g_b[k], atol=1e-10, rtol=1e-9, msg=k)


@pytest.mark.parametrize("T", [2, 4, 8])
def test_grad_alignment_with_bptt(T):
    torch.manual_seed(0)
    net = sd.SpikingConvNet(widths=(16, 32, 32), T=T)
    x, y = digits_batch(64)
    _, g_b = grads(clone(net), x, y)
    _, g_r = grads(net, x, y, sd.RateBackpropM(loss_scale=1.0))
    cos = {k: cosine(g_r[k], g_b[k]) for k in g_b}
    assert min(cos.values()) >= 0.9, cos
    ratio = {k: float(g_r[k].norm() / g_b[k].norm()) for k in g_b}
    assert all(0.5 < r < 2.0 for r in ratio.values()), ratio  # no systematic factor of T


def test_loss_scale_1_over_T_scales_every_gradient():
    torch.manual_seed(0)
    net = sd.SpikingConvNet(widths=(8, 16), T=4).double()
    x, y = digits_batch(8, torch.float64)
    _, g1 = grads(clone(net), x, y, sd.RateBackpropM(loss_scale=1.0))
    _, gT = grads(net, x, y, sd.RateBackpropM())  # default "1/T"
    for k in g1:
        torch.testing.assert_close(gT[k], g1[k] / 4, atol=1e-13, rtol=1e-12)


def test_bn_running_stats_from_spike_pass_only():
    torch.manual_seed(0)
    net = sd.SpikingConvNet(widths=(8, 16), T=4).double()
    plain = clone(net)
    x, y = digits_batch(16, torch.float64)
    plain(x)  # BPTT training forward: BN sees the folded T*B batch once
    with sd.RateBackpropM(net):
        net(x)
    for (k, a), b in zip(net.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=k)
    nbt = [m.num_batches_tracked.item() for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert nbt == [1, 1]


def test_rate_s_bn_running_stats_updated_once():
    torch.manual_seed(0)
    net = sd.SpikingConvNet(widths=(8,), T=3).double()
    x, _ = digits_batch(16, torch.float64)
    bn = net.stage1[0].body[1]
    with torch.no_grad():
        z = net.stage1[0].body[0](x)  # conv output, same at every step (direct encoding)
    with sd.RateBackpropS(net):
        net(x)
    assert bn.num_batches_tracked.item() == 1
    expect_mean = 0.9 * 0 + 0.1 * z.mean((0, 2, 3))
    torch.testing.assert_close(bn.running_mean, expect_mean, atol=1e-12, rtol=0)
    expect_var = 0.9 * 1 + 0.1 * z.var((0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_var, expect_var, atol=1e-12, rtol=0)


def test_rate_s_equals_rate_m_without_batchnorm():
    """Without BN the two spike passes compute the same rates and eligibilities."""
    torch.manual_seed(0)

    class NoBN(sd.SpikingClassifier):
        def __init__(self):
            super().__init__()
            self.T, self.input_shape = 5, (1, 8, 8)
            self.body = nn.Sequential(sd.TimeFold(nn.Conv2d(1, 8, 3, 1, 1)), sd.RateLIF(),
                                      sd.TimeFold(nn.Conv2d(8, 16, 3, 2, 1)), sd.RateLIF(v_reset=0.0, detach_reset=False))
            self.fc = nn.Linear(16, 10)

        def features(self, xs):
            return self.body(xs)

    net = NoBN().double()
    x, y = digits_batch(8, torch.float64)
    out_m, g_m = grads(clone(net), x, y, sd.RateBackpropM())
    out_s, g_s = grads(net, x, y, sd.RateBackpropS())
    torch.testing.assert_close(out_s, out_m, atol=1e-12, rtol=0)
    for k in g_m:
        torch.testing.assert_close(g_s[k], g_m[k], atol=1e-12, rtol=1e-10)


def test_eval_and_no_grad_run_plain_snn():
    torch.manual_seed(0)
    net = sd.SpikingConvNet(widths=(8, 16), T=4)
    x, _ = digits_batch(8)
    net.eval()
    ref = net(x)
    with sd.RateBackpropM(net):
        assert torch.equal(net(x), ref)
        net.train()
        with torch.no_grad():
            a = net(x)
    net.train()
    b = net(x)
    torch.testing.assert_close(a, b)


def test_exception_in_forward_leaves_grad_mode_and_phase_clean():
    net = sd.SpikingConvNet(widths=(8,), T=2)
    t = sd.RateBackpropM()
    with t.attach(net):
        with pytest.raises(Exception):
            net(torch.zeros(2, 3, 8, 8))  # wrong channel count
        assert torch.is_grad_enabled()
        assert t.phase is None


def _saved_bytes(net, x, y, transform=None):
    ctx = transform.attach(net) if transform is not None else None
    try:
        with SavedTensorMeter(exclude=net) as meter:
            F.cross_entropy(net(x), y).backward()
    finally:
        if ctx is not None:
            ctx.remove()
    return meter.peak_bytes


def test_saved_bytes_constant_in_T():
    torch.manual_seed(0)
    x, y = digits_batch(32)
    rate, bptt = {}, {}
    for T in (1, 2, 4, 8):
        net = sd.SpikingConvNet(widths=(8, 16, 16), T=T)
        rate[T] = _saved_bytes(net, x, y, sd.RateBackpropM())
        bptt[T] = _saved_bytes(net, x, y)
    assert len(set(rate.values())) == 1, rate
    b = bptt[2] - bptt[1]
    assert b > 0
    for T in (4, 8):
        assert bptt[T] == bptt[1] + b * (T - 1), bptt


def test_attach_twice_and_bad_T():
    net = sd.SpikingConvNet(widths=(8,), T=2)
    h = sd.RateBackpropM().attach(net)
    with pytest.raises(TransformError):
        sd.RateBackpropS().attach(net)
    h.remove()
    with sd.RateBackpropM(net, T=3):
        with pytest.raises(ConfigError, match="T = 3"):
            net(torch.rand(2, 1, 8, 8))
    with pytest.raises(ConfigError, match="T"):
        sd.RateBPConfig(T=0)
    with pytest.raises(ConfigError, match="T"):
        sd.SpikingConvNet(T=0)
    with pytest.raises(ConfigError, match="loss_scale"):
        sd.RateBPConfig(loss_scale=-1.0)


def test_model_without_neurons_is_an_error():
    with pytest.raises(ConfigError, match="no spiking neurons"):
        sd.RateBackpropM().attach(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))


def test_maxpool_before_first_neuron_does_not_warn():
    import warnings

    net = nn.Sequential(sd.TimeFold(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2)), sd.RateLIF())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sd.RateBackpropM().attach(net).remove()


@pytest.mark.parametrize("build", [sd.spiking_resnet19, sd.spiking_vgg11, sd.spiking_resnet18])
def test_cifar_backbones_train_step_under_rate_bp(build):
    """Smoke: the CIFAR-sized backbones run a rate-BP step (tiny inputs to stay cheap) and their
    rate-pass logits equal the mean spike-pass logits."""
    torch.manual_seed(0)
    size = 16 if build is sd.spiking_vgg11 else 8  # VGG-11 pools four times
    net = build(num_classes=10, T=2, input_size=size)
    x, y = torch.rand(2, 3, size, size) * 2, torch.tensor([1, 3])
    seen = []
    h = net.fc.register_forward_hook(lambda m, a, o: seen.append(o.detach()))
    with sd.RateBackpropM(net):
        F.cross_entropy(net(x), y).backward()
    h.remove()
    torch.testing.assert_close(seen[1][0], seen[0].mean(0), atol=1e-5, rtol=0)
    assert all(p.grad is not None for p in net.parameters())


def test_autocast_bf16_cpu_step_runs_with_fp32_state():
    torch.manual_seed(0)
    net = sd.SpikingConvNet(widths=(8, 16), T=3)
    x, y = digits_batch(8)
    with sd.RateBackpropM(net), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
        loss = F.cross_entropy(out.float(), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
