"""LinBP inside gradkit.attack (I-FGSM / PGD / MI-FGSM, l_inf / l_2, targeted), ILA second stage,
a user-driven loop on the patched model, the fused update's reference path, and bad input."""

from __future__ import annotations

import gradkit
import pytest
import torch
import torch.nn.functional as F
from gradkit.errors import ConfigError
from gradkit.loops.attack import default_attack_step
from gradkit_linbp import LinBP
from gradkit_linbp.attacks import ila, linbp_attack
from gradkit_linbp.ila import ILA
from gradkit_linbp.reference import attack_update_ref
from nets import TinyResNet, TVBasic, randomize_bn, vgg_chain


def data(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return randomize_bn(TinyResNet(TVBasic))


@pytest.mark.parametrize("method", ["ifgsm", "pgd", "mifgsm"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_core_loop_with_linbp_equals_user_loop_on_patched_model(net, method, norm):
    x, y = data()
    eps, alpha, steps = (0.1, 0.02, 4) if norm == "linf" else (0.8, 0.2, 4)
    gen = torch.Generator().manual_seed(3)
    res = gradkit.attack(net, x, y, method=method, eps=eps, alpha=alpha, steps=steps, norm=norm,
                         transforms=[LinBP(start=2)], generator=gen)
    # the same attack written by hand (torchattacks style): model(x) + autograd.grad on the patched model
    gen = torch.Generator().manual_seed(3)
    x_adv = x.clone()
    if method == "pgd":
        if norm == "linf":
            x_adv = (x + eps * (torch.rand(x.shape, generator=gen) * 2 - 1))
            x_adv = x + (x_adv - x).clamp(-eps, eps)
        else:
            d = torch.randn(x.shape, generator=gen)
            r = torch.rand((x.shape[0],), generator=gen)
            d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = eps * r.view(-1, 1, 1, 1) * d
            delta = delta * torch.clamp(eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1), max=1.0)
            x_adv = x + delta
        x_adv = x_adv.clamp(0, 1)
    m = torch.zeros_like(x) if method == "mifgsm" else None
    with LinBP(net, start=2):
        for _ in range(steps):
            xa = x_adv.clone().requires_grad_(True)
            loss = F.cross_entropy(net(xa), y, reduction="sum")
            (g,) = torch.autograd.grad(loss, xa)
            x_adv, m = attack_update_ref(x_adv, x, g, alpha=alpha, eps=eps, norm=norm, momentum=m)
    torch.testing.assert_close(res.x_adv, x_adv, rtol=0, atol=1e-6)
    # LinBP really changed the attack
    plain = gradkit.attack(net, x, y, method=method, eps=eps, alpha=alpha, steps=steps, norm=norm,
                           generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(plain.x_adv, res.x_adv)
    # the budget holds
    delta = (res.x_adv - x).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps + 1e-5
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("momentum", [False, True])
def test_update_reference_equals_core_default_step(norm, momentum):
    from gradkit.context import AttackState

    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(5, 3, 7, 9, generator=g)
    xa = (x0 + 0.05 * torch.randn(x0.shape, generator=g)).clamp(0, 1)
    grad = torch.randn(x0.shape, generator=g)
    m = torch.randn(x0.shape, generator=g) if momentum else None
    state = AttackState(model=None, x_clean=x0, y=torch.zeros(5), x_adv=xa, method="mifgsm" if momentum else "ifgsm",
                        norm=norm, eps=0.1 if norm == "linf" else 1.0, alpha=0.03, steps=1, targeted=False,
                        loss_fn=None, transforms={}, hook=None, decay=0.9, grad=grad, momentum=m)
    want = default_attack_step(state)
    got, m_new = attack_update_ref(xa, x0, grad, alpha=0.03, eps=state.eps, norm=norm, momentum=m, decay=0.9)
    assert torch.equal(got, want)
    if momentum:
        assert torch.equal(m_new, state.momentum)


@pytest.mark.parametrize("norm,eps,alpha", [("linf", 0.3, 0.03), ("l2", 4.0, 0.5)])
def test_targeted_linbp_reaches_targets_on_shipped_model(norm, eps, alpha):
    from gradkit_linbp.experiment import attack_images
    from gradkit_linbp.models import load_pretrained

    model = load_pretrained("vgg")
    x, y = attack_images(8, {"vgg": model})
    target = (y + 1) % 10
    res = linbp_attack(model, x, target, method="mifgsm", start=3, eps=eps, alpha=alpha, steps=15, norm=norm,
                       targeted=True)
    with torch.no_grad():
        assert model(x).argmax(1).eq(target).sum() == 0
    assert res.success_rate >= 0.75


def test_ila_gradient_is_the_projection_loss_gradient():
    torch.manual_seed(2)
    model = randomize_bn(vgg_chain())
    x, y = data(4)
    x1 = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    t = ILA(layer="3", reference=x1)
    h = t.attach(model)
    t.start(x)
    xa = (x + 0.02 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    (g,) = torch.autograd.grad(t.loss(xa).sum(), xa)
    h.remove()
    feat = torch.nn.Sequential(*list(model)[:4])
    with torch.no_grad():
        h0, h1 = feat(x), feat(x1)
    xb = xa.detach().clone().requires_grad_(True)
    (want,) = torch.autograd.grad(((feat(xb) - h0) * (h1 - h0)).sum(), xb)
    torch.testing.assert_close(g, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("norm,eps,alpha", [("linf", 0.1, 0.01), ("l2", 0.5, 0.1)])
def test_ila_second_stage_increases_projection(net, norm, eps, alpha):
    x, y = data(6)
    stage1 = linbp_attack(net, x, y, start=2, eps=eps, alpha=alpha, steps=5, norm=norm)
    res = ila(net, x, y, stage1.x_adv, layer="layers.1", eps=eps, alpha=alpha, steps=5, norm=norm)
    assert res.losses[-1] > res.losses[0]
    d = (res.x_adv - x).flatten(1)
    assert (d.abs().max() if norm == "linf" else d.norm(dim=1).max()) <= eps + 1e-5
    both = linbp_attack(net, x, y, start=2, eps=eps, alpha=alpha, steps=5, norm=norm, ila_layer="layers.1")
    torch.testing.assert_close(both.x_adv, res.x_adv, rtol=0, atol=0)


def test_bad_attack_inputs(net):
    x, y = data(2)
    with pytest.raises(ConfigError, match="eps"):
        linbp_attack(net, x, y, eps=-0.1)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        linbp_attack(net, x * 3 - 1, y, eps=0.1)
    with pytest.raises(ConfigError, match="start"):
        linbp_attack(net, x, y, start=99, eps=0.1, steps=1)
    with pytest.raises(ConfigError, match="layer"):
        ila(net, x, y, x, layer="nope", eps=0.1, alpha=0.01, steps=1)
    with pytest.raises(ConfigError, match="reference"):
        gradkit.attack(net, x, y, eps=0.1, steps=1, transforms=[ILA(layer="layers.0")])
    with pytest.raises(ConfigError, match="untargeted"):
        linbp_attack(net, x, y, eps=0.1, targeted=True, ila_layer="layers.0")
    assert all("forward" not in m.__dict__ for m in net.modules())
