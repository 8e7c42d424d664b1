import copy

import gradkit_snn_sd as sd
import torch
import torch.nn.functional as F
from torch import nn


def grads(model, x, y, transform=None):
    model.zero_grad(set_to_none=True)
    if transform is None:
        out = model(x)
        F.cross_entropy(out, y).backward()
    else:
        with transform.attach(model):
            out = model(x)
            F.cross_entropy(out, y).backward()
    g = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out.detach(), g


def cosine(a, b):
    return float(F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


class MaxPoolNet(sd.SpikingClassifier):
    """Max pooling of spikes between two LIFs: rate-BP's forward values are wrong here."""

    def __init__(self, T=4):
        super().__init__()
        self.T, self.input_shape = T, (1, 8, 8)
        self.body = nn.Sequential(
            sd.TimeFold(nn.Conv2d(1, 8, 3, 1, 1), nn.BatchNorm2d(8)), sd.RateLIF(),
            sd.TimeFold(nn.MaxPool2d(2)), sd.TimeFold(nn.Conv2d(8, 8, 3, 1, 1), nn.BatchNorm2d(8)), sd.RateLIF(),
        )
        self.fc = nn.Linear(8, 10)

    def features(self, xs):
        return self.body(xs)


def digits_batch(n=32, dtype=torch.float32, seed=0):
    from gradkit.data import load_digits

    x, y = load_digits()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=g)[:n]
    return (x[idx] * 2.0).to(dtype), y[idx]


def clone(m):
    return copy.deepcopy(m)
