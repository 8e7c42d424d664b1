"""Small MNIST-5k classifiers: the LinBP sources and the transfer victims shipped as package data.

Sources (the models attacked white-box, where LinBP changes the backward pass):

* ``vgg``: a VGG-style chain, 6 x (conv3x3 - BN - ReLU) with widths 8, 8, 16, 16, 32, 32 and a
  max-pool after every second block, then one linear layer. Its ReLUs are ``features.2, 5, 9, 12, 16, 19``.
* ``res``: a torchvision-style ResNet: stem conv-BN-ReLU (8) and four :class:`BasicBlock` s
  (8, 16/2, 32/2, 32) that share one ``self.relu`` module between the branch and the post-add ReLU,
  global average pooling, one linear layer.

Victims (architectures that differ from the sources): ``mlp`` (784-256-128-10, ReLU), ``lenet``
(tanh, average pooling), ``wide`` (two 5x5 convs with 32/64 channels, max-pool, dropout, fc 128),
``elu`` (four strided convs with ELU), and ``res_v`` (the ``res`` architecture, another seed).

All take ``[N, 1, 28, 28]`` inputs in ``[0, 1]`` and return logits ``[N, 10]``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

__all__ = ["BasicBlock", "VGGS", "ResNetS", "MODELS", "SOURCES", "VICTIMS", "build", "load_pretrained", "ASSETS"]

ASSETS = Path(__file__).resolve().parent / "assets"


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock`` layout: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x))``.

    One ``self.relu`` module (``inplace=True``) is called twice per forward, as in torchvision; LinBP
    handles it with its residual-block adapter.
    """

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class VGGS(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (8, 8, 16, 16, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin * 3 * 3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class ResNetS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2))
        self.layer3 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32))
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def _lenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
    )


def _wide() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def _elu() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ELU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ELU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ELU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ELU(),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 10),
    )


MODELS: dict[str, Callable[[], nn.Module]] = {
    "vgg": VGGS, "res": ResNetS, "mlp": _mlp, "lenet": _lenet, "wide": _wide, "elu": _elu, "res_v": ResNetS,
}
SOURCES = ("vgg", "res")
VICTIMS = ("mlp", "lenet", "wide", "elu", "res_v")
SEEDS = {"vgg": 0, "res": 0, "mlp": 1, "lenet": 2, "wide": 3, "elu": 4, "res_v": 5}


def build(name: str) -> nn.Module:
    """A freshly initialised model of architecture ``name`` (see :data:`MODELS`)."""
    from gradkit.errors import ConfigError

    if name not in MODELS:
        raise ConfigError(f"gradkit_linbp.models.build: unknown `name`={name!r}; choose from {sorted(MODELS)}")
    return MODELS[name]()


def load_pretrained(name: str) -> nn.Module:
    """The shipped MNIST-5k weights of ``name`` (trained by ``scripts/train_models.py``), in eval mode."""
    path = ASSETS / f"{name}.pt"
    if not path.exists():
        raise FileNotFoundError(
            f"no shipped weights for {name!r} at {path}; run `python packages/linbp/scripts/train_models.py`"
        )
    model = build(name)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
