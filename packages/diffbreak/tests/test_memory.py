"""Saved-tensor memory: flat in the number of steps for exact_recompute, linear for full autograd."""

from __future__ import annotations

import torch
from gradkit.metrics import SavedTensorMeter
from gradkit_diffbreak import PurifiedClassifier, VPSDEPurifier
from helpers import tiny_classifier, tiny_eps_net, tiny_scheduler


def _peak(rule: str, steps: int) -> int:
    net = tiny_eps_net(dtype=torch.float32)
    clf = tiny_classifier(dtype=torch.float32)
    m = PurifiedClassifier(clf, VPSDEPurifier(net, tiny_scheduler(), t_star=0.2, steps=steps), copies=2, seed=0,
                           backward=rule)
    x = torch.rand(2, 1, 8, 8).requires_grad_(True)
    with SavedTensorMeter(exclude=[net, clf]) as meter:
        out = m(x)
        torch.autograd.grad(out.sum(), x)
    return meter.peak_bytes


def test_exact_recompute_memory_is_flat_full_graph_is_linear():
    ex4, ex40 = _peak("exact_recompute", 4), _peak("exact_recompute", 40)
    full4, full40 = _peak("full", 4), _peak("full", 40)
    assert ex40 <= 1.5 * ex4, (ex4, ex40)
    assert full40 >= 5 * full4, (full4, full40)
    assert ex40 * 5 <= full40
