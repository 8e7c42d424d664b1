"""``rnn_tangent_step``: fused Elman step + ``D_t Q`` with kernel/reference dispatch."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..reference.rnn_tangent import rnn_tangent_step_reference
from ._dispatch import kernel_wanted, recompute_grads

__all__ = ["RNNTangentStepFunction", "rnn_tangent_step"]


class RNNTangentStepFunction(torch.autograd.Function):
    """Triton forward, gradients by recomputing the torch reference in backward."""

    @staticmethod
    def forward(h: Tensor, q: Tensor, w_hh: Tensor, inp: Tensor, nonlinearity: str) -> tuple[Tensor, Tensor]:
        from ..kernels.rnn_tangent import rnn_tangent_fwd

        return rnn_tangent_fwd(h.contiguous(), q.contiguous(), w_hh.contiguous(), inp.contiguous(), nonlinearity)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        h, q, w_hh, inp, nonlinearity = inputs
        ctx.save_for_backward(h, q, w_hh, inp)
        ctx.nonlinearity = nonlinearity

    @staticmethod
    def backward(ctx: Any, g_h: Tensor, g_z: Tensor) -> tuple:
        h, q, w_hh, inp = ctx.saved_tensors

        def fn(h_: Tensor, q_: Tensor, w_: Tensor, i_: Tensor) -> tuple[Tensor, Tensor]:
            return rnn_tangent_step_reference(h_, q_, w_, i_, ctx.nonlinearity)

        grads = recompute_grads(fn, (h, q, w_hh, inp), (g_h, g_z), ctx.needs_input_grad[:4])
        return (*grads, None)


def rnn_tangent_step(h: Tensor, q: Tensor, w_hh: Tensor, inp: Tensor, nonlinearity: str = "tanh") -> tuple[Tensor, Tensor]:
    """``(h_next, D_t Q)`` for ``h_next = phi(h W^T + inp)``; see ``reference.rnn_tangent_step_reference``."""
    if kernel_wanted(h, q, w_hh, inp):
        return RNNTangentStepFunction.apply(h, q, w_hh, inp, nonlinearity)
    return rnn_tangent_step_reference(h, q, w_hh, inp, nonlinearity)
