"""Denoiser adapters: ``eps_x0(x, t) -> (eps, x0_hat)`` for diffusers UNets, plain callables and schedules.

The Tweedie estimate of the clean sample is ``x0_hat = (x - sqrt(1 - ab_t) * eps) / sqrt(ab_t)``
with ``ab_t = scheduler.alphas_cumprod[t]`` read at the *same* ``t`` the network receives (the
reference diffusers notebook reads it at ``t + 49``; we do not copy that). ``epsilon``,
``v_prediction`` and ``sample`` parameterisations are converted to the ``(eps, x0)`` pair.
Both outputs are float32 whatever the network's dtype (finite differences need the precision).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from gradkit.errors import ArgumentTypeError, ConfigError

__all__ = ["Denoiser", "UNetDenoiser", "CallableDenoiser", "as_denoiser", "alphas_cumprod_of"]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def alphas_cumprod_of(scheduler: Any) -> torch.Tensor:
    """``scheduler.alphas_cumprod`` as float64, or a ConfigError for sigma-parameterised schedulers."""
    ab = getattr(scheduler, "alphas_cumprod", None)
    if ab is None:
        raise ConfigError(
            f"scheduler: {type(scheduler).__name__} has no `alphas_cumprod`; use a variance-preserving diffusers "
            "scheduler, e.g. DDIMScheduler.from_config(scheduler.config)"
        )
    return torch.as_tensor(ab).detach().to("cpu", torch.float64)


def _t_index(t: Any) -> int:
    if isinstance(t, torch.Tensor):
        if t.numel() != 1:
            raise ConfigError(f"timestep: expected one timestep for the whole batch, got shape {tuple(t.shape)}")
        t = t.item()
    ti = int(round(float(t)))
    if abs(float(t) - ti) > 1e-6:
        raise ConfigError(f"timestep: expected an integer timestep (discrete VP schedule), got {t!r}")
    return ti


class Denoiser:
    """Base adapter. Subclasses implement :meth:`model_output`.

    Counters ``nfe_forward`` / ``nfe_backward`` count network evaluations and backward passes
    through the network (the estimators increment ``nfe_backward``).
    """

    def __init__(self, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon") -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"prediction_type must be one of {list(PREDICTION_TYPES)}, got {prediction_type!r}")
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        self.prediction_type = prediction_type
        self.nfe_forward = 0
        self.nfe_backward = 0

    def reset_counters(self) -> None:
        self.nfe_forward = 0
        self.nfe_backward = 0

    def alpha_bar(self, t: Any) -> float:
        ti = _t_index(t)
        if not 0 <= ti < self.alphas_cumprod.numel():
            raise ConfigError(f"timestep {ti} outside the schedule [0, {self.alphas_cumprod.numel() - 1}]")
        return float(self.alphas_cumprod[ti])

    def model_output(self, x: torch.Tensor, t: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def eps_x0(self, x: torch.Tensor, t: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(eps, x0_hat)`` at ``(x, t)`` in float32 (float64 for float64 ``x``); differentiable when autograd records."""
        ab = self.alpha_bar(t)
        cd = torch.promote_types(x.dtype, torch.float32)
        out = self.model_output(x, t).to(cd)
        self.nfe_forward += 1
        xf = x.to(cd)
        sa, s1 = ab**0.5, (1.0 - ab) ** 0.5
        if self.prediction_type == "epsilon":
            eps = out
            x0 = (xf - s1 * eps) / sa
        elif self.prediction_type == "sample":
            x0 = out
            eps = (xf - sa * x0) / s1
        else:  # v_prediction
            x0 = sa * xf - s1 * out
            eps = sa * out + s1 * xf
        return eps, x0

    def x0(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        return self.eps_x0(x, t)[1]


class UNetDenoiser(Denoiser):
    """A diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` (or any ``model(x, t, **kw)``) with its scheduler.

    Args:
        model: the network; its output or ``output.sample`` is the prediction.
        scheduler: a diffusers VP scheduler (``alphas_cumprod``, ``config.prediction_type``).
        model_kwargs: extra keyword arguments (e.g. ``encoder_hidden_states`` for a conditional UNet;
            a batch-1 tensor is expanded to the sample batch).
        guidance_scale: classifier-free guidance ``s`` (``uncond + s * (cond - uncond)``); active when
            ``s != 1`` and ``negative_model_kwargs`` is given. The same guided function is used at the
            base point and at every probe point.
        negative_model_kwargs: keyword arguments of the unconditional branch.
    """

    def __init__(
        self,
        model: Any,
        scheduler: Any,
        *,
        model_kwargs: dict[str, Any] | None = None,
        guidance_scale: float = 1.0,
        negative_model_kwargs: dict[str, Any] | None = None,
        prediction_type: str | None = None,
    ) -> None:
        if not callable(model):
            raise ArgumentTypeError(f"UNetDenoiser: `model` must be callable, got {type(model).__name__}")
        pt = prediction_type or getattr(getattr(scheduler, "config", None), "prediction_type", "epsilon")
        super().__init__(alphas_cumprod_of(scheduler), pt)
        self.model = model
        self.model_kwargs = dict(model_kwargs or {})
        self.negative_model_kwargs = dict(negative_model_kwargs) if negative_model_kwargs is not None else None
        self.guidance_scale = float(guidance_scale)
        p = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
        self.dtype = p.dtype if p is not None else torch.float32

    @staticmethod
    def _expand(kw: dict[str, Any], bsz: int) -> dict[str, Any]:
        out = {}
        for k, v in kw.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == 1 and bsz > 1:
                v = v.expand(bsz, *v.shape[1:])
            out[k] = v
        return out

    def _call(self, x: torch.Tensor, t: Any, kw: dict[str, Any]) -> torch.Tensor:
        tt = torch.as_tensor(_t_index(t), device=x.device)
        out = self.model(x.to(self.dtype), tt, **self._expand(kw, x.shape[0]))
        return out.sample if hasattr(out, "sample") else (out[0] if isinstance(out, tuple) else out)

    def model_output(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        if self.negative_model_kwargs is None or self.guidance_scale == 1.0:
            return self._call(x, t, self.model_kwargs)
        bsz = x.shape[0]
        kw = {}
        pos, neg = self._expand(self.model_kwargs, bsz), self._expand(self.negative_model_kwargs, bsz)
        for k in pos:
            v = pos[k]
            kw[k] = torch.cat([neg[k], v]) if isinstance(v, torch.Tensor) and k in neg else v
        both = self._call(torch.cat([x, x]), t, kw).float()
        uncond, cond = both[:bsz], both[bsz:]
        return uncond + self.guidance_scale * (cond - uncond)


class CallableDenoiser(Denoiser):
    """A plain function ``fn(x, t) -> prediction`` (e.g. an analytic denoiser) with a schedule."""

    def __init__(self, fn: Callable[[torch.Tensor, Any], torch.Tensor], alphas_cumprod: torch.Tensor,
                 prediction_type: str = "epsilon") -> None:
        if not callable(fn):
            raise ArgumentTypeError(f"CallableDenoiser: `fn` must be callable, got {type(fn).__name__}")
        super().__init__(alphas_cumprod, prediction_type)
        self.fn = fn

    def model_output(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        return self.fn(x, t)


def as_denoiser(model: Any, scheduler: Any, **kwargs: Any) -> Denoiser:
    """``model`` if it already is a :class:`Denoiser`, else a :class:`UNetDenoiser` over it."""
    if isinstance(model, Denoiser):
        return model
    return UNetDenoiser(model, scheduler, **kwargs)
