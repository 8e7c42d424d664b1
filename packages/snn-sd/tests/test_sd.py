"""Self-distillation: branches, teacher/KD terms, training-only execution, export, loop integration."""

import copy

import gradkit_snn_sd as sd
import pytest
import torch
import torch.nn.functional as F
from gradkit.errors import ConfigError
from snnsd_helpers import digits_batch


def _net(T=2):
    torch.manual_seed(0)
    return sd.SpikingConvNet(widths=(8, 16, 16, 32), T=T)


def test_branches_shapes_and_parameters():
    net = sd.spiking_resnet18(num_classes=100, T=1)
    with sd.SelfDistillation(net, stages=("layer1", "layer2", "layer3")):
        br = net.sd_branches
        assert [len(br[k].blocks) for k in ("layer1", "layer2", "layer3")] == [3, 2, 1]
        n = sum(p.numel() for p in br.parameters())
        backbone = sum(p.numel() for n_, p in net.named_parameters() if not n_.startswith("sd_branches"))
    assert 1.2e6 < n < 1.5e6, n  # spec: ~1.35 M for 100 classes
    assert 11.0e6 < backbone < 11.4e6, backbone
    assert not hasattr(net, "sd_branches")


@pytest.mark.parametrize("rb", [sd.RateBackpropM, sd.RateBackpropS])
def test_branches_run_only_in_training_rate_pass_and_eval_unchanged(rb):
    net = _net()
    x, y = digits_batch(8)
    net.eval()
    ref = net(x)
    calls = []
    with rb(net), sd.SelfDistillation(net, stages=("stage1", "stage2")) as esd:
        for b in net.sd_branches.values():
            b.register_forward_hook(lambda m, a, o: calls.append(a[0].shape))
        out = net(x)
        assert torch.equal(out, ref) and isinstance(out, torch.Tensor)
        assert calls == [] and esd.exits == []
        net.train()
        out = net(x)
        assert [tuple(c) for c in calls] == [(8, 8, 8, 8), (8, 16, 4, 4)]  # rate pass only, [B, C, H, W]
        assert len(esd.exits) == 2 and all(e.shape == (8, 10) for e in esd.exits)
        # branch inputs are firing rates: multiples of 1/T
        assert esd.loss(out, y).requires_grad


def test_branch_params_get_grads_only_from_sd_terms():
    net = _net()
    x, y = digits_batch(8)
    with sd.RateBackpropM(net), sd.SelfDistillation(net, stages=("stage1", "stage2")) as esd:
        out = net(x)
        F.cross_entropy(out, y).backward(retain_graph=True)
        assert all(p.grad is None for p in net.sd_branches.parameters())
        esd.loss(out, y).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.sd_branches.parameters())


def test_export_inference_and_remove():
    net = _net()
    keys = set(net.state_dict())
    esd = sd.SelfDistillation(stages=("stage2",))
    h = esd.attach(net)
    assert any(k.startswith("sd_branches.") for k in net.state_dict())
    exported = esd.export_inference()
    assert set(exported) == keys
    plain = _net()
    plain.load_state_dict(exported)
    h.remove()
    assert set(net.state_dict()) == keys


def test_loss_terms_match_hand_computation():
    net = _net()
    x, y = digits_batch(16)
    with sd.RateBackpropM(net), sd.SelfDistillation(net, stages=("stage1", "stage3"), alpha=0.7, beta=0.3,
                                                    temperature=3.0, final_ce_weight=1.0) as esd:
        out = net(x)
        terms = {n: (v, w) for n, v, w in esd.loss_terms(out, y)}
        z = esd.exits + [out]
    teacher, valid, _ = sd.reliable_teacher(z, y)
    ce = sum(F.cross_entropy(b, y) for b in z[:-1])
    kd = sum(sd.masked_kd(zi, teacher, valid, 3.0) for zi in z)
    torch.testing.assert_close(terms["snn_sd.branch_ce"][0], ce)
    torch.testing.assert_close(terms["snn_sd.kd"][0], kd)
    assert terms["snn_sd.branch_ce"][1] == 0.7 and terms["snn_sd.kd"][1] == 0.3
    assert "snn_sd.head_ce_extra" not in terms  # final_ce_weight = 1: the objective's CE is enough


def test_sd_with_bptt_ablation_uses_mean_spikes():
    net = _net()
    x, y = digits_batch(8)
    with sd.SelfDistillation(net, stages=("stage1",)) as esd:
        out = net(x)
        assert len(esd.exits) == 1
        (F.cross_entropy(out, y) + esd.loss(out, y)).backward()
    assert net.stage1[0].body[0].weight.grad is not None


def test_sd_misuse():
    net = _net()
    with pytest.raises(ConfigError, match="do not exist"):
        sd.SelfDistillation(stages=("layer9",)).attach(net)
    with pytest.raises(ConfigError, match="stages"):
        sd.SelfDistillation(stages=()).attach(net)
    with pytest.raises(ConfigError, match="no spiking neurons"):
        m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
        sd.SelfDistillation(stages=("0",), example_input=torch.zeros(1, 1, 8, 8)).attach(m)
    with pytest.raises(ConfigError, match="temperature"):
        sd.SDConfig(stages=("a",), temperature=0.0)
    assert not hasattr(net, "sd_branches")


def test_gradkit_train_with_rate_bp_and_sd():
    import gradkit
    from gradkit.objectives import ClassificationCE

    torch.manual_seed(0)
    net = sd.SpikingConvNet(widths=(8, 16, 16), T=2)
    x, y = digits_batch(64)
    data = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    rb = sd.RateBackpropM(loss_scale=1.0)
    esd = sd.SelfDistillation(stages=("stage1", "stage2"))
    before = copy.deepcopy(net.state_dict())
    summary = gradkit.train(net, data, objective=ClassificationCE(), steps=4, lr=1e-2, grad_accum=2,
                            transforms=[rb, esd], progress=False, seed=0)
    hist = summary["history"]
    assert len(hist) == 4
    assert "term/snn_sd.kd" in hist[-1] and "term/snn_sd.branch_ce" in hist[-1]
    assert "snn_sd/valid_frac" in hist[-1] and "rate_bp/mean_rate" in hist[-1]
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    assert not hasattr(net, "sd_branches")  # removed after the run
    assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_docstring_examples_run():
    import doctest

    import gradkit_snn_sd.transform as t

    res = doctest.testmod(t)
    assert res.attempted >= 6 and res.failed == 0
