"""Majority vote, resubmission maths and confidence intervals on synthetic label matrices."""

from __future__ import annotations

import math

import pytest
import torch
from gradkit.errors import ConfigError
from gradkit_diffbreak.evaluation import EvalRecord, majority_vote, mv_error_bound, wilson_interval


def _record(labels, y, k=4, targeted=False):
    labels, y = torch.tensor(labels), torch.tensor(y)
    mv, tied, counts = majority_vote(labels, k)
    return EvalRecord(labels=labels, y=y, num_classes=k, mv_label=mv, mv_tied=tied, counts=counts, targeted=targeted)


def test_majority_vote_and_tie_rule():
    labels = torch.tensor([[2, 2, 1, 0], [3, 1, 3, 1], [0, 0, 0, 0]])
    mv, tied, counts = majority_vote(labels, 4)
    assert mv.tolist() == [2, 1, 0]  # row 1: tie between 1 and 3 -> lowest
    assert tied.tolist() == [False, True, False]
    assert counts[1].tolist() == [0, 2, 0, 2]
    g = torch.Generator().manual_seed(0)
    seen = {int(majority_vote(labels[1:2], 4, tie="random", generator=g)[0]) for _ in range(40)}
    assert seen == {1, 3}
    with pytest.raises(ConfigError, match="tie"):
        majority_vote(labels, 4, tie="first")


def test_protocol_accuracies_and_success():
    # input 0: 3/4 correct; input 1: 1/4 correct; input 2: 4/4 correct
    rec = _record([[1, 1, 1, 0], [2, 0, 0, 3], [3, 3, 3, 3]], [1, 2, 3])
    assert rec.single_accuracy() == pytest.approx((0.75 + 0.25 + 1.0) / 3)
    assert rec.mv_accuracy() == pytest.approx(2 / 3)  # input 1: MV is 0
    assert rec.all_correct_accuracy() == pytest.approx(1 / 3)
    assert rec.success("single").tolist() == [True, True, False]
    assert rec.success("majority_vote").tolist() == [False, True, False]
    # unbiased P(k draws all correct): C(c,k)/C(n,k)
    k = 2
    expect = (math.comb(3, k) / math.comb(4, k) + math.comb(1, k) / math.comb(4, k) + 1.0) / 3
    assert rec.resubmission_accuracy(2) == pytest.approx(expect)
    assert rec.resubmission_accuracy(4) == pytest.approx(rec.all_correct_accuracy())
    assert rec.resubmission_accuracy(1) == pytest.approx(rec.single_accuracy())
    s = rec.summary()
    assert s["mv_ci"][0] <= s["mv_acc"] <= s["mv_ci"][1]


def test_targeted_success():
    rec = _record([[2, 2, 1, 0], [0, 0, 0, 0]], [2, 1], targeted=True)
    assert rec.success("single").tolist() == [True, False]
    assert rec.success("majority_vote").tolist() == [True, False]


def test_wilson_interval_against_closed_form():
    lo, hi = wilson_interval(8, 10, 0.95)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)


def test_hoeffding_bound_holds_empirically():
    """Simulate MV over n copies with p = (0.5, 0.3, 0.2): error frequency below the bound."""
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.2])
    n, trials = 64, 4000
    labels = torch.multinomial(p.expand(trials, 3), n, replacement=True, generator=g)
    mv, _, _ = majority_vote(labels, 3)
    err = float((mv != 0).float().mean())
    bound = mv_error_bound(n, 0.2, 3)
    assert err <= bound
    assert 0 < bound < 1
