"""Functional pieces: the rate node (value = firing rate, derivative = eligibility), the reliable-exit
teacher and the masked distillation loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from gradkit.errors import ConfigError

from .ops.lif_rate import lif_rate_bwd

__all__ = ["RateNodeFunction", "rate_node", "reliable_teacher", "masked_kd"]


class RateNodeFunction(torch.autograd.Function):
    """``y = rate`` (the spike pass's firing rate) with ``dy/dI = e`` (diagonal; the eligibility)."""

    @staticmethod
    def forward(i_bar: torch.Tensor, rate: torch.Tensor, elig: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return rate.to(dtype=i_bar.dtype, copy=True)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
        _, _, elig = inputs
        ctx.save_for_backward(elig)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        (elig,) = ctx.saved_tensors
        return lif_rate_bwd(grad, elig), None, None


def rate_node(i_bar: torch.Tensor, rate: torch.Tensor, elig: torch.Tensor) -> torch.Tensor:
    """Rate-pass LIF: returns ``rate`` (shape of ``i_bar``) whose gradient w.r.t. ``i_bar`` is ``grad * elig``.

    Args:
        i_bar: time-averaged input current of the layer, ``[B, ...]`` (the only tensor with a graph).
        rate: firing rate from the spike pass, same shape.
        elig: eligibility ``e ~ d rate / d i_bar`` from the spike pass, same shape.
    """
    if rate.shape != i_bar.shape or elig.shape != i_bar.shape:
        raise ConfigError(
            f"rate_node: `rate` {tuple(rate.shape)} and `elig` {tuple(elig.shape)} must have the shape of "
            f"`i_bar` {tuple(i_bar.shape)}; run the spike pass on the same batch first"
        )
    return RateNodeFunction.apply(i_bar, rate.detach(), elig.detach())


def reliable_teacher(
    exits: Sequence[torch.Tensor], y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reliable-exit teacher: per sample, the mean logits of the exits that classify it correctly.

    Args:
        exits: K logit tensors ``[B, C]`` (branches then the main head).
        y: labels ``[B]``.

    Returns:
        ``(teacher [B, C] detached, valid [B] bool, n_correct [B] long)``; samples that no exit gets
        right have a zero teacher and ``valid = False`` (they are left out of the distillation).
    """
    if len(exits) == 0:
        raise ConfigError("reliable_teacher: `exits` is empty; pass at least one [B, C] logit tensor")
    z = torch.stack([e.detach() for e in exits])  # [K, B, C]
    if z.dim() != 3 or y.shape != z.shape[1:2]:
        raise ConfigError(
            f"reliable_teacher: exits must be [B, C] and y [B]; got exits {tuple(z.shape[1:])}, y {tuple(y.shape)}"
        )
    ok = z.argmax(-1) == y.unsqueeze(0)  # [K, B]
    n = ok.sum(0)
    valid = n > 0
    t = (z * ok.unsqueeze(-1).to(z.dtype)).sum(0) / n.clamp(min=1).unsqueeze(-1).to(z.dtype)
    return t, valid, n


def masked_kd(z: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor, tau: float = 3.0) -> torch.Tensor:
    """``tau^2 * mean_{valid b} KL(softmax(t_b/tau) || softmax(z_b/tau))``; exactly 0 (with a graph) if none is valid.

    The reference implementation takes the mean of an empty selection here and returns NaN.
    """
    if tau <= 0:
        raise ConfigError(f"masked_kd: `tau` must be > 0, got {tau!r}")
    if not bool(valid.any()):
        return z.sum() * 0.0
    zs = z[valid] / tau
    ts = teacher[valid].detach() / tau
    p_t = F.softmax(ts, dim=-1)
    kl = (p_t * (F.log_softmax(ts, dim=-1) - F.log_softmax(zs, dim=-1))).sum(-1)
    return kl.mean() * (tau * tau)
