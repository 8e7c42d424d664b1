"""LinBP attack presets on top of ``gradkit.attack`` (I-FGSM, PGD, MI-FGSM; optional ILA second stage)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from gradkit.errors import ConfigError
from torch import nn

from .ila import ILA
from .transform import LinBP

__all__ = ["linbp_attack", "ila"]


def ila(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    reference: torch.Tensor,
    *,
    layer: str,
    eps: float,
    alpha: float,
    steps: int = 100,
    norm: str = "linf",
    normalize_guide: bool = False,
    **attack_kwargs: Any,
) -> Any:
    """ILA stage 2 through ``gradkit.attack``: start at ``x`` and push ``h(x) - h(x)`` along ``h(reference) - h(x)``.

    Returns the core's ``AttackResult`` (``success`` = misclassification of ``y`` by ``model``).
    """
    import gradkit

    t = ILA(layer=layer, normalize_guide=normalize_guide, reference=reference)
    return gradkit.attack(model, x, y, method="ifgsm", eps=eps, alpha=alpha, steps=steps, norm=norm,
                          transforms=[t], **attack_kwargs)


def linbp_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str = "ifgsm",
    start: int | str | None = 0,
    renorm: bool = True,
    lam: float = 1.0,
    eps: float = 0.03,
    alpha: float = 1.0 / 255,
    steps: int = 100,
    norm: str = "linf",
    targeted: bool = False,
    ila_layer: str | None = None,
    ila_steps: int | None = None,
    transforms: list[Any] | None = None,
    **attack_kwargs: Any,
) -> Any:
    """Stage 1: ``gradkit.attack(method=...)`` with LinBP from ``start`` (``None`` = plain BP).

    Stage 2 (when ``ila_layer`` is given): :func:`ila` from the clean images guided by the stage-1
    examples, ``ila_steps`` iterations (default ``steps``), same ``eps``/``alpha``/``norm``, plain BP.
    ILA is untargeted; combining it with ``targeted=True`` is refused.
    """
    import gradkit

    if ila_layer is not None and targeted:
        raise ConfigError("linbp_attack: ILA (`ila_layer`) is an untargeted second stage; use targeted=False")
    extra: list[Any] = list(transforms or [])
    if start is not None:
        extra.append(LinBP(start=start, renorm=renorm, lam=lam))
    res = gradkit.attack(model, x, y, method=method, eps=eps, alpha=alpha, steps=steps, norm=norm, targeted=targeted,
                         transforms=extra, **attack_kwargs)
    if ila_layer is None:
        return res
    return ila(model, x, y, res.x_adv, layer=ila_layer, eps=eps, alpha=alpha, steps=ila_steps or steps, norm=norm)


def success_on(models: dict[str, Callable[[torch.Tensor], torch.Tensor]], x_adv: torch.Tensor, y: torch.Tensor,
               *, targeted: bool = False, batch: int = 500) -> dict[str, float]:
    """Success rate (%) of ``x_adv`` on each model: misclassification (or hitting ``y`` when targeted)."""
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, m in models.items():
            pred = torch.cat([m(x_adv[i : i + batch]).argmax(1) for i in range(0, len(x_adv), batch)])
            hit = pred.eq(y) if targeted else pred.ne(y)
            out[name] = 100.0 * hit.float().mean().item()
    return out
