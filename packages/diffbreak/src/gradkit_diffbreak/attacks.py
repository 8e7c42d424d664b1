"""PGD with EOT over purification noise, run through ``gradkit.attack`` with the ``"diffbreak"`` transform."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .evaluation import EvalRecord, evaluate
from .model import PurifiedClassifier
from .transform import DiffBreak

__all__ = ["pgd_eot", "AttackReport"]


@dataclass
class AttackReport:
    """``x_adv``, the evaluation of ``x_adv`` with ``eval_n`` fresh purifications, and per-input first-success iteration (-1: none)."""

    x_adv: torch.Tensor
    record: EvalRecord
    first_success: torch.Tensor | None
    losses: list[float]


def pgd_eot(
    model: PurifiedClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.2,
    alpha: float | None = None,
    steps: int = 10,
    norm: str = "linf",
    backward: str = "exact_recompute",
    copies: int = 8,
    eot_iters: int = 1,
    loss: str = "ce",
    stop: str = "none",
    eval_copies: int = 16,
    eval_n: int = 32,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> AttackReport:
    """PGD (random start) where every gradient is the EOT mean over ``copies x eot_iters`` purifications.

    Runs ``gradkit.attack(model, x, y, method="pgd", transforms=[DiffBreak(...)])`` and then evaluates
    the result with ``eval_n`` fresh purifications per input (single / MV / all-correct).
    ``stop="single"`` or ``"majority_vote"`` freezes each input at its first success under that
    protocol (checked with ``eval_copies`` purifications after every iteration).
    """
    import gradkit

    t = DiffBreak(backward=backward, copies=copies, eot_iters=eot_iters, loss=loss, stop=stop, eval_copies=eval_copies)
    result = gradkit.attack(
        model, x, y, method="pgd", eps=eps, alpha=alpha if alpha is not None else eps / 4, steps=steps, norm=norm,
        targeted=targeted, transforms=[t], generator=generator,
    )
    first = t.last_first_success if stop != "none" else None
    rec = evaluate(model, result.x_adv, y, n=eval_n, targeted=targeted)
    return AttackReport(x_adv=result.x_adv, record=rec, first_success=first, losses=result.losses)
