"""LF attack pieces: the bilateral cascade and the attack's perceptual bound."""

from __future__ import annotations

import pytest
import torch
from gradkit.errors import ConfigError
from gradkit_diffbreak import DDPMPurifier, PurifiedClassifier
from gradkit_diffbreak.lf import BilateralCascade, LFConfig, lf_attack
from helpers import tiny_classifier, tiny_eps_net, tiny_scheduler


def test_cascade_preserves_constants_and_respects_edges():
    x = torch.full((1, 1, 9, 9), 0.3)
    casc = BilateralCascade(x, [(5, 5), (3, 3)])
    torch.testing.assert_close(casc(x), x)
    # a step edge in the guide: the range kernel keeps the filter from mixing across it
    g = torch.zeros(1, 1, 9, 9)
    g[..., 5:] = 1.0
    casc = BilateralCascade(g, [(5, 5)], sigma_color=0.05, sigma_init=10.0)  # nearly flat spatial kernel
    out = casc(g)
    assert (out - g).abs().max() < 1e-3
    # without range guidance (huge sigma_color) the same flat kernel blurs the edge
    blur = BilateralCascade(g, [(5, 5)], sigma_color=1e3, sigma_init=10.0)(g)
    assert (blur - g).abs().max() > 0.1


def test_lf_attack_stays_within_the_perceptual_bound():
    pur = DDPMPurifier(tiny_eps_net(dtype=torch.float32), tiny_scheduler(), t_star=0.03)
    model = PurifiedClassifier(tiny_classifier(dtype=torch.float32), pur, copies=2, seed=0)
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    res = lf_attack(model, x, torch.tensor([0, 1]), LFConfig(kernels=((3, 3),), iters=3, copies=2, perceptual_eps=0.2, ssim_window=3))
    assert res.x_adv.shape == x.shape
    assert (res.distance < 0.2).all()
    assert ((res.x_adv >= 0) & (res.x_adv <= 1)).all()


def test_lf_config_validation():
    with pytest.raises(ConfigError, match="kernels"):
        LFConfig(kernels=((4, 3),))
    with pytest.raises(ConfigError, match="perceptual_eps"):
        LFConfig(perceptual_eps=0)
