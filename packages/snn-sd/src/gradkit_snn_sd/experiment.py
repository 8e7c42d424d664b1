"""Small, self-contained experiment helpers shared by the demo, the benchmarks and the slow tests.

``train_and_eval`` trains one of ``"bptt"``, ``"rate-bp-m"``, ``"rate-bp-s"``, ``"rate-bp-m+sd"`` on a
classification tensor dataset with SGD (momentum 0.9, cosine schedule) and reports test accuracy and
wall-clock time; ``saved_bytes`` counts autograd-saved bytes of one training step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Optional

import torch
import torch.nn.functional as F
from gradkit.errors import ConfigError

from .models import SpikingClassifier, SpikingConvNet
from .transform import RateBackpropM, RateBackpropS, SelfDistillation

METHODS = ("bptt", "rate-bp-m", "rate-bp-s", "rate-bp-m+sd", "bptt+sd")


def make_net(T: int, input_size: int, *, widths=(16, 32, 32, 64), seed: int = 0) -> SpikingConvNet:
    torch.manual_seed(seed)
    return SpikingConvNet(in_channels=1, num_classes=10, widths=widths, T=T, input_size=input_size)


def attach_method(net: SpikingClassifier, method: str, *, loss_scale: Any = 1.0, stages=("stage1", "stage2"),
                  beta: float = 0.3) -> tuple[list[Any], Optional[SelfDistillation]]:
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    handles, esd = [], None
    if method.startswith("rate-bp-m"):
        handles.append(RateBackpropM(loss_scale=loss_scale).attach(net))
    elif method.startswith("rate-bp-s"):
        handles.append(RateBackpropS(loss_scale=loss_scale).attach(net))
    if method.endswith("+sd"):
        esd = SelfDistillation(stages=stages, alpha=1.0, beta=beta, temperature=3.0)
        handles.append(esd.attach(net))
    return handles, esd


@torch.no_grad()
def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    was = net.training
    net.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((net(x[i : i + batch]).argmax(-1) == y[i : i + batch]).sum())
    net.train(was)
    return correct / len(x)


def train_and_eval(
    method: str,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    T: int = 4,
    epochs: int = 4,
    batch: int = 64,
    lr: float = 0.1,
    seed: int = 0,
    loss_scale: Any = 1.0,
    widths=(16, 32, 32, 64),
    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it,
) -> dict[str, float]:
    """Train and evaluate; returns ``{"acc": ..., "seconds": ..., "s_per_epoch": ...}``."""
    x_tr, y_tr, x_te, y_te = data
    net = make_net(T, x_tr.shape[-1], widths=widths, seed=seed)
    handles, esd = attach_method(net, method, loss_scale=loss_scale)
    params = [p for p in net.parameters()]
    decay = [p for p in params if p.dim() > 1]
    no_decay = [p for p in params if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=lr, momentum=0.9)
    steps_per_epoch = math.ceil(len(x_tr) / batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    net.train()
    t0 = time.perf_counter()
    try:
        for _ in progress(range(epochs)):
            perm = torch.randperm(len(x_tr), generator=g)
            for i in range(0, len(x_tr), batch):
                idx = perm[i : i + batch]
                xb, yb = x_tr[idx], y_tr[idx]
                opt.zero_grad(set_to_none=True)
                forward_backward(net, esd, xb, yb)
                opt.step()
                sched.step()
        seconds = time.perf_counter() - t0
    finally:
        for h in reversed(handles):
            h.remove()
    acc = accuracy(net, x_te, y_te)
    return {"acc": acc, "seconds": seconds, "s_per_epoch": seconds / epochs}


def forward_backward(net: torch.nn.Module, esd: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One training forward + backward: cross-entropy, plus the self-distillation loss when ``esd`` is given."""
    out = net(x)
    loss = F.cross_entropy(out, y)
    if esd is not None:
        loss = loss + esd.loss(out, y)
    loss.backward()
    return loss.detach()


def saved_bytes(method: str, T: int, x: torch.Tensor, y: torch.Tensor, *, widths=(16, 32, 32, 64)) -> int:
    """Peak autograd-saved bytes of one training forward+backward (parameters excluded)."""
    from gradkit.metrics import SavedTensorMeter

    net = make_net(T, x.shape[-1], widths=widths)
    handles, esd = attach_method(net, method)
    try:
        with SavedTensorMeter(exclude=net) as meter:
            forward_backward(net, esd, x, y)
    finally:
        for h in reversed(handles):
            h.remove()
    return meter.peak_bytes


def step_time(method: str, T: int, x: torch.Tensor, y: torch.Tensor, *, repeats: int = 5, widths=(16, 32, 32, 64),
              net: Optional[torch.nn.Module] = None) -> float:
    """Median seconds of one training forward+backward."""
    net = net if net is not None else make_net(T, x.shape[-1], widths=widths)
    handles, esd = attach_method(net, method) if method != "bptt" else ([], None)
    times = []
    try:
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            forward_backward(net, esd, x, y)
            net.zero_grad(set_to_none=True)
            if r > 0:  # first call warms up
                times.append(time.perf_counter() - t0)
    finally:
        for h in reversed(handles):
            h.remove()
    return sorted(times)[len(times) // 2]
