"""``gradkit.objectives`` in StreamBP's chunked form.

Every core objective is ``loss = outer(S)`` with per-sequence sums ``S_b = sum_t token_loss(logp_bt)``.
StreamBP evaluates it chunk by chunk along the sequence:

- linear ``outer`` (SFT, GRPO; ``ctx.linear``): one head pass; a chunk's contribution is
  ``token_loss(logp[:, s:e]).sum()``.
- nonlinear ``outer`` (DPO): pass 1 (no grad) gets every ``S_b`` and the fixed coefficients
  ``c_b = d outer / d S_b`` by one autograd call on the B-vector; pass 2 backpropagates
  ``sum_b c_b * token_loss(logp[b, s:e]).sum()`` per chunk. The loss value is ``outer(S)`` from
  pass 1. Valid for any number of pairs (the coefficient is per sequence, never mixed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from gradkit.errors import ConfigError

__all__ = ["StreamObjective", "CoreObjective", "as_stream_objective"]


@dataclass
class StreamState:
    targets: torch.Tensor
    ctx: Any


class StreamObjective:
    """What the engine needs from an objective (see the module docstring)."""

    two_pass: bool = False

    def prepare(self, batch: dict, normalizer: float | None) -> StreamState:  # pragma: no cover
        raise NotImplementedError

    def chunk_loss(self, logp: torch.Tensor, s: int, e: int, state: StreamState, coef: Any) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def coefficients(self, logp_all: torch.Tensor, state: StreamState) -> Any:
        return None

    def loss_value(self, chunk_sum: torch.Tensor, coef: Any, state: StreamState) -> torch.Tensor:
        return chunk_sum


class CoreObjective(StreamObjective):
    """Wraps a ``gradkit.objectives.Objective`` (``CausalLMSFT``, ``GRPO``, ``DPO``, or any subclass
    whose ``prepare`` returns an ``ObjectiveContext``)."""

    def __init__(self, objective: Any) -> None:
        self.objective = objective
        self.two_pass = False

    def prepare(self, batch, normalizer):
        ctx = self.objective.prepare(batch, normalizer)
        self.two_pass = not ctx.linear
        return StreamState(ctx.targets, ctx)

    def chunk_loss(self, logp, s, e, state, coef):
        part = state.ctx.token_loss(logp, slice(s, e))
        if coef is None:
            return part.sum()
        return (part * coef["c"].to(part.dtype).unsqueeze(1)).sum()

    def coefficients(self, logp_all, state):
        with torch.no_grad():
            seq = state.ctx.token_loss(logp_all, slice(None)).sum(dim=1)
        leaf = seq.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = state.ctx.outer(leaf)
            (c,) = torch.autograd.grad(loss, [leaf])
        return {"c": c.detach(), "loss": loss.detach()}

    def loss_value(self, chunk_sum, coef, state):
        if coef is None:
            return chunk_sum
        return coef["loss"]


def as_stream_objective(objective: Any) -> StreamObjective:
    """The chunked form of ``objective``, or a ConfigError naming what is supported."""
    if isinstance(objective, StreamObjective):
        return objective
    try:
        from gradkit.objectives import Objective
    except ImportError:  # pragma: no cover
        Objective = ()  # type: ignore[assignment]
    if isinstance(objective, Objective) and type(objective).prepare is not Objective.prepare and type(objective).__name__ != "ClassificationCE":
        return CoreObjective(objective)
    raise ConfigError(
        f"`objective` {type(objective).__name__} has no per-token form; StreamBP supports gradkit.objectives "
        "CausalLMSFT, GRPO and DPO (objectives whose prepare() returns an ObjectiveContext)"
    )
