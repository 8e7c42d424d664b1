"""Seeded long-horizon tasks from the paper (delayed copy, delayed XOR / temporal parity) and a small
training routine used by the demo and the reproduction.

Inputs are Bernoulli(1/2) bits ``x_t`` (``(B, T, 1)``); the target at step ``t`` is a function of
past bits, scored from ``t = delay`` on:

- copy:   ``y_t = x_{t-d}``
- parity with ``bits = n``: ``y_t = XOR_{j=1..n} x_{t - j d / n}`` (``n = 2`` is the delayed XOR
  ``x_{t-d/2} XOR x_{t-d}`` of the paper's notation; ``n = 1`` is copy).

Chance accuracy is 1/2.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from gradkit.errors import ConfigError
from torch import Tensor, nn

from .config import FlossingConfig
from .schedule import Flosser

__all__ = [
    "delayed_copy",
    "delayed_xor",
    "temporal_parity",
    "make_task",
    "DelayTaskRNN",
    "masked_bce",
    "bit_accuracy",
    "TaskRun",
    "train_delay_task",
]


def _check(delay: int, length: int, bits: int) -> None:
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
        raise ConfigError(f"`delay` must be an int >= 1, got {delay!r}")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ConfigError(f"`bits` must be an int >= 1, got {bits!r}")
    if delay % bits:
        raise ConfigError(f"`delay`={delay} must be a multiple of `bits`={bits} (lags are j*delay/bits)")
    if length <= delay:
        raise ConfigError(f"`length`={length} must exceed `delay`={delay} (no step would be scored)")


def temporal_parity(
    batch: int, length: int, delay: int, bits: int = 2, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(x (B, T, 1) float, y (B, T) float, mask (B, T) bool)``; ``y_t`` = parity of the bits at lags
    ``delay * j / bits``, ``j = 1..bits``; ``mask`` marks the scored steps ``t >= delay``."""
    _check(delay, length, bits)
    x = (torch.rand(batch, length, generator=generator) < 0.5).float()
    y = torch.zeros(batch, length)
    for j in range(1, bits + 1):
        lag = delay * j // bits
        y[:, lag:] = (y[:, lag:] + x[:, : length - lag]) % 2
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[:, delay:] = True
    return x.unsqueeze(-1), y, mask


def delayed_copy(batch: int, length: int, delay: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``y_t = x_{t - delay}`` (see :func:`temporal_parity`)."""
    return temporal_parity(batch, length, delay, 1, generator=generator)


def delayed_xor(batch: int, length: int, delay: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``y_t = x_{t - delay/2} XOR x_{t - delay}`` (see :func:`temporal_parity`)."""
    return temporal_parity(batch, length, delay, 2, generator=generator)


def make_task(task: str, delay: int) -> Callable[..., tuple[Tensor, Tensor, Tensor]]:
    """``"copy"``, ``"xor"`` or ``"parity<n>"`` -> ``gen(batch, length, generator=...)``."""
    if task == "copy":
        bits = 1
    elif task == "xor":
        bits = 2
    elif task.startswith("parity") and task[6:].isdigit():
        bits = int(task[6:])
    else:
        raise ConfigError(f"`task` must be 'copy', 'xor' or 'parity<n>', got {task!r}")

    def gen(batch: int, length: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        return temporal_parity(batch, length, delay, bits, generator=generator)

    _check(delay, delay + 1, bits)
    return gen


class DelayTaskRNN(nn.Module):
    """``h_t = tanh(W h_{t-1} + U x_t + b)``, logits ``w_r . h_t + c`` (the paper's rate network).

    Initialisation as the reference code: ``W ~ g N(0, 1/N)``, ``U ~ N(0, 1)``, ``b ~ 0.1 U(0, 1)``,
    readout ``N(0, 1)``, offset 0.001 (the readout is scaled by ``1/sqrt(N)`` here to keep logits O(1)).
    """

    def __init__(self, hidden: int = 64, *, gain: float = 1.0, input_size: int = 1, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden, batch_first=True)
        self.readout = nn.Linear(hidden, 1)
        with torch.no_grad():
            self.rnn.weight_hh_l0.copy_(gain * torch.randn(hidden, hidden, generator=generator) / math.sqrt(hidden))
            self.rnn.weight_ih_l0.copy_(torch.randn(hidden, input_size, generator=generator))
            self.rnn.bias_ih_l0.copy_(0.1 * torch.rand(hidden, generator=generator))
            self.rnn.bias_hh_l0.zero_()
            self.readout.weight.copy_(torch.randn(1, hidden, generator=generator) / math.sqrt(hidden))
            self.readout.bias.fill_(0.001)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        hs, _ = self.rnn(x, None if h0 is None else h0.unsqueeze(0))
        return self.readout(hs).squeeze(-1)


def masked_bce(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Binary cross-entropy with logits, averaged over the scored steps."""
    loss = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (loss * mask).sum() / mask.sum()


@torch.no_grad()
def bit_accuracy(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    """Fraction of scored bits predicted right (``sigmoid(logit) >= 1/2``)."""
    pred = (logits >= 0).float()
    return float(((pred == y) & mask).sum() / mask.sum())


@dataclass
class TaskRun:
    """Result of :func:`train_delay_task`."""

    task: str
    delay: int
    seed: int
    arm: str
    accuracy: float
    curve: list[tuple[int, float]] = field(default_factory=list)
    grad_h0: float = 0.0
    spectrum_init: list[float] = field(default_factory=list)
    spectrum_start: list[float] = field(default_factory=list)
    spectrum_final: list[float] = field(default_factory=list)
    floss_losses: list[float] = field(default_factory=list)
    seconds_task: float = 0.0
    seconds_floss: float = 0.0
    task_steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train_delay_task(
    task: str = "copy",
    delay: int = 30,
    *,
    hidden: int = 64,
    gain: float = 1.0,
    steps: int = 1000,
    batch: int = 16,
    extra: int = 40,
    lr: float = 1e-3,
    clip: float = 1.0,
    pre_steps: int = 0,
    inter_every: int = 0,
    inter_steps: int = 0,
    inter_max: int = 0,
    floss_config: FlossingConfig | None = None,
    seed: int = 0,
    eval_batch: int = 512,
    eval_every: int = 250,
    spectrum_k: int = 8,
    progress: Callable[[Any], Any] | None = None,
) -> TaskRun:
    """Train :class:`DelayTaskRNN` on a delay task with optional pre-/inter-flossing phases.

    Each task step draws ``batch`` fresh sequences of length ``delay + extra``; Adam(``lr``) with
    gradient-norm clipping ``clip``. Flossing uses its own Adam (``floss_config``; default k = 32,
    horizon 55, batch 1, lr 1e-3). Accuracy is measured on ``eval_batch`` held-out sequences.
    """
    gen_task = make_task(task, delay)
    g_model = torch.Generator().manual_seed(1000 + seed)
    g_data = torch.Generator().manual_seed(2000 + seed)
    g_eval = torch.Generator().manual_seed(3000 + seed)
    model = DelayTaskRNN(hidden, gain=gain, generator=g_model)
    length = delay + extra
    x_ev, y_ev, m_ev = gen_task(eval_batch, length, generator=g_eval)
    fc = floss_config or FlossingConfig(k=min(32, hidden), horizon=55, batch=1, lr=1e-3, seed=seed)
    flosser = Flosser(model.rnn, fc)
    spec_x = flosser.sample(4, 300)  # fixed held-out inputs for spectra
    run = TaskRun(task=task, delay=delay, seed=seed, arm="none", accuracy=0.0)
    run.arm = "none" if pre_steps == 0 and inter_max == 0 else ("pre" if inter_max == 0 else "pre+inter")
    run.spectrum_init = flosser.spectrum(spec_x, k=spectrum_k).tolist()
    if pre_steps:
        run.floss_losses += flosser.run(pre_steps)
    run.spectrum_start = flosser.spectrum(spec_x, k=spectrum_k).tolist()

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    # gradient of the task loss with respect to the initial state, at the start of training
    x0, y0, m0 = gen_task(batch, length, generator=torch.Generator().manual_seed(4000 + seed))
    h0 = torch.zeros(batch, hidden, requires_grad=True)
    run.grad_h0 = float(torch.autograd.grad(masked_bce(model(x0, h0), y0, m0), h0)[0].norm())

    episodes = 0
    it = range(1, steps + 1) if progress is None else progress(range(1, steps + 1))
    t_task = 0.0
    for step in it:
        if inter_every and episodes < inter_max and step % inter_every == 0:
            run.floss_losses += flosser.run(inter_steps)
            episodes += 1
        t0 = time.perf_counter()
        x, y, m = gen_task(batch, length, generator=g_data)
        loss = masked_bce(model(x), y, m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        t_task += time.perf_counter() - t0
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                run.curve.append((step, bit_accuracy(model(x_ev), y_ev, m_ev)))
    run.accuracy = run.curve[-1][1] if run.curve else bit_accuracy(model(x_ev), y_ev, m_ev)
    run.spectrum_final = flosser.spectrum(spec_x, k=spectrum_k).tolist()
    run.seconds_task = t_task
    run.seconds_floss = flosser.seconds
    run.task_steps = steps
    return run
