"""Lyapunov exponents of RNN dynamics (differentiable QR/Benettin estimator) and diagnostics.

``h_{t+1} = f(h_t, x_{t+1})``, ``D_t = d h_{t+1} / d h_t``. A random orthonormal frame ``Q`` of k
columns is pushed forward (``Q <- D_t Q``) and re-orthonormalised every ``t_ons`` steps
(``Q, R = qr(Q)``); after a transient, ``log|R_jj|`` is accumulated and divided by the number of
accumulated steps, giving the k largest exponents ``lambda_1 >= ... >= lambda_k`` (natural log, per
step). Everything is plain autograd, so the exponents are differentiable with respect to the
parameters (through the weights and through the trajectory ``h_t``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from gradkit.errors import ArgumentTypeError, ConfigError
from torch import Tensor

from .adapters import RecurrentDynamics, as_dynamics
from .ops import qr_logdiag

__all__ = [
    "lyapunov_spectrum",
    "lyapunov_exponents",
    "flossing_loss",
    "random_frame",
    "dns_lyapunov_exponent",
    "long_term_jacobian",
    "jacobian_condition",
    "gradient_norm_vs_delay",
    "default_transient",
]


def default_transient(horizon: int) -> int:
    """The reference code's transient: ``10 + ceil(T / 10)`` steps."""
    return 10 + math.ceil(horizon / 10)


def random_frame(batch: int, state_dim: int, k: int, *, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A random orthonormal ``(B, S, k)`` frame (thin QR of a Gaussian matrix)."""
    g = torch.randn(batch, state_dim, k, generator=generator, dtype=like.dtype, device="cpu").to(like.device)
    return torch.linalg.qr(g, mode="reduced")[0]


def _check_k(k: Any, state_dim: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise ConfigError(f"`k` (number of exponents) must be an int, got {k!r}")
    if k <= 0:
        raise ConfigError(f"`k` (number of exponents) must be >= 1, got {k}")
    if k > state_dim:
        raise ConfigError(f"`k`={k} exceeds the state dimension {state_dim}; use k <= {state_dim}")
    return k


def _prepare(dynamics: Any, xs: Tensor, h0: Tensor | None, batch_first: bool | None) -> tuple[RecurrentDynamics, Tensor, Tensor]:
    dyn = as_dynamics(dynamics, batch_first=batch_first)
    if batch_first is not None and batch_first != dyn.batch_first:
        raise ConfigError(
            f"`batch_first={batch_first}` conflicts with the dynamics' batch_first={dyn.batch_first}"
        )
    xt = dyn.time_major(xs)
    B = xt.shape[1]
    if h0 is None:
        h0 = dyn.init_state(B, like=xt)
    if h0.dim() != 2 or h0.shape[0] != B or h0.shape[1] != dyn.state_dim:
        layout = "(B, T, I)" if dyn.batch_first else "(T, B, I)"
        raise ConfigError(
            f"`h0` must be (B={B}, S={dyn.state_dim}), got {tuple(h0.shape)}; check that `xs` is laid out "
            f"{layout} (batch_first={dyn.batch_first})"
        )
    return dyn, xt, h0


def _nonfinite_error(what: str) -> ConfigError:
    return ConfigError(
        f"non-finite {what} in the trajectory: the dynamics diverged or the inputs contain NaN/inf; check the "
        "inputs, lower the weight scale (gain), or use a bounded nonlinearity"
    )


def lyapunov_spectrum(
    dynamics: Any,
    xs: Tensor,
    k: int | None = None,
    *,
    h0: Tensor | None = None,
    t_ons: int = 1,
    transient: int = 0,
    q0: Tensor | None = None,
    generator: torch.Generator | None = None,
    normalize: str = "per_step",
    detach_state: bool = False,
    tiny: float = 1e-30,
    batch_first: bool | None = None,
    return_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """The k largest Lyapunov exponents along the trajectory driven by ``xs``.

    Args:
        dynamics: an ``nn.RNN``/``nn.GRU``/``nn.LSTM`` (or cell), a model containing one, or a
            :class:`~gradkit_flossing.adapters.RecurrentDynamics`.
        xs: inputs ``(T, B, I)``, or ``(B, T, I)`` when the module is ``batch_first``.
        k: number of exponents, ``1 <= k <= S`` (default ``min(S, 32)``).
        h0: initial state ``(B, S)`` (default: the adapter's zeros).
        t_ons: steps between re-orthonormalisations (1 = every step, the reference).
        transient: steps at the start whose growth is not accumulated (the state and the frame
            relax); must leave at least one accumulated step.
        q0: initial frame ``(B, S, k)`` (default: seeded random orthonormal frame).
        generator: RNG for the default ``q0``.
        normalize: ``"per_step"`` (exponents, divided by the number of accumulated steps) or
            ``"total"`` (the sum of ``log|R_jj|``, i.e. ``T * lambda``).
        detach_state: detach the trajectory ``h_t`` from the graph, so gradients flow only through
            the explicit weights and slopes in ``D_t``. NOT the paper's method (which
            differentiates through the trajectory); helps in strongly chaotic regimes.
        tiny: lower clamp of ``|R_jj|`` before the log (saturated units give ``R_jj = 0``).
        batch_first: optional assertion of the input layout; an error if it conflicts with the module.
        return_state: also return the final state and frame.

    Returns:
        ``(B, k)`` exponents, descending up to estimation noise; with ``return_state``,
        ``(exponents, h_T, Q_T)``.

    Raises:
        ConfigError: bad ``k``/``t_ons``/``transient``/layout, or a non-finite state or exponent.
    """
    dyn, xt, h = _prepare(dynamics, xs, h0, batch_first)
    T, B = xt.shape[0], xt.shape[1]
    k = _check_k(min(dyn.state_dim, 32) if k is None else k, dyn.state_dim)
    if isinstance(t_ons, bool) or not isinstance(t_ons, int) or t_ons < 1:
        raise ConfigError(f"`t_ons` must be an int >= 1, got {t_ons!r}")
    if isinstance(transient, bool) or not isinstance(transient, int) or transient < 0:
        raise ConfigError(f"`transient` must be an int >= 0, got {transient!r}")
    if transient >= T:
        raise ConfigError(f"`transient`={transient} leaves no accumulated step of the T={T} input steps; lower it")
    if normalize not in ("per_step", "total"):
        raise ConfigError(f"`normalize` must be 'per_step' or 'total', got {normalize!r}")
    if q0 is None:
        q = random_frame(B, dyn.state_dim, k, like=h, generator=generator)
    else:
        if q0.shape != (B, dyn.state_dim, k):
            raise ConfigError(f"`q0` must be (B, S, k) = {(B, dyn.state_dim, k)}, got {tuple(q0.shape)}")
        q = q0
    acc = torch.zeros(B, k, dtype=h.dtype, device=h.device)
    n_acc = 0
    last_qr = 0
    for t in range(T):
        h_next, q = dyn.step_tangent(h, xt[t], q)
        h = h_next.detach() if detach_state else h_next
        if (t + 1) % t_ons == 0 or t == T - 1:
            q, logr = qr_logdiag(q, tiny)
            # the window (last_qr, t] is accumulated when it lies after the transient
            if last_qr >= transient:
                acc = acc + logr
                n_acc += t + 1 - last_qr
            last_qr = t + 1
    if n_acc == 0:
        raise ConfigError(f"`transient`={transient} with t_ons={t_ons} leaves no accumulated window of T={T}")
    lam = acc / n_acc if normalize == "per_step" else acc
    if not bool(torch.isfinite(h).all()):
        raise _nonfinite_error("state")
    if not bool(torch.isfinite(lam).all()):
        raise _nonfinite_error("exponents")
    if return_state:
        return lam, h, q
    return lam


lyapunov_exponents = lyapunov_spectrum  # the spec's name


def flossing_loss(lam: Tensor, target: float = 0.0, reduction: str = "mean") -> Tensor:
    """``(lambda_i - target)^2`` reduced: ``"mean"`` over exponents and batch (the reference),
    ``"sum"`` over exponents then mean over batch, or ``"none"``."""
    if not isinstance(lam, torch.Tensor):
        raise ArgumentTypeError(f"`lam` must be a tensor of exponents, got {type(lam).__name__}")
    sq = (lam - target) ** 2
    if reduction == "mean":
        return sq.mean()
    if reduction == "sum":
        return sq.sum(-1).mean() if sq.dim() > 1 else sq.sum()
    if reduction == "none":
        return sq
    raise ConfigError(f"`reduction` must be 'mean', 'sum' or 'none', got {reduction!r}")


@torch.no_grad()
def dns_lyapunov_exponent(
    dynamics: Any,
    xs: Tensor,
    *,
    h0: Tensor | None = None,
    eps: float = 1e-7,
    transient: int = 0,
    generator: torch.Generator | None = None,
    batch_first: bool | None = None,
) -> Tensor:
    """``lambda_1`` by direct numerical simulation: a perturbed copy of the trajectory, renormalised to
    distance ``eps`` every step; the mean log growth after ``transient`` steps. ``(B,)``. Use float64."""
    dyn, xt, h = _prepare(dynamics, xs, h0, batch_first)
    T, B = xt.shape[0], xt.shape[1]
    if transient >= T:
        raise ConfigError(f"`transient`={transient} must be < T={T}")
    u = torch.randn(B, dyn.state_dim, generator=generator, dtype=h.dtype, device="cpu").to(h.device)
    hp = h + eps * u / u.norm(dim=1, keepdim=True)
    acc = torch.zeros(B, dtype=h.dtype, device=h.device)
    for t in range(T):
        h = dyn.step(h, xt[t])
        hp = dyn.step(hp, xt[t])
        d = (hp - h).norm(dim=1)
        if t >= transient:
            acc += torch.log(d / eps)
        hp = h + eps * (hp - h) / d.unsqueeze(1)
    return acc / (T - transient)


def long_term_jacobian(
    dynamics: Any, xs: Tensor, *, h0: Tensor | None = None, burn_in: int = 0, batch_first: bool | None = None
) -> Tensor:
    """The product ``D_{T-1} ... D_{burn_in}`` as ``(B, S, S)`` (no re-orthonormalisation: use float64
    and moderate T). Useful to check the exponents against ``log sigma_i / t`` and for conditioning."""
    dyn, xt, h = _prepare(dynamics, xs, h0, batch_first)
    T, B = xt.shape[0], xt.shape[1]
    S = dyn.state_dim
    for t in range(burn_in):
        h = dyn.step(h, xt[t])
    m = torch.eye(S, dtype=h.dtype, device=h.device).expand(B, S, S).contiguous()
    for t in range(burn_in, T):
        h, m = dyn.step_tangent(h, xt[t], m)
    return m


@torch.no_grad()
def jacobian_condition(
    dynamics: Any, xs: Tensor, k: int, *, h0: Tensor | None = None, burn_in: int = 0, batch_first: bool | None = None
) -> dict[str, Tensor]:
    """Singular values of the long-term Jacobian: ``sigma_1``, ``sigma_k`` and ``log10(sigma_1/sigma_k)`` per sequence."""
    m = long_term_jacobian(dynamics, xs, h0=h0, burn_in=burn_in, batch_first=batch_first)
    k = _check_k(k, m.shape[-1])
    s = torch.linalg.svdvals(m)
    return {
        "sigma_1": s[:, 0],
        "sigma_k": s[:, k - 1],
        "log10_cond": torch.log10(s[:, 0]) - torch.log10(s[:, k - 1].clamp_min(torch.finfo(s.dtype).tiny)),
        "singular_values": s,
    }


def gradient_norm_vs_delay(
    dynamics: Any,
    xs: Tensor,
    *,
    readout: Tensor | None = None,
    h0: Tensor | None = None,
    batch_first: bool | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``|| d (r . h_T) / d h_{T-d} ||`` for ``d = 0..T``, averaged over the batch: ``(T + 1,)``.

    This is how an error signal read out at the last step decays (or explodes) when sent back over
    ``d`` steps by backpropagation through time. ``readout`` ``r`` (``(S,)``) defaults to a random
    unit vector.
    """
    dyn, xt, h = _prepare(dynamics, xs, h0, batch_first)
    T = xt.shape[0]
    if readout is None:
        readout = torch.randn(dyn.state_dim, generator=generator, dtype=h.dtype, device="cpu").to(h.device)
        readout = readout / readout.norm()
    with torch.enable_grad():
        h = h.detach().requires_grad_(True)
        states = [h]
        for t in range(T):
            h = dyn.step(h, xt[t])
            states.append(h)
        out = (states[-1] * readout).sum()
        grads = torch.autograd.grad(out, states)
    norms = torch.stack([g.norm(dim=1).mean() for g in grads])  # index s -> delay T - s
    return norms.flip(0).detach()
