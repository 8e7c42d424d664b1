"""Exact, memory-flat gradients through an :class:`~gradkit_diffbreak.process.IterativeProcess`.

:class:`ExactPurifyFunction` runs the chain forward without a graph, keeping only the input of every
step (optionally on the host) and the noise tape's seed. Backward walks the steps in reverse: it
recomputes step ``k`` from its stored input with the *same* noise (replayed from the tape), takes
the vector-Jacobian product and frees that one-step graph before the next. Guidance paths (the
guide, i.e. the input itself, enters every step) accumulate over steps and repeats.

This is checkpointing every step: the gradient of the discretised chain actually run (equal to
full-graph autograd with the same noise, bitwise on CPU when the guide is not used), at the memory
of one step's graph plus ``num_steps`` stored states, and about one extra forward pass of compute.
Purifier (UNet) parameters receive no gradient: this is an input-gradient tool.
"""

from __future__ import annotations

from typing import Any

import torch
from gradkit.errors import ConfigError

from .process import IterativeProcess, NoiseTape

__all__ = ["ExactPurifyFunction", "exact_purify", "purify_with_rule", "BACKWARD_RULES", "OFFLOAD"]

BACKWARD_RULES = ("exact_recompute", "full", "bpda_identity", "blind")
OFFLOAD = ("cpu", "none")


class _StateBuffer:
    """Host (or device) storage of the per-step inputs of one purification run."""

    __slots__ = ("states", "offload")

    def __init__(self, offload: str) -> None:
        self.states: list[torch.Tensor] = []
        self.offload = offload

    def put(self, t: torch.Tensor) -> None:
        self.states.append(t.detach().to("cpu") if self.offload == "cpu" else t.detach())

    def get(self, k: int, device: torch.device) -> torch.Tensor:
        return self.states[k].to(device)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.states)


class ExactPurifyFunction(torch.autograd.Function):
    """``exact_recompute``: per-step recompute + VJP with replayed noise (see module docstring).

    Inputs: ``(u, guide, process, tape, buffer)``; ``u`` the chain's input, ``guide`` the guidance
    reference (or ``None``). Output: the chain's final state.
    """

    @staticmethod
    def forward(u: torch.Tensor, guide: torch.Tensor | None, process: IterativeProcess, tape: NoiseTape, buffer: _StateBuffer) -> torch.Tensor:  # type: ignore[override]
        s = u
        with torch.no_grad():
            for k in range(process.num_steps()):
                buffer.put(s)
                s = process.step(k, s, guide, tape)
        return s

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _u, guide, process, tape, buffer = inputs
        ctx.process, ctx.tape, ctx.buffer = process, tape, buffer
        ctx.has_guide = guide is not None
        if guide is not None:
            ctx.save_for_backward(guide)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        process: IterativeProcess = ctx.process
        guide = ctx.saved_tensors[0] if ctx.has_guide else None
        want_guide = bool(ctx.has_guide and ctx.needs_input_grad[1] and process.uses_guide)
        g = grad
        g_guide: torch.Tensor | None = None
        for k in reversed(range(process.num_steps())):
            s = ctx.buffer.get(k, grad.device).requires_grad_(True)
            gd = None if guide is None else guide.detach().requires_grad_(want_guide)
            with torch.enable_grad():
                y = process.step(k, s, gd, ctx.tape)
            inputs = (s, gd) if want_guide else (s,)
            got = torch.autograd.grad(y, inputs, g, allow_unused=True)
            g = got[0] if got[0] is not None else torch.zeros_like(s)
            if want_guide and got[1] is not None:
                g_guide = got[1] if g_guide is None else g_guide + got[1]
            del y, got, s, gd
        if ctx.has_guide and ctx.needs_input_grad[1] and g_guide is None:
            g_guide = torch.zeros_like(guide)
        return g, g_guide, None, None, None


def exact_purify(
    process: IterativeProcess, u: torch.Tensor, guide: torch.Tensor | None, tape: NoiseTape, *, offload: str = "cpu"
) -> tuple[torch.Tensor, _StateBuffer]:
    """Run ``process`` on ``u`` with the exact per-step-recompute backward; returns (output, state buffer)."""
    if offload not in OFFLOAD:
        raise ConfigError(f"offload={offload!r} is invalid; use one of {list(OFFLOAD)}")
    buf = _StateBuffer(offload)
    out = ExactPurifyFunction.apply(u, guide, process, tape, buf)
    return out, buf


def purify_with_rule(
    process: IterativeProcess,
    u: torch.Tensor,
    guide: torch.Tensor | None,
    tape: NoiseTape,
    *,
    backward: str = "exact_recompute",
    offload: str = "cpu",
) -> torch.Tensor:
    """The chain's output with the gradient rule ``backward``:

    - ``exact_recompute``: :class:`ExactPurifyFunction` (exact, flat memory).
    - ``full``: plain autograd through every step (the oracle; memory grows with the steps).
    - ``bpda_identity``: forward purified, backward identity (BPDA, Athalye et al. 2018).

    (``blind``, which differentiates the bare classifier, is handled by the classifier wrapper.)
    """
    needs_grad = torch.is_grad_enabled() and (u.requires_grad or (guide is not None and guide.requires_grad))
    if not needs_grad:
        with torch.no_grad():
            return process.run(u, guide, tape)
    if backward == "exact_recompute":
        return exact_purify(process, u, guide, tape, offload=offload)[0]
    if backward == "full":
        return process.run(u, guide, tape)
    if backward in ("bpda_identity", "blind"):
        with torch.no_grad():
            out = process.run(u.detach(), None if guide is None else guide.detach(), tape)
        return u + (out - u).detach()
    raise ConfigError(f"backward={backward!r} is invalid; use one of {list(BACKWARD_RULES)}")
