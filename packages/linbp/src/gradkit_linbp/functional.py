"""Autograd Functions behind LinBP.

* :class:`LinearReLUFunction`: value ``relu(x)``, derivative exactly 1 (the linearised ReLU).
* :class:`SwitchableReLUFunction`: value ``relu(x)``; its backward is linear or the true ReLU mask
  depending on a :class:`ReLUSwitch` read *at backward time*, so one recorded branch graph yields
  both the linear and the true branch VJP.
* :class:`BranchLinBPFunction`: a residual branch ``F`` whose input gradient is
  ``lam * ||J_F^T g|| / ||J_lin^T g|| * J_lin^T g`` per example (the paper's re-normalisation), or
  ``lam * J_lin^T g`` without re-normalisation. The branch is run once in forward with its own
  graph; backward takes the linear VJP and (with renorm) the true VJP from that graph.

None of these propagate gradients to parameters inside a linearised residual branch (LinBP computes
input gradients of a frozen model); activation-level linearisation leaves parameter gradients flowing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from .ops.renorm import renorm_scale

__all__ = [
    "LinearReLUFunction",
    "linear_relu",
    "ReLUSwitch",
    "SwitchableReLUFunction",
    "BranchLinBPFunction",
    "branch_linbp",
]


class LinearReLUFunction(torch.autograd.Function):
    """``relu(x)`` forward, identity backward."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        return tangent


def linear_relu(x: torch.Tensor) -> torch.Tensor:
    """The linearised ReLU: value ``relu(x)``, gradient passed through unchanged."""
    return LinearReLUFunction.apply(x)


class ReLUSwitch:
    """A mutable flag read by :class:`SwitchableReLUFunction` when its backward runs."""

    __slots__ = ("linear",)

    def __init__(self, linear: bool = True) -> None:
        self.linear = linear


class SwitchableReLUFunction(torch.autograd.Function):
    """``relu(x)`` whose backward is the identity while ``switch.linear`` else the ReLU mask."""

    @staticmethod
    def forward(x: torch.Tensor, switch: ReLUSwitch) -> torch.Tensor:  # type: ignore[override]
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.switch = inputs[1]
        ctx.save_for_backward(output)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        if ctx.switch.linear:
            return grad, None
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, out, 0), None


class _BranchGraph:
    """The branch graph recorded in forward (detached input, output, switch)."""

    __slots__ = ("xi", "out", "switch", "last", "chain")

    def __init__(self, chain: bool = False) -> None:
        self.xi: torch.Tensor | None = None
        self.out: torch.Tensor | None = None
        self.last: torch.Tensor | None = None  # output of the last act() call (chain branches)
        self.chain = chain
        self.switch = ReLUSwitch()


class BranchLinBPFunction(torch.autograd.Function):
    """Residual branch with LinBP backward. Use :func:`branch_linbp`."""

    @staticmethod
    def forward(  # type: ignore[override]
        x: torch.Tensor,
        branch: Callable[[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]], torch.Tensor],
        lam: float,
        renorm: bool,
        graph: _BranchGraph,
    ) -> torch.Tensor:
        switch = graph.switch

        def act(t: torch.Tensor) -> torch.Tensor:
            graph.last = SwitchableReLUFunction.apply(t, switch)
            return graph.last

        with torch.enable_grad():
            xi = x.detach().requires_grad_(True)
            out = branch(xi, act)
        graph.xi, graph.out = xi, out
        return out.detach()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _, _, ctx.lam, ctx.renorm, ctx.graph = inputs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        graph: _BranchGraph = ctx.graph
        if graph.out is None or not graph.out.requires_grad:
            return None, None, None, None, None
        # keep the inner graph as long as the outer one lives (a second backward must work too)
        graph.switch.linear = True
        top, g_top = graph.out, grad
        if ctx.renorm and graph.chain and graph.last is not None:
            # a chain branch reaches its input only through the last ReLU: the VJP of the part after it
            # is shared by the linear and the true gradient, so take it once
            (g_top,) = torch.autograd.grad(graph.out, graph.last, grad, retain_graph=True)
            top = graph.last
        (g_lin,) = torch.autograd.grad(top, graph.xi, g_top, retain_graph=True)
        if not ctx.renorm:
            return (g_lin if ctx.lam == 1.0 else g_lin * ctx.lam), None, None, None, None
        graph.switch.linear = False
        (g_true,) = torch.autograd.grad(top, graph.xi, g_top, retain_graph=True)
        graph.switch.linear = True
        return renorm_scale(g_lin, g_true, ctx.lam), None, None, None, None


def branch_linbp(
    x: torch.Tensor,
    branch: Callable[[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]], torch.Tensor],
    *,
    lam: float = 1.0,
    renorm: bool = True,
    chain: bool = False,
) -> torch.Tensor:
    """``branch(x, act)`` with LinBP backward; ``act`` is the ReLU the branch must use for its ReLUs.

    Forward values equal ``branch(x, torch.relu)``. Without gradient tracking the branch runs plainly.
    ``chain=True`` promises that every path from ``x`` to the output passes through the *last*
    ``act`` call (true for torchvision blocks); the backward then shares the VJP after that ReLU.
    """
    if not (torch.is_grad_enabled() and x.requires_grad):
        return branch(x, torch.relu)
    return BranchLinBPFunction.apply(x, branch, float(lam), bool(renorm), _BranchGraph(chain))
