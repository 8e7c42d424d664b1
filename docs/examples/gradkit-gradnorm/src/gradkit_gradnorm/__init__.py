"""Example gradkit plugin: a gradient-norm penalty as an extra loss term, plus a logged metric."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradkit
from gradkit.config import Config, check_positive
from gradkit.context import LossTerm, Step, StepResult
from gradkit.transforms import GradientTransform

__all__ = ["GradNormConfig", "GradNormPenalty"]


@dataclass(frozen=True)
class GradNormConfig(Config):
    weight: float = 0.01

    def __post_init__(self) -> None:
        check_positive("GradNormPenalty", "weight", self.weight, allow_zero=True)


class GradNormPenalty(GradientTransform):
    """Loop-only transform: its presence in ``transforms=`` switches the hooks below on."""

    name = "gradnorm"

    def __init__(self, module: Any = None, *, weight: float = 0.01) -> None:
        super().__init__(module, GradNormConfig(weight=weight))


@gradkit.hookimpl
def gradkit_register_transforms(register: Callable[..., None]) -> None:
    register("gradnorm", GradNormPenalty, config=GradNormConfig,
             summary="example: penalise the squared norm of the parameter gradient")


@gradkit.hookimpl
def gradkit_loss_terms(step: Step, outputs: Any) -> LossTerm | None:
    import torch

    t = step.transform("gradnorm")
    if t is None:
        return None
    loss = step.compute_loss(outputs)
    params = [p for p in step.model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, create_graph=True)
    penalty = sum((g * g).sum() for g in grads)
    return LossTerm("gradnorm", penalty, weight=t.config.weight)


@gradkit.hookimpl
def gradkit_step_report(step: Step, result: StepResult) -> None:
    if step.transform("gradnorm") is not None:
        result.metrics["gradnorm/param_grad_norm"] = result.metrics.get("grad_norm", float("nan"))
