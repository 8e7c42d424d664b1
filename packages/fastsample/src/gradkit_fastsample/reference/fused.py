"""Reference implementations (float32 plain torch) of the three fused steps of the sampler.

All tensors are ``[B, ...]``; per-sample quantities are ``[B]`` float32. Computation happens in
float32 whatever the input dtype; outputs have the dtype of ``x``.
"""

from __future__ import annotations

import torch

__all__ = ["per_sample_amax", "masked_error_probe_ref", "fd_update_ref", "ddim_transition_ref"]


def per_sample_amax(v: torch.Tensor) -> torch.Tensor:
    """``max |v|`` over every dimension but the first: ``[B]`` float32."""
    return v.detach().float().reshape(v.shape[0], -1).abs().amax(dim=1)


def _bcast(s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return s.view(-1, *([1] * (like.dim() - 1)))


def masked_error_probe_ref(
    x: torch.Tensor, x0: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, h: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inpainting error and finite-difference probe point.

    ``g = mask * (y - x0)``; ``delta = h / max|g|`` per sample (0 where ``g`` is all zero);
    ``x_probe = x + delta * g``. ``mask`` and ``y`` broadcast to ``x0``.

    Returns ``(g float32, x_probe (dtype of x), delta [B] float32)``.
    """
    g = mask.float() * (y.float() - x0.float())
    g = g.expand_as(x0).contiguous() if g.shape != x0.shape else g
    amax = per_sample_amax(g)
    delta = torch.where(amax > 0, h / amax.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(amax))
    x_probe = (x.float() + _bcast(delta, g) * g).to(x.dtype)
    return g, x_probe, delta


def fd_update_ref(x: torch.Tensor, x0_probe: torch.Tensor, x0: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """Infinity-normalised finite-difference update.

    ``d = x0_probe - x0`` (proportional to ``J g``; the probe size cancels under the normalisation),
    ``x_new = x + lr * d / max|d|`` per sample; samples with ``d == 0`` are left unchanged.
    ``lr``: ``[B]`` float32 (or a scalar tensor).
    """
    d = x0_probe.float() - x0.float()
    amax = per_sample_amax(d)
    lr = torch.as_tensor(lr, dtype=torch.float32, device=x.device).expand(x.shape[0])
    scale = torch.where(amax > 0, lr / amax.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(amax))
    return (x.float() + _bcast(scale, d) * d).to(x.dtype)


def ddim_transition_ref(
    x0: torch.Tensor,
    eps: torch.Tensor,
    noise: torch.Tensor | None,
    a: torch.Tensor,
    b: torch.Tensor,
    s: torch.Tensor,
) -> torch.Tensor:
    """``x_prev = a * x0 + b * eps + s * noise`` with per-sample coefficients ``[B]`` (DDIM with sigma)."""
    a, b, s = (torch.as_tensor(c, dtype=torch.float32, device=x0.device).expand(x0.shape[0]) for c in (a, b, s))
    out = _bcast(a, x0) * x0.float() + _bcast(b, x0) * eps.float()
    if noise is not None:
        out = out + _bcast(s, x0) * noise.float()
    return out.to(x0.dtype)
