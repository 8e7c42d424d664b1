"""Closed-form denoisers (exact MMSE ``D_t``) for tests and illustrations.

- :class:`GaussianDenoiser`: ``x0 ~ N(mu, Sigma)``; ``D_t`` is affine with the symmetric Jacobian
  ``J_t = sqrt(ab) Sigma (ab Sigma + (1 - ab) I)^-1`` (= ``sqrt(ab)/(1-ab) Cov[x0 | x_t]``).
- :class:`GaussianMixtureDenoiser`: isotropic Gaussian mixture; ``D_t`` is non-linear and its
  Jacobian is symmetric (second-order Tweedie).

Both are :class:`~gradkit_fastsample.denoiser.Denoiser` objects (``prediction_type="sample"``) over
``[B, ...]`` tensors flattened to ``d`` features; they work in any float dtype and with autograd
and ``torch.func``.
"""

from __future__ import annotations

from typing import Any

import torch
from gradkit.errors import ConfigError

from .denoiser import Denoiser

__all__ = ["GaussianDenoiser", "GaussianMixtureDenoiser", "linear_alphas_cumprod"]


def linear_alphas_cumprod(n: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """``cumprod(1 - linspace(beta_start, beta_end, n))`` in float64."""
    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, n, dtype=torch.float64), 0)


class GaussianDenoiser(Denoiser):
    """Exact denoiser of ``x0 ~ N(mean, cov)`` (``mean`` ``[d]``, ``cov`` ``[d, d]`` SPD)."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor, alphas_cumprod: torch.Tensor | None = None) -> None:
        super().__init__(linear_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod, "sample")
        if mean.dim() != 1 or cov.shape != (mean.numel(), mean.numel()):
            raise ConfigError(f"GaussianDenoiser: need mean [d] and cov [d, d], got {tuple(mean.shape)} and {tuple(cov.shape)}")
        self.mean = mean.double()
        self.cov = cov.double()

    def jacobian(self, t: Any) -> torch.Tensor:
        """``J_t`` as a dense ``[d, d]`` float64 matrix."""
        ab = self.alpha_bar(t)
        d = self.cov.shape[0]
        return ab**0.5 * self.cov @ torch.linalg.inv(ab * self.cov + (1 - ab) * torch.eye(d, dtype=torch.float64))

    def model_output(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        ab = self.alpha_bar(t)
        flat = x.reshape(x.shape[0], -1)
        j = self.jacobian(t).to(flat.dtype)
        mu = self.mean.to(flat.dtype)
        x0 = mu + (flat - ab**0.5 * mu) @ j.T
        return x0.reshape(x.shape)


class GaussianMixtureDenoiser(Denoiser):
    """Exact denoiser of an isotropic Gaussian mixture ``sum_k w_k N(means[k], stds[k]^2 I)``."""

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor | None = None,
                 alphas_cumprod: torch.Tensor | None = None) -> None:
        super().__init__(linear_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod, "sample")
        if means.dim() != 2 or stds.shape != (means.shape[0],):
            raise ConfigError(f"GaussianMixtureDenoiser: need means [K, d] and stds [K], got {tuple(means.shape)}, {tuple(stds.shape)}")
        k = means.shape[0]
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else weights.double() / weights.double().sum()
        self.means, self.stds, self.weights = means.double(), stds.double(), w

    def model_output(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        ab = self.alpha_bar(t)
        flat = x.reshape(x.shape[0], -1)
        dt = flat.dtype
        mu, s2, w = self.means.to(dt), self.stds.to(dt) ** 2, self.weights.to(dt)
        v = ab * s2 + (1 - ab)  # [K] variance of x_t given component
        diff = flat[:, None, :] - ab**0.5 * mu[None]  # [B, K, d]
        d = flat.shape[1]
        logp = torch.log(w) - 0.5 * diff.pow(2).sum(-1) / v - 0.5 * d * torch.log(v)
        r = torch.softmax(logp, dim=1)  # [B, K]
        cond = mu[None] + (ab**0.5 * s2 / v)[None, :, None] * diff  # [B, K, d]
        return (r[..., None] * cond).sum(1).reshape(x.shape)
