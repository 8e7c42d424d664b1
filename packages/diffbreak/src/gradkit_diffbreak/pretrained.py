"""The shipped model pair (trained by :mod:`gradkit_diffbreak.training` on MNIST-5k at 16 x 16)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import torch

from .training import SmallCNN, load_mnist16, make_scheduler, make_unet

__all__ = ["load_pretrained", "load_test_data", "asset_info"]


def _asset(name: str) -> Any:
    return resources.files("gradkit_diffbreak") / "assets" / name


def asset_info() -> dict[str, Any]:
    """The shipped ``meta.json`` (configs, training settings, classifier test accuracy)."""
    return json.loads(_asset("meta.json").read_text())


def load_pretrained(dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, Any, Any]:
    """``(classifier, unet, scheduler)``: the shipped CNN, diffusers ``UNet2DModel`` and ``DDPMScheduler``.

    Everything is loaded from package data; nothing is downloaded. Models are in eval mode.
    """
    clf = SmallCNN()
    with _asset("classifier.pt").open("rb") as f:
        clf.load_state_dict(torch.load(f, map_location="cpu", weights_only=True))
    unet = make_unet()
    with _asset("unet.pt").open("rb") as f:
        state = torch.load(f, map_location="cpu", weights_only=True)
    unet.load_state_dict({k: v.float() for k, v in state.items()})
    for p in list(clf.parameters()) + list(unet.parameters()):
        p.requires_grad_(False)
    if dtype != torch.float32:
        clf, unet = clf.to(dtype), unet.to(dtype)
    return clf.eval(), unet.eval(), make_scheduler()


def load_test_data(n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out MNIST-5k test split at 16 x 16 (the split the shipped models never saw)."""
    _, _, x, y = load_mnist16(seed)
    if n is not None:
        x, y = x[:n], y[:n]
    return x, y
