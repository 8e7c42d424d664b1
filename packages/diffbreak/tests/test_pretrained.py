"""The shipped model pair: loads offline, is small, is accurate, and the attack pipeline runs on it."""

from __future__ import annotations

from importlib import resources

import pytest
import torch
from gradkit_diffbreak import DDPMPurifier, PurifiedClassifier, evaluate, pgd_eot
from gradkit_diffbreak.pretrained import asset_info, load_pretrained, load_test_data


def test_assets_are_small_and_documented():
    folder = resources.files("gradkit_diffbreak") / "assets"
    total = sum(f.stat().st_size for f in (folder / n for n in ("unet.pt", "classifier.pt", "meta.json")))  # type: ignore[attr-defined]
    assert total < 5 * 2**20
    info = asset_info()
    assert info["unet_config"]["sample_size"] == 16 and info["ddpm_iters"] > 0


def test_shipped_models_classify_and_purify():
    clf, unet, sched = load_pretrained()
    x, y = load_test_data(48)
    assert x.shape == (48, 1, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1
    with torch.no_grad():
        assert (clf(x).argmax(1) == y).float().mean() >= 0.9
    model = PurifiedClassifier(clf, DDPMPurifier(unet, sched, t_star=0.1, steps=3), seed=0)
    rec = evaluate(model, x[:16], y[:16], n=4)
    assert rec.mv_accuracy() >= 0.8


def test_pgd_eot_smoke_on_shipped_models():
    clf, unet, sched = load_pretrained()
    x, y = load_test_data(2)
    model = PurifiedClassifier(clf, DDPMPurifier(unet, sched, t_star=0.05, steps=2), seed=0)
    rep = pgd_eot(model, x, y, eps=0.1, steps=2, copies=2, eval_n=2, stop="single", eval_copies=2,
                  generator=torch.Generator().manual_seed(0))
    assert rep.x_adv.shape == x.shape and (rep.x_adv - x).abs().max() <= 0.1 + 1e-6
    assert rep.record.labels.shape == (2, 2)
    assert rep.first_success is not None and len(rep.losses) == 2


@pytest.mark.slow
def test_e2e_exact_pgd_eot_breaks_single_purification():
    """Slow: 16 test images, exact PGD-EOT (eps 0.25, 10 iterations, 8 copies) vs clean DBP."""
    from gradkit_diffbreak.demo import Settings, robustness_table

    rows, _ = robustness_table(Settings(n_images=16, steps=10, iters=10, copies=8, eval_n=16, rules=("exact_recompute",)))
    by = {r["setting"]: r for r in rows}
    clean = by["DBP, clean"]
    adv = by["DBP, PGD-EOT (exact_recompute)"]
    assert clean["mv"] >= 0.85
    assert adv["single"] <= clean["single"] - 0.4
    assert adv["all"] <= adv["single"] <= 1.0
