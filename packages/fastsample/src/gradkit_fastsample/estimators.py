"""Gradient estimators: the update direction in ``x_t`` for a clean-space correction ``g``.

Every estimator is ``fn(denoiser, x, t, x0, g, probe) -> direction | None``. ``direction`` is in
``x_t`` space; ``None`` means "correct ``x0_hat`` directly" (the sampler then adds the scaled ``g``
to ``x0_hat`` and keeps ``eps``). Network evaluations are counted on the denoiser
(``nfe_forward``, ``nfe_backward``).

=============  ==========================================  ==========================================
name           direction                                   cost (per inner step)
=============  ==========================================  ==========================================
``fd``         ``[D(x + delta g) - D(x)] / delta ~ J g``   1 forward, no graph (the method)
``fd_central`` ``[D(x + delta g) - D(x - delta g)]/2delta`` 2 forwards, O(h^2)
``jvp``        exact ``J g`` (double VJP)                  1 forward + 2 backward (test oracle)
``dps``        ``J^T g = -grad_x L(D(x))``                  1 forward with graph + 1 backward (DPS)
``x0_only``    ``None`` (apply ``g`` to ``x0_hat``)        0 (MPGD-style)
=============  ==========================================  ==========================================

``delta = probe / max|g|`` per sample, so the perturbation's largest entry is ``probe``; samples
with ``g == 0`` get a zero direction.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from gradkit.errors import ConfigError, UnknownNameError

from .denoiser import Denoiser

__all__ = ["ESTIMATOR_FNS", "get_estimator", "fd_direction", "fd_central_direction", "jvp_direction",
           "dps_direction", "x0_only_direction", "probe_step", "scale_direction"]

Estimator = Callable[[Denoiser, torch.Tensor, Any, torch.Tensor, torch.Tensor, float], "torch.Tensor | None"]


def _bc(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def probe_step(g: torch.Tensor, probe: float) -> torch.Tensor:
    """``delta = probe / max|g|`` per sample (``[B]``, 0 where ``g == 0``), in ``g``'s precision."""
    amax = g.detach().reshape(g.shape[0], -1).abs().amax(1)
    return torch.where(amax > 0, probe / amax.clamp_min(torch.finfo(amax.dtype).tiny), torch.zeros_like(amax))


def fd_direction(den: Denoiser, x: torch.Tensor, t: Any, x0: torch.Tensor, g: torch.Tensor, probe: float) -> torch.Tensor:
    """Forward difference ``[D(x + delta g) - x0] / delta`` (``x0 = D(x)`` is reused): one forward."""
    delta = probe_step(g, probe)
    with torch.no_grad():
        _, x0p = den.eps_x0((x + _bc(delta, g) * g).to(x.dtype), t)
    inv = torch.where(delta > 0, 1.0 / delta.clamp_min(torch.finfo(delta.dtype).tiny), torch.zeros_like(delta))
    return (x0p - x0) * _bc(inv, x0).to(x0.dtype)


def fd_central_direction(den: Denoiser, x: torch.Tensor, t: Any, x0: torch.Tensor, g: torch.Tensor, probe: float) -> torch.Tensor:
    """Central difference ``[D(x + delta g) - D(x - delta g)] / (2 delta)``: two forwards, O(h^2)."""
    delta = probe_step(g, probe)
    step = _bc(delta, g) * g
    with torch.no_grad():
        _, xp = den.eps_x0((x + step).to(x.dtype), t)
        _, xm = den.eps_x0((x - step).to(x.dtype), t)
    inv = torch.where(delta > 0, 0.5 / delta.clamp_min(torch.finfo(delta.dtype).tiny), torch.zeros_like(delta))
    return (xp - xm) * _bc(inv, xp).to(xp.dtype)


def _contiguous_pre_hook(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


def jvp_direction(den: Denoiser, x: torch.Tensor, t: Any, x0: torch.Tensor, g: torch.Tensor, probe: float,
                  *, mode: str = "double_vjp") -> torch.Tensor:
    """Exact ``J g`` (an oracle for tests and comparisons; it differentiates the denoiser).

    ``mode="double_vjp"`` (default): ``J g = d/du <J^T u, g>`` by two reverse-mode passes (counted in
    ``nfe_backward``); works wherever double backward does. ``mode="forward"``: ``torch.func.jvp``
    (forward-mode AD; its first call in a process can take tens of seconds on CPU).

    Stock diffusers modules need workarounds, applied only for the call and undone after it:
    attention runs the classic ``AttnProcessor`` (SDPA has neither a forward-AD rule nor double
    backward on CPU) and GroupNorm gets contiguous inputs (forward AD).
    """
    if mode not in ("double_vjp", "forward"):
        raise ConfigError(f"jvp_direction: `mode` must be 'double_vjp' or 'forward', got {mode!r}")
    handles = []
    model = getattr(den, "model", None)
    saved_processors = []
    if isinstance(model, torch.nn.Module):
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                handles.append(m.register_forward_pre_hook(_contiguous_pre_hook))
        saved_processors = [(m, m.processor) for m in model.modules()
                            if hasattr(m, "set_processor") and hasattr(m, "processor")]
        if saved_processors:
            from diffusers.models.attention_processor import AttnProcessor

            for m, _ in saved_processors:
                m.set_processor(AttnProcessor())
    try:
        if mode == "forward":
            with warnings.catch_warnings():  # torch 2.13 scripts its JVP decompositions on first use
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
                _, jg = torch.func.jvp(lambda z: den.eps_x0(z, t)[1], (x.to(g.dtype),), (g,))
            return jg.detach()
        with torch.enable_grad():
            xr = x.detach().to(g.dtype).requires_grad_(True)
            _, x0r = den.eps_x0(xr, t)
            u = torch.zeros_like(x0r, requires_grad=True)
            (vjp,) = torch.autograd.grad(x0r, xr, u, create_graph=True)
            (jg,) = torch.autograd.grad(vjp, u, g.to(vjp.dtype))
            den.nfe_backward += 2
        return jg.detach()
    finally:
        for h in handles:
            h.remove()
        for m, proc in saved_processors:
            m.set_processor(proc)


def dps_direction(den: Denoiser, x: torch.Tensor, t: Any, x0: torch.Tensor, g: torch.Tensor, probe: float) -> torch.Tensor:
    """``J^T g`` by one backward through the denoiser: ``-grad_x L(D(x))`` when ``g = -grad_{x0} L``."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        _, x0r = den.eps_x0(xr, t)
        (d,) = torch.autograd.grad(x0r, xr, g.to(x0r.dtype))
        den.nfe_backward += 1
    return d.detach().to(x0.dtype)


def x0_only_direction(den: Denoiser, x: torch.Tensor, t: Any, x0: torch.Tensor, g: torch.Tensor, probe: float) -> None:
    """No ``x_t`` direction: the sampler corrects ``x0_hat`` by ``g`` itself (MPGD-style)."""
    return None


ESTIMATOR_FNS: dict[str, Estimator] = {
    "fd": fd_direction,
    "fd_central": fd_central_direction,
    "jvp": jvp_direction,
    "dps": dps_direction,
    "x0_only": x0_only_direction,
}


def get_estimator(name: str) -> Estimator:
    if name not in ESTIMATOR_FNS:
        raise UnknownNameError(f"unknown estimator {name!r}; available: {sorted(ESTIMATOR_FNS)}")
    return ESTIMATOR_FNS[name]


def scale_direction(d: torch.Tensor, lr: float, how: str) -> torch.Tensor:
    """Step transform: ``lr * d / max|d|`` (``inf_norm``), ``lr * d / rms(d)`` (``l2_norm``) or ``lr * d``."""
    if how == "none":
        return lr * d
    flat = d.reshape(d.shape[0], -1)
    n = flat.abs().amax(1) if how == "inf_norm" else flat.pow(2).mean(1).sqrt()
    scale = torch.where(n > 0, lr / n.clamp_min(torch.finfo(n.dtype).tiny), torch.zeros_like(n))
    return d * _bc(scale, d).to(d.dtype)

