"""Plugin contract, transform attach/remove, the attack loop hooks and misuse errors."""

from __future__ import annotations

import gradkit
import pytest
import torch
from gradkit.errors import ConfigError
from gradkit.testing import PluginContract
from gradkit_diffbreak import DDPMPurifier, DiffBreak, GDMPGuidance, PurifiedClassifier, VPSDEPurifier, margin_loss
from helpers import tiny_classifier, tiny_eps_net, tiny_scheduler


def _model(**kw):
    pur = DDPMPurifier(tiny_eps_net(dtype=torch.float32), tiny_scheduler(), t_star=0.05)
    kw.setdefault("copies", 2)
    return PurifiedClassifier(tiny_classifier(dtype=torch.float32), pur, seed=0, **kw)


class TestDiffBreakContract(PluginContract):
    plugin_name = "diffbreak"
    distribution = "gradkit-diffbreak"
    transform_names = ("diffbreak",)
    demo_names = ("diffbreak",)

    def make_model(self, transform_name):
        return _model(deterministic=True)

    def make_inputs(self, transform_name):
        return (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)),)

    def transform_config(self, transform_name):
        return {"backward": "bpda_identity", "output": "mean_probs", "copies": 3}

    def misuse_cases(self):
        sched, net = tiny_scheduler(), tiny_eps_net()
        return [
            lambda: DDPMPurifier(net, sched, t_star=0.0),
            lambda: DDPMPurifier(net, sched, t_star=1.5),
            lambda: VPSDEPurifier(net, sched, t_star=-0.1),
            lambda: DDPMPurifier(net, sched, t_star=0.1, steps=50),
            lambda: _model().purify(torch.rand(1, 1, 8, 8) * 2),  # images outside [0, 1]
            lambda: DiffBreak(backward="adjoint"),
            lambda: DiffBreak(eot_iters=0),
            lambda: GDMPGuidance("l1"),
            lambda: _model(copies=0),
            lambda: DiffBreak().attach(torch.nn.Linear(2, 2)),
        ]


def test_transform_sets_and_restores_module_knobs():
    m = _model()
    before = (m.backward, m.output, m.copies, m.offload)
    t = gradkit.transforms.create("diffbreak", backward="full", output="vote", copies=5, offload="none")
    with t.attach(m):
        assert (m.backward, m.output, m.copies, m.offload) == ("full", "vote", 5, "none")
        out = m(torch.rand(3, 1, 8, 8))
        assert out.shape == (3, 5) and torch.allclose(out.sum(1), torch.ones(3))
    assert (m.backward, m.output, m.copies, m.offload) == before


def test_image_size_mismatch_is_a_config_error():
    from helpers import tiny_unet

    pur = DDPMPurifier(tiny_unet(size=8), tiny_scheduler(), t_star=0.05)
    m = PurifiedClassifier(tiny_classifier(dtype=torch.float64), pur, copies=1)
    with pytest.raises(ConfigError, match="does not match the UNet"):
        m(torch.rand(1, 1, 16, 16, dtype=torch.float64))


def test_input_grad_hook_is_the_eot_mean_of_the_rule():
    """gradkit.attack's gradient with the transform == our own EOT-mean gradient (same tape)."""
    m = _model(deterministic=True)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3])
    t = DiffBreak(backward="exact_recompute", copies=3, loss="margin")
    grads = []

    class Spy:
        @gradkit.hookimpl
        def gradkit_attack_finish(self, state, result):
            grads.append(state.grad.clone())

    pm = gradkit.manager.get_plugin_manager()
    spy = Spy()
    pm.register(spy)
    try:
        gradkit.attack(m, x, y, method="ifgsm", eps=0.0, alpha=0.0, steps=1, transforms=[t])
    finally:
        pm.unregister(spy)
    xx = x.clone().requires_grad_(True)
    logits = m.logits_per_copy(xx, copies=3, backward="full")
    loss = margin_loss(logits.flatten(0, 1), y.repeat_interleave(3)).view(2, 3).mean(1).sum()
    (ref,) = torch.autograd.grad(loss, xx)
    assert len(grads) == 1
    assert torch.equal(grads[0], ref)


def test_no_transform_no_effect():
    """Without the transform active, the plugin's hooks defer (plain autograd through mean_probs)."""
    m = _model(output="mean_probs")
    x = torch.rand(2, 1, 8, 8)
    res = gradkit.attack(m, x, torch.tensor([0, 1]), method="ifgsm", eps=0.05, steps=1)
    assert res.x_adv.shape == x.shape
    assert (res.x_adv - x).abs().max() <= 0.05 + 1e-6


def test_stop_at_first_success_freezes_inputs():
    m = _model()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3])
    t = DiffBreak(backward="bpda_identity", copies=2, stop="single", eval_copies=4)
    res = gradkit.attack(m, x, y, method="pgd", eps=0.3, alpha=0.1, steps=3, transforms=[t],
                         generator=torch.Generator().manual_seed(0))
    first = t.last_first_success
    assert first is not None and first.shape == (4,)
    assert ((first >= -1) & (first < 3)).all()
    assert (res.x_adv - x).abs().max() <= 0.3 + 1e-6
