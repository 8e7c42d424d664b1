"""One Elman RNN step together with the tangent-frame update ``D_t Q`` (plain torch)."""

from __future__ import annotations

import torch
from gradkit.errors import ConfigError
from torch import Tensor

__all__ = ["rnn_tangent_step_reference", "activation_slope"]


def activation_slope(a: Tensor, nonlinearity: str) -> tuple[Tensor, Tensor]:
    """Return ``(phi(a), phi'(a))`` for ``tanh`` or ``relu``.

    The tanh slope is computed as ``sech^2(a) = 4 e / (1 + e)^2`` with ``e = exp(-2|a|)``, from the
    pre-activation: ``1 - tanh(a)^2`` rounds to exactly 0 in float32 once ``|a| > 9``.
    """
    if nonlinearity == "tanh":
        e = torch.exp(-2.0 * a.abs())
        return torch.tanh(a), 4.0 * e / (1.0 + e) ** 2
    if nonlinearity == "relu":
        return torch.relu(a), (a > 0).to(a.dtype)
    raise ConfigError(f"`nonlinearity` must be 'tanh' or 'relu', got {nonlinearity!r}")


def rnn_tangent_step_reference(
    h: Tensor, q: Tensor, w_hh: Tensor, inp: Tensor, nonlinearity: str = "tanh"
) -> tuple[Tensor, Tensor]:
    """``a = h W^T + inp``, ``h' = phi(a)``, ``Z = phi'(a)[:, :, None] * (W @ Q)``.

    Args:
        h: ``(B, N)`` state.
        q: ``(B, N, k)`` tangent frame.
        w_hh: ``(N, N)`` recurrent weight (``nn.RNN.weight_hh_l0``).
        inp: ``(B, N)`` input drive ``x W_ih^T + b_ih + b_hh``.

    Returns:
        ``(h_next (B, N), z (B, N, k))``. ``z = D_t Q`` with ``D_t = diag(phi'(a)) W``, the exact
        Jacobian ``d h_{t+1} / d h_t``.
    """
    a = h @ w_hh.t() + inp
    h_next, slope = activation_slope(a, nonlinearity)
    z = slope.unsqueeze(-1) * torch.matmul(w_hh, q)
    return h_next, z
