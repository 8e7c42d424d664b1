"""Reference LIF dynamics (spikingjelly conventions) and the rate-BP spike pass.

One LIF step, with ``lam = 1 - 1/tau`` and ``c`` the input scale (``1/tau`` when the input decays,
``1`` otherwise; IF neurons have ``lam = 1``)::

    H_t = lam * V_{t-1} + (1 - lam) * V_r + c * I_t      (V_r = 0 for soft reset)
    S_t = Heaviside(H_t - theta)                           (surrogate: alpha*sig(alpha u)(1-sig(alpha u)))
    V_t = H_t - theta * S_t                                (soft reset)
    V_t = S_t * V_r + (1 - S_t) * H_t                      (hard reset)

``detach_reset`` stops the gradient of the ``S_t`` used in the reset.

The rate-BP spike pass runs these steps without a graph and keeps, per neuron, the spike count and
the eligibility sum ``sum_t sg_t * kappa_t`` with ``kappa_0 = c`` and
``kappa_{t+1} = c + lam * a_t * kappa_t`` where ``a_t = dV_t/dH_t`` (see the package README).
With time-constant input, ``e = (1/T) sum_t sg_t kappa_t`` equals the BPTT gradient of the mean rate
with respect to that input, in every reset mode.
"""

from __future__ import annotations

from typing import Optional

import torch

#: reset modes by id, as the Triton kernel's constexpr uses them
RESET_MODES = ("soft_detached", "soft", "hard_detached", "hard")


def reset_mode_id(v_reset: Optional[float], detach_reset: bool) -> int:
    """0 soft+detached, 1 soft, 2 hard+detached, 3 hard."""
    return (0 if v_reset is None else 2) + (0 if detach_reset else 1)


def _sg(u: torch.Tensor, alpha: float) -> torch.Tensor:
    s = torch.sigmoid(alpha * u)
    return alpha * s * (1.0 - s)


class SpikeFunction(torch.autograd.Function):
    """Heaviside forward, sigmoid-derivative surrogate backward (spikingjelly ``surrogate.Sigmoid``)."""

    @staticmethod
    def forward(u: torch.Tensor, alpha: float) -> torch.Tensor:  # type: ignore[override]
        return (u >= 0).to(u.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
        u, alpha = inputs
        ctx.save_for_backward(u)
        ctx.alpha = alpha

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        (u,) = ctx.saved_tensors
        return grad * _sg(u, ctx.alpha), None


def spike_fn(u: torch.Tensor, alpha: float = 4.0) -> torch.Tensor:
    """``Heaviside(u)`` with the sigmoid surrogate gradient of steepness ``alpha``."""
    return SpikeFunction.apply(u, alpha)


def lif_bptt_reference(
    x_seq: torch.Tensor,
    *,
    lam: float,
    theta: float = 1.0,
    v_reset: Optional[float] = None,
    detach_reset: bool = True,
    alpha: float = 4.0,
    input_scale: float = 1.0,
    v0: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-step LIF with autograd through time (BPTT oracle). ``x_seq``: ``[T, ...]`` -> spikes ``[T, ...]``."""
    vr = 0.0 if v_reset is None else float(v_reset)
    v = torch.full_like(x_seq[0], vr) if v0 is None else v0
    out = []
    for t in range(x_seq.shape[0]):
        h = lam * v + (1.0 - lam) * vr + input_scale * x_seq[t] if v_reset is not None else lam * v + input_scale * x_seq[t]
        s = spike_fn(h - theta, alpha)
        sr = s.detach() if detach_reset else s
        if v_reset is None:
            v = h - theta * sr
        else:
            v = sr * vr + (1.0 - sr) * h
        out.append(s)
    return torch.stack(out)


def lif_spike_pass_reference(
    x_seq: torch.Tensor,
    v0: torch.Tensor | None = None,
    k0: torch.Tensor | None = None,
    *,
    lam: float,
    theta: float = 1.0,
    v_reset: Optional[float] = None,
    detach_reset: bool = True,
    alpha: float = 4.0,
    input_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rate-BP spike pass of one LIF layer, without a graph.

    Args:
        x_seq: input currents ``[T, ...]`` (any float dtype; state is kept in at least float32).
        v0, k0: carried membrane potential and ``kappa`` (``None``: fresh state, ``V = V_r``, ``kappa = c``).

    Returns:
        ``(spikes [T, ...] in x's dtype, spike_sum, elig_sum, v_T, kappa_T)``; the last four have the
        shape of one step and the accumulation dtype (float32, or float64 for float64 input).
        Divide the sums by the number of steps for the rate ``r`` and eligibility ``e``.
    """
    with torch.no_grad():
        acc = torch.float64 if x_seq.dtype == torch.float64 else torch.float32
        vr = 0.0 if v_reset is None else float(v_reset)
        shape = x_seq.shape[1:]
        v = torch.full(shape, vr, dtype=acc, device=x_seq.device) if v0 is None else v0.to(acc)
        k = torch.full(shape, float(input_scale), dtype=acc, device=x_seq.device) if k0 is None else k0.to(acc)
        r = torch.zeros(shape, dtype=acc, device=x_seq.device)
        e = torch.zeros(shape, dtype=acc, device=x_seq.device)
        spikes = torch.empty_like(x_seq)
        for t in range(x_seq.shape[0]):
            x = x_seq[t].to(acc)
            if v_reset is None:
                h = lam * v + input_scale * x
            else:
                h = lam * v + (1.0 - lam) * vr + input_scale * x
            u = h - theta
            s = (u >= 0).to(acc)
            g = _sg(u, alpha)
            e = e + g * k
            r = r + s
            if v_reset is None:
                a = torch.ones_like(h) if detach_reset else 1.0 - theta * g
                v = h - theta * s
            else:
                a = (1.0 - s) if detach_reset else (1.0 - s) + (vr - h) * g
                v = s * vr + (1.0 - s) * h
            k = input_scale + lam * a * k
            spikes[t] = s.to(x_seq.dtype)
        return spikes, r, e, v, k


def lif_rate_bwd_reference(grad_out: torch.Tensor, elig: torch.Tensor) -> torch.Tensor:
    """Rate-pass backward: ``grad_in = grad_out * e`` (in ``grad_out``'s dtype)."""
    return grad_out * elig.to(grad_out.dtype)
