"""Per-token log-probabilities of a logits chunk and the in-place weighted CE gradient.

``weighted_ce_fwd`` / ``weighted_ce_bwd`` are the raw ops StreamBP's head loop uses (the
backward overwrites the logits chunk with dL/dlogits, so only one chunk x vocab block is ever
live). ``token_logprobs`` is the differentiable form (``TokenLogprobsFunction``).
Float64 inputs always use the reference (the kernel computes in float32).
"""

from __future__ import annotations

import torch
from gradkit.kernels import use_triton

from gradkit_streambp.reference.weighted_ce import token_logprobs_ref, weighted_ce_bwd_ref


def _kernel_ok(*ts: torch.Tensor) -> bool:
    return ts[0].dtype != torch.float64 and use_triton(*ts)


def weighted_ce_fwd(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100):
    """``(logp, lse)`` for ``logits`` (N, V), ``targets`` (N,)."""
    if _kernel_ok(logits, targets):
        from gradkit_streambp.kernels.weighted_ce import weighted_ce_fwd as k

        return k(logits.contiguous(), targets, ignore_index)
    return token_logprobs_ref(logits, targets, ignore_index)


def weighted_ce_bwd(logits, targets, lse, grad_logp, ignore_index: int = -100):
    """Overwrite ``logits`` (N, V) with ``grad_logp * (onehot(targets) - softmax(logits))``."""
    if _kernel_ok(logits, targets) and logits.is_contiguous():
        from gradkit_streambp.kernels.weighted_ce import weighted_ce_bwd as k

        return k(logits, targets, lse, grad_logp, ignore_index)
    return weighted_ce_bwd_ref(logits, targets, lse, grad_logp, ignore_index)


class TokenLogprobsFunction(torch.autograd.Function):
    """``logp[n] = log_softmax(logits[n])[targets[n]]`` (0 where ignored), differentiable in logits."""

    @staticmethod
    def forward(logits, targets, ignore_index):
        logp, lse = weighted_ce_fwd(logits, targets, ignore_index)
        return logp, lse

    @staticmethod
    def setup_context(ctx, inputs, output):
        logits, targets, ignore_index = inputs
        ctx.save_for_backward(logits, targets, output[1])
        ctx.ignore_index = ignore_index
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, grad_logp, _grad_lse):
        logits, targets, lse = ctx.saved_tensors
        buf = logits.detach().clone()
        weighted_ce_bwd(buf, targets, lse, grad_logp, ctx.ignore_index)
        return buf, None, None


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Differentiable token log-probabilities (N,) of ``targets`` under ``logits`` (N, V)."""
    return TokenLogprobsFunction.apply(logits, targets, ignore_index)[0]
