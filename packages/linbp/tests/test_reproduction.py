"""Opt-in reproduction check (``-m slow``; about 2 CPU-minutes): LinBP transfers better than I-FGSM
from the shipped VGG source at the README's settings (measured +9.4 avg points at n = 300)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_linbp_beats_ifgsm_transfer_from_vgg():
    from gradkit_linbp.experiment import Row, run_rows

    rows, n = run_rows("vgg", [Row("I-FGSM"), Row("LinBP", start=0)], n=300, eps=0.2, alpha=0.02, steps=50)
    assert n == 300
    base, linbp = rows[0].result["avg"], rows[1].result["avg"]
    assert linbp >= base + 3.0, (base, linbp)
