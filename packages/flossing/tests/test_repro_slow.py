"""Slow smoke of the reproduction: at copy delay 30 only the pre-flossed network learns (one seed)."""

import pytest
import torch
from gradkit_flossing import train_delay_task


@pytest.mark.slow
def test_pre_flossing_separates_the_arms_on_copy_30():
    torch.set_num_threads(1)
    none = train_delay_task("copy", 30, hidden=64, steps=600, pre_steps=0, seed=0, eval_every=300)
    pre = train_delay_task("copy", 30, hidden=64, steps=600, pre_steps=100, seed=0, eval_every=300)
    assert none.accuracy < 0.6, none.accuracy
    assert pre.accuracy > 0.85, pre.accuracy
    assert pre.grad_h0 > 100 * none.grad_h0
