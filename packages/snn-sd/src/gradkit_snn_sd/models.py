"""Spiking backbones built from :class:`RateLIF`, ``nn.Conv2d`` and ``nn.BatchNorm2d`` (time folded).

Every model takes a static image batch ``[B, C, H, W]`` (repeated ``T`` times: direct encoding) or a
time-major sequence ``[T, B, C, H, W]``, and returns the mean-over-time logits ``[B, classes]``.
Stage outputs are time-major ``[T, B, C, H, W]`` spike tensors, so they can feed SD branches.
Only time-linear ops sit between neurons (conv, BN, average pooling, residual add) as rate-BP needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from gradkit.errors import ConfigError
from torch import nn

from .modules import RateLIF, TimeFold

__all__ = [
    "SpikingClassifier",
    "SpikingConvNet",
    "SpikingResNet",
    "SpikingVGG",
    "spiking_resnet18",
    "spiking_resnet19",
    "spiking_vgg11",
    "tiny_resnet",
]


def _check_T(owner: str, T: int) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise ConfigError(f"{owner}: `T` (number of time steps) must be a positive int, got {T!r}")
    return T


class SpikingClassifier(nn.Module):
    """Base: direct encoding, time-major body, mean-over-time readout."""

    input_shape: tuple[int, ...] = ()
    T: int = 1

    def to_time_major(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[T, B, C, H, W]`` (repeat); time-major input passes through."""
        n = len(self.input_shape)
        if x.dim() == n + 1:
            return x.unsqueeze(0).expand(self.T, *x.shape)
        if x.dim() == n + 2:
            return x
        raise ConfigError(
            f"{type(self).__name__}: input must be [B, {', '.join(map(str, self.input_shape))}] or time-major "
            f"[T, B, ...]; got shape {tuple(x.shape)}"
        )

    def example_input(self, batch: int = 2) -> torch.Tensor:
        p = next(self.parameters())
        return torch.zeros(batch, *self.input_shape, dtype=p.dtype, device=p.device)

    def features(self, xs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = self.to_time_major(x)
        f = self.features(xs)  # [T, B, C, H, W]
        return self.fc(f.mean((3, 4))).mean(0)


def _neuron(neuron: dict | None) -> RateLIF:
    return RateLIF(**(neuron or {}))


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> TimeFold:
    return TimeFold(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


class SpikingConvNet(SpikingClassifier):
    """Small conv SNN for CPU tests: ``len(widths)`` stages of conv(stride 1, then 2) -> BN -> LIF; GAP; FC.

    Stages are attributes ``stage1``, ``stage2``, ... (SD taps).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 32, 64),
        *,
        T: int = 4,
        input_size: int = 8,
        neuron: dict | None = None,
    ) -> None:
        super().__init__()
        self.T = _check_T("SpikingConvNet", T)
        self.input_shape = (in_channels, input_size, input_size)
        c = in_channels
        self.stage_names = []
        for i, w in enumerate(widths):
            setattr(self, f"stage{i + 1}", nn.Sequential(_conv_bn(c, w, 3, 1 if i == 0 else 2), _neuron(neuron)))
            self.stage_names.append(f"stage{i + 1}")
            c = w
        self.fc = nn.Linear(c, num_classes)

    def features(self, xs: torch.Tensor) -> torch.Tensor:
        for n in self.stage_names:
            xs = getattr(self, n)(xs)
        return xs


class BasicBlock(nn.Module):
    """Spiking BasicBlock: conv-BN-LIF-conv-BN + shortcut (conv1x1-BN when shape changes) -> add -> LIF."""

    def __init__(self, cin: int, cout: int, stride: int, neuron: dict | None) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3, stride)
        self.sn1 = _neuron(neuron)
        self.conv2 = _conv_bn(cout, cout, 3, 1)
        self.shortcut = _conv_bn(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None
        self.sn2 = _neuron(neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.sn1(self.conv1(x)))
        out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.sn2(out)


class SpikingResNet(SpikingClassifier):
    """CIFAR-style spiking ResNet: 3x3 stem (conv-BN-LIF), stages ``layer1..``, GAP, FC."""

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        *,
        stem_width: int | None = None,
        in_channels: int = 3,
        num_classes: int = 10,
        T: int = 4,
        input_size: int = 32,
        neuron: dict | None = None,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths) or not blocks:
            raise ConfigError("SpikingResNet: `blocks` and `widths` must be non-empty and of equal length")
        self.T = _check_T("SpikingResNet", T)
        self.input_shape = (in_channels, input_size, input_size)
        stem = stem_width or widths[0]
        self.stem = nn.Sequential(_conv_bn(in_channels, stem, 3, 1), _neuron(neuron))
        c = stem
        self.stage_names = []
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n):
                layers.append(BasicBlock(c, w, 2 if (j == 0 and i > 0) else 1, neuron))
                c = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            self.stage_names.append(f"layer{i + 1}")
        self.fc = nn.Linear(c, num_classes)

    def features(self, xs: torch.Tensor) -> torch.Tensor:
        xs = self.stem(xs)
        for n in self.stage_names:
            xs = getattr(self, n)(xs)
        return xs


def spiking_resnet18(num_classes: int = 10, *, T: int = 6, in_channels: int = 3, input_size: int = 32, neuron: dict | None = None) -> SpikingResNet:
    """Spiking ResNet-18 for CIFAR (64/128/256/512, 2 blocks each). SD taps: ``layer1..layer3``."""
    return SpikingResNet([2, 2, 2, 2], [64, 128, 256, 512], num_classes=num_classes, T=T,
                         in_channels=in_channels, input_size=input_size, neuron=neuron)


def spiking_resnet19(num_classes: int = 10, *, T: int = 4, in_channels: int = 3, input_size: int = 32, neuron: dict | None = None) -> SpikingResNet:
    """Spiking ResNet-19 for CIFAR (stem 128; 128/256/512 with 3/3/2 blocks). SD taps: ``layer1, layer2``."""
    return SpikingResNet([3, 3, 2], [128, 256, 512], stem_width=128, num_classes=num_classes, T=T,
                         in_channels=in_channels, input_size=input_size, neuron=neuron)


def tiny_resnet(num_classes: int = 10, *, T: int = 4, in_channels: int = 1, input_size: int = 8, neuron: dict | None = None) -> SpikingResNet:
    """A 3-stage, 1-block-per-stage spiking ResNet (8/16/32 channels) for CPU tests."""
    return SpikingResNet([1, 1, 1], [8, 16, 32], num_classes=num_classes, T=T,
                         in_channels=in_channels, input_size=input_size, neuron=neuron)


class SpikingVGG(SpikingClassifier):
    """VGG-style SNN: stages of conv-BN-LIF layers, each stage but the last ending in 2x2 average pooling
    (max pooling of spikes would break rate-BP's forward values). Stages are ``stage1..``."""

    def __init__(
        self,
        cfg: Sequence[Sequence[int]],
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        T: int = 4,
        input_size: int = 32,
        neuron: dict | None = None,
    ) -> None:
        super().__init__()
        self.T = _check_T("SpikingVGG", T)
        self.input_shape = (in_channels, input_size, input_size)
        c = in_channels
        self.stage_names = []
        for i, widths in enumerate(cfg):
            layers: list[nn.Module] = []
            for w in widths:
                layers += [_conv_bn(c, w, 3, 1), _neuron(neuron)]
                c = w
            if i < len(cfg) - 1:
                layers.append(TimeFold(nn.AvgPool2d(2)))
            setattr(self, f"stage{i + 1}", nn.Sequential(*layers))
            self.stage_names.append(f"stage{i + 1}")
        self.fc = nn.Linear(c, num_classes)

    def features(self, xs: torch.Tensor) -> torch.Tensor:
        for n in self.stage_names:
            xs = getattr(self, n)(xs)
        return xs


def spiking_vgg11(num_classes: int = 10, *, T: int = 4, in_channels: int = 3, input_size: int = 32, neuron: dict | None = None) -> SpikingVGG:
    """VGG-11 layout for CIFAR (64 | 128 | 256,256 | 512,512 | 512,512), average pooling."""
    return SpikingVGG([[64], [128], [256, 256], [512, 512], [512, 512]], num_classes=num_classes, T=T,
                      in_channels=in_channels, input_size=input_size, neuron=neuron)
