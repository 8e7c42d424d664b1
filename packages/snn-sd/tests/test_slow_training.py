"""Slow: real training on MNIST-5k (14x14, T = 4): BPTT, rate-BP and rate-BP + SD all learn.

No ordering between methods is asserted: a CPU-sized run cannot show SD's gain (see README).
"""

import pytest
import torch.nn.functional as F
from gradkit_snn_sd.experiment import train_and_eval


@pytest.mark.slow
def test_mnist5k_bptt_ratebp_sd_train():
    from gradkit.data import load_mnist5k, split

    x, y = load_mnist5k()
    data = split(F.avg_pool2d(x, 2) * 2.0, y, 0.2, seed=0)
    accs = {m: train_and_eval(m, data, T=4, epochs=2, seed=0)["acc"] for m in ("bptt", "rate-bp-m", "rate-bp-m+sd")}
    assert all(a >= 0.88 for a in accs.values()), accs
