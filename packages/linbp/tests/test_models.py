"""The shipped MNIST-5k weights: size budget, loadable, accurate as recorded by the training script."""

from __future__ import annotations

import json

import pytest
import torch
from gradkit_linbp.models import ASSETS, MODELS, load_pretrained


def test_weights_are_small_and_complete():
    total = sum(p.stat().st_size for p in ASSETS.glob("*.pt"))
    assert total < 5 * 2**20
    assert {p.stem for p in ASSETS.glob("*.pt")} == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shipped_model_accuracy_matches_record(name):
    from gradkit.data import load_mnist5k, split

    x, y = load_mnist5k()
    _, _, xte, yte = split(x, y, 0.2, seed=0)
    model = load_pretrained(name)
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    rec = json.loads((ASSETS / "metrics.json").read_text())[name]["test_acc"]
    assert abs(acc - rec) < 1e-3
    assert acc > 0.85


def test_demo_rows_smoke():
    from gradkit_linbp.experiment import Row, run_rows

    rows, n = run_rows("vgg", [Row("I-FGSM"), Row("LinBP", start=0)], n=6, eps=0.2, alpha=0.05, steps=2,
                       victims=("mlp",))
    assert n == 6
    for r in rows:
        assert set(r.result) == {"wb", "mlp", "avg"} and 0 <= r.result["avg"] <= 100
