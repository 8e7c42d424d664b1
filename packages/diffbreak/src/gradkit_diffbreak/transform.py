"""The ``"diffbreak"`` transform: DiffBreak's gradient and evaluation policy inside ``gradkit.attack``.

Attached to a :class:`~gradkit_diffbreak.model.PurifiedClassifier`, it sets the module's gradient
rule and output mode (restored exactly on ``remove()``). While it is active in an attack loop
(``gradkit.attack(model, x, y, transforms=[t])``), the plugin's hooks

- ``gradkit_input_grad``: return the EOT gradient under the chosen rule: per-copy loss averaged
  over ``copies`` purifications in the batch and over ``eot_iters`` evaluations;
- ``gradkit_attack_step`` (only with ``stop != "none"``): take the default step, re-evaluate with
  ``eval_copies`` fresh purifications, and freeze every input at its first success under the
  protocol (the resubmission model: keep the first working adversarial example);
- ``gradkit_attack_finish``: store the per-input first-success iteration in ``state.stash``.
"""

from __future__ import annotations

from typing import Any

import torch
from gradkit.context import StashKey
from gradkit.errors import ConfigError
from gradkit.transforms import GradientTransform, TransformHandle

from .config import DiffBreakConfig
from .evaluation import evaluate
from .model import PurifiedClassifier

__all__ = ["DiffBreak", "margin_loss", "DONE", "FIRST_SUCCESS", "FROZEN"]

DONE: StashKey[torch.Tensor] = StashKey("diffbreak.done")
FROZEN: StashKey[torch.Tensor] = StashKey("diffbreak.frozen")
FIRST_SUCCESS: StashKey[torch.Tensor] = StashKey("diffbreak.first_success")


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CW margin (kappa = inf), per example: ``max_{j != y} z_j - z_y`` (ascend to fool)."""
    zy = logits.gather(1, y.view(-1, 1)).squeeze(1)
    other = logits.scatter(1, y.view(-1, 1), float("-inf")).max(1).values
    return other - zy


class DiffBreak(GradientTransform):
    """DiffBreak's attack policy (arXiv 2411.16598) for ``gradkit.attack``; see the module docstring.

    Args:
        module: optional :class:`PurifiedClassifier` for ``with DiffBreak(model, ...):`` use.
        **config: fields of :class:`~gradkit_diffbreak.config.DiffBreakConfig`.
    """

    name = "diffbreak"

    def __init__(self, module: torch.nn.Module | None = None, **config: Any) -> None:
        super().__init__(module, DiffBreakConfig(**config))
        self.last_first_success: torch.Tensor | None = None

    def _attach(self, module: torch.nn.Module, handle: TransformHandle) -> None:
        if not isinstance(module, PurifiedClassifier):
            raise ConfigError(
                f"the 'diffbreak' transform attaches to a gradkit_diffbreak.PurifiedClassifier, got {type(module).__name__}"
            )
        before = (module.backward, module.output, module.offload, module.copies)
        module.backward = self.config.backward
        module.output = self.config.output
        module.offload = self.config.offload
        if self.config.copies:
            module.copies = self.config.copies

        def undo() -> None:
            module.backward, module.output, module.offload, module.copies = before

        handle.add(undo)

    # -- used by the hooks ---------------------------------------------------------------------
    def _model(self, state: Any) -> PurifiedClassifier:
        m = state.model
        if not isinstance(m, PurifiedClassifier):
            raise ConfigError("the 'diffbreak' transform needs gradkit.attack's model to be a PurifiedClassifier")
        return m

    def _per_example_loss(self, state: Any, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.config.loss
        if loss == "margin":
            return margin_loss(logits, y)
        if loss == "ce":
            return torch.nn.functional.cross_entropy(logits, y, reduction="none")
        return state.loss_fn(logits, y)

    def input_grad(self, state: Any) -> torch.Tensor:
        model = self._model(state)
        n = self.config.copies or model.copies
        b = state.x_adv.shape[0]
        yy = state.y.repeat_interleave(n)
        total = torch.zeros_like(state.x_adv)
        loss_sum = 0.0
        for _ in range(self.config.eot_iters):
            x = state.x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = model.logits_per_copy(x, copies=n, backward=self.config.backward)
                per = self._per_example_loss(state, logits.flatten(0, 1), yy).view(b, n).mean(1)
                if state.targeted:
                    per = -per
                (g,) = torch.autograd.grad(per.sum(), x)
            total += g
            loss_sum += float(per.detach().sum())
        state.losses.append(loss_sum / (self.config.eot_iters * max(1, b)))
        return total / self.config.eot_iters

    def attack_start(self, state: Any) -> None:
        b = state.x_clean.shape[0]
        state.stash[DONE] = torch.zeros(b, dtype=torch.bool, device=state.x_clean.device)
        state.stash[FROZEN] = state.x_adv.detach().clone()
        state.stash[FIRST_SUCCESS] = torch.full((b,), -1, dtype=torch.long)
        self.last_first_success = state.stash[FIRST_SUCCESS]  # same tensor, filled in place

    def attack_step(self, state: Any) -> torch.Tensor | None:
        if self.config.stop == "none":
            return None
        from gradkit.loops.attack import default_attack_step

        model = self._model(state)
        done = state.stash[DONE]
        frozen = state.stash[FROZEN]
        new = default_attack_step(state)
        shape = (-1,) + (1,) * (new.dim() - 1)
        new = torch.where(done.view(shape), frozen, new)
        rec = evaluate(model, new, state.y, n=self.config.eval_copies, targeted=state.targeted)
        succ = rec.success(self.config.stop).to(done.device)
        newly = succ & ~done
        frozen[newly] = new[newly]
        first = state.stash[FIRST_SUCCESS]
        first[newly.cpu()] = state.index
        state.stash[DONE] = done | succ
        return new
