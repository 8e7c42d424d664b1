"""Modules: our multi-step LIF neuron and the self-distillation branches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from gradkit.errors import ConfigError
from torch import nn

from .reference.lif import lif_bptt_reference

__all__ = ["NeuronParams", "RateLIF", "TimeFold", "DeepConv", "SepConvBranch"]


@dataclass(frozen=True)
class NeuronParams:
    """LIF parameters in the form the rate-BP maths uses (see :mod:`gradkit_snn_sd.reference.lif`)."""

    lam: float
    theta: float
    v_reset: Optional[float]
    detach_reset: bool
    alpha: float
    input_scale: float

    def kwargs(self) -> dict:
        return dict(
            lam=self.lam, theta=self.theta, v_reset=self.v_reset, detach_reset=self.detach_reset,
            alpha=self.alpha, input_scale=self.input_scale,
        )


class RateLIF(nn.Module):
    """Multi-step LIF neuron (``[T, B, ...]`` -> spikes ``[T, B, ...]``), stateless between calls.

    Without a transform it is an ordinary BPTT neuron (surrogate gradient through time). Under
    ``rate-bp-m`` / ``rate-bp-s`` the transform runs its spike pass (no graph; rate and eligibility
    kept) and its rate pass (value = rate, derivative = eligibility).

    Args (spikingjelly ``LIFNode`` conventions): ``tau`` (> 1; ``lam = 1 - 1/tau``), ``decay_input``,
    ``v_threshold``, ``v_reset`` (``None`` = soft reset), ``detach_reset``, ``surrogate_alpha`` (sigmoid
    surrogate steepness). Defaults are the references' (``lam = 0.2``, soft, detached, alpha 4).
    """

    def __init__(
        self,
        tau: float = 1.25,
        *,
        decay_input: bool = False,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = None,
        detach_reset: bool = True,
        surrogate_alpha: float = 4.0,
    ) -> None:
        super().__init__()
        if not tau > 1.0:
            raise ConfigError(f"RateLIF: `tau` must be > 1 (lam = 1 - 1/tau in (0, 1)), got {tau!r}")
        if not v_threshold > 0:
            raise ConfigError(f"RateLIF: `v_threshold` must be > 0, got {v_threshold!r}")
        if not surrogate_alpha > 0:
            raise ConfigError(f"RateLIF: `surrogate_alpha` must be > 0, got {surrogate_alpha!r}")
        self.tau = float(tau)
        self.decay_input = bool(decay_input)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = bool(detach_reset)
        self.surrogate_alpha = float(surrogate_alpha)

    def neuron_params(self) -> NeuronParams:
        return NeuronParams(
            lam=1.0 - 1.0 / self.tau,
            theta=self.v_threshold,
            v_reset=self.v_reset,
            detach_reset=self.detach_reset,
            alpha=self.surrogate_alpha,
            input_scale=1.0 / self.tau if self.decay_input else 1.0,
        )

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2:
            raise ConfigError(f"RateLIF: input must be time-major [T, B, ...], got shape {tuple(x_seq.shape)}")
        return lif_bptt_reference(x_seq, **self.neuron_params().kwargs())

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, decay_input={self.decay_input}, v_threshold={self.v_threshold}, "
            f"v_reset={self.v_reset}, detach_reset={self.detach_reset}, surrogate_alpha={self.surrogate_alpha}"
        )


class TimeFold(nn.Module):
    """Apply a stateless module to ``[T, B, ...]`` by folding time into the batch (``SeqToANNContainer``)."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.body = modules[0] if len(modules) == 1 else nn.Sequential(*modules)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        T, B = x_seq.shape[:2]
        y = self.body(x_seq.flatten(0, 1))
        return y.view(T, B, *y.shape[1:])


def _tag_ann(module: nn.Module) -> nn.Module:
    for m in module.modules():
        m._gradkit_ann = True  # rate-BP leaves these BatchNorms alone
    return module


class DeepConv(nn.Module):
    """Separable-conv residual block of the SD branches (plain ANN: ReLU, ordinary BN).

    main: dw3x3(stride) -> 1x1 -> BN -> ReLU -> dw3x3 -> 1x1 (to ``cout``) -> BN -> ReLU;
    shortcut: 1x1(stride) -> BN; output ReLU(main + shortcut).
    """

    def __init__(self, cin: int, cout: int, stride: int = 2) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
            nn.Conv2d(cin, cin, 1, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=False),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.main(x) + self.shortcut(x))


class SepConvBranch(nn.Module):
    """An SD exit: ``DeepConv`` blocks halving the spatial size (channels x2, capped at ``width``) down
    to ``spatial``, then global average pooling and a linear classifier. Input: firing rates ``[B, C, H, W]``."""

    def __init__(self, cin: int, hin: int, *, width: int, spatial: int, num_classes: int) -> None:
        super().__init__()
        blocks = []
        c, h = cin, hin
        while h > spatial:
            nxt = width if (h + 1) // 2 <= spatial else min(2 * c, width)
            blocks.append(DeepConv(c, nxt, stride=2))
            c, h = nxt, (h + 1) // 2
        if c != width or not blocks:
            blocks.append(DeepConv(c, width, stride=1))
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(width, num_classes)
        _tag_ann(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(x).mean((2, 3)))
