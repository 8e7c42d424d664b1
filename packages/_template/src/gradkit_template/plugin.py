"""Hook implementations of gradkit-template (nothing heavy imported at module level)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradkit import hookimpl


def _factory(**config: Any) -> Any:
    from .transform import GradScale

    return GradScale(**config)


@hookimpl
def gradkit_register_transforms(register: Callable[..., None]) -> None:
    from .config import ScaleConfig

    register("template-scale", _factory, config=ScaleConfig, summary="skeleton: scale a module's output gradient")


def _demo(ctx: Any) -> dict[str, float]:
    import torch

    from .transform import GradScale

    model = torch.nn.Linear(4, 2)
    x = torch.randn(8, 4)
    model(x).sum().backward()
    plain = model.weight.grad.clone()
    model.zero_grad()
    with GradScale(model, factor=0.5):
        model(x).sum().backward()
    return {"grad_ratio": float(model.weight.grad.norm() / plain.norm())}


@hookimpl
def gradkit_register_demos(register: Callable[..., None]) -> None:
    register("template", _demo, summary="skeleton demo: gradient scaled by 0.5")
