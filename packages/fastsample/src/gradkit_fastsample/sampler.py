"""The constrained sampler: K inexact-Newton corrections of ``x_t`` per step, then a DDIM transition.

Paper: A. Graikos, N. Jojic, D. Samaras, "Fast constrained sampling in pre-trained diffusion models",
arXiv:2410.18804 (NeurIPS 2025). https://arxiv.org/abs/2410.18804
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from gradkit.errors import ArgumentTypeError, ConfigError

from .config import FastSampleConfig
from .constraints import Constraint, vae_decoder
from .denoiser import Denoiser, alphas_cumprod_of, as_denoiser
from .estimators import get_estimator, scale_direction
from .ops import ddim_transition, fd_update, masked_error_probe

__all__ = ["Trace", "SampleOutput", "ConstrainedSampler", "correct", "constrained_step", "transition_coefficients",
           "schedule_pairs", "DPSSampler"]


@dataclass
class Trace:
    """What a run did.

    Attributes:
        residuals: one list per outer step: the batch-mean constraint error before the first and
            after each inner correction (``len == inner_steps + 1``).
        timesteps: the outer timesteps.
        nfe_forward / nfe_backward: denoiser forward evaluations / backward passes through it.
        seconds: wall time of the run.
        final_error: per-sample constraint error of the returned ``x0`` (``[B]``).
    """

    residuals: list[list[float]] = field(default_factory=list)
    timesteps: list[int] = field(default_factory=list)
    nfe_forward: int = 0
    nfe_backward: int = 0
    seconds: float = 0.0
    final_error: torch.Tensor | None = None


@dataclass
class SampleOutput:
    """Result of :meth:`ConstrainedSampler.sample`.

    Attributes:
        x0: the last corrected clean estimate ``x0_hat`` (model space: latents for a latent model).
        sample: the sample after the last transition.
        images: ``decode(x0)`` for a latent model (``vae`` given), else ``x0``.
        trace: the :class:`Trace`.
    """

    x0: torch.Tensor
    sample: torch.Tensor
    images: torch.Tensor
    trace: Trace


def schedule_pairs(scheduler: Any, num_inference_steps: int) -> list[tuple[int, float, float]]:
    """``(t, ab_t, ab_prev)`` per outer step after ``scheduler.set_timesteps(N)``.

    ``ab_prev`` is ``alphas_cumprod`` at the next timestep, or at the last step the scheduler's
    ``final_alpha_cumprod`` (DDIM; 1.0 for schedulers without one).
    """
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
        raise ConfigError(f"`num_inference_steps` must be a positive int, got {num_inference_steps!r}")
    if hasattr(scheduler, "sigmas") and not hasattr(scheduler, "final_alpha_cumprod") and getattr(scheduler, "init_noise_sigma", 1.0) != 1.0:
        raise ConfigError(
            f"scheduler: {type(scheduler).__name__} is sigma-parameterised; use "
            "DDIMScheduler.from_config(scheduler.config) (the transition is DDIM with small noise)"
        )
    ab = alphas_cumprod_of(scheduler)
    scheduler.set_timesteps(num_inference_steps)
    ts = [int(t) for t in scheduler.timesteps]
    final = getattr(scheduler, "final_alpha_cumprod", None)
    final_ab = float(final) if final is not None else 1.0
    out = []
    for i, t in enumerate(ts):
        prev = float(ab[ts[i + 1]]) if i + 1 < len(ts) else final_ab
        out.append((t, float(ab[t]), prev))
    return out


def transition_coefficients(ab_t: float, ab_prev: float, eta: float) -> tuple[float, float, float]:
    """DDIM(eta): ``x_prev = a*x0 + b*eps + s*z``, ``s = eta*sqrt((1-ab')/(1-ab) * (1-ab/ab'))``."""
    var = (1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev) if ab_t < 1.0 else 0.0
    s = eta * max(var, 0.0) ** 0.5
    return ab_prev**0.5, max(1.0 - ab_prev - s * s, 0.0) ** 0.5, s


def _noise(shape: torch.Size, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)


def correct(
    den: Denoiser,
    x: torch.Tensor,
    t: int,
    constraint: Constraint,
    cfg: FastSampleConfig,
    residuals: list[float] | None = None,
    eps_x0: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The K inner corrections at timestep ``t``. Returns the corrected ``(x_t, eps, x0_hat)``.

    ``eps_x0``: the denoiser output at ``(x, t)`` if already computed (saves one forward).
    """
    estimator = get_estimator(cfg.estimator)
    with torch.no_grad():
        eps, x0 = eps_x0 if eps_x0 is not None else den.eps_x0(x, t)
        if residuals is not None:
            residuals.append(float(constraint.error(x0).mean()))
        fused = None
        if cfg.fused and cfg.estimator == "fd" and cfg.step_transform == "inf_norm":
            fused = constraint.fused_inpaint_inputs()
        for lr in cfg.step_sizes():
            if fused is not None:
                y, mask = fused
                _, x_probe, _ = masked_error_probe(x, x0, y, mask, cfg.probe)
                _, x0p = den.eps_x0(x_probe, t)
                x = fd_update(x, x0p, x0, lr)
                eps, x0 = den.eps_x0(x, t)
            else:
                g = constraint.direction(x0).to(x0.dtype)
                d = estimator(den, x, t, x0, g, cfg.probe)
                if d is None:  # x0_only: correct the clean estimate, keep eps
                    x0 = x0 + scale_direction(g, lr, cfg.step_transform)
                else:
                    x = (x + scale_direction(d, lr, cfg.step_transform)).to(x.dtype)
                    eps, x0 = den.eps_x0(x, t)
            if residuals is not None:
                residuals.append(float(constraint.error(x0).mean()))
    return x, eps, x0


def constrained_step(
    den: Denoiser,
    x: torch.Tensor,
    t: int,
    ab_t: float,
    ab_prev: float,
    constraint: Constraint | None,
    cfg: FastSampleConfig,
    generator: torch.Generator | None = None,
    trace: Trace | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One outer step: K corrections at ``t`` then the DDIM(eta) transition. Returns ``(x_prev, x0_hat)``."""
    res: list[float] | None = [] if trace is not None and constraint is not None else None
    if constraint is None or cfg.inner_steps == 0:
        with torch.no_grad():
            eps, x0 = den.eps_x0(x, t)
        if res is not None:
            res.append(float(constraint.error(x0).mean()))  # type: ignore[union-attr]
    else:
        x, eps, x0 = correct(den, x, t, constraint, cfg, res)
    if trace is not None:
        trace.timesteps.append(int(t))
        if res is not None:
            trace.residuals.append(res)
    a, b, s = transition_coefficients(ab_t, ab_prev, cfg.eta)
    z = _noise(x.shape, generator, x0) if s > 0 else None
    with torch.no_grad():
        x_prev = ddim_transition(x0, eps, z, a, b, s)
    return x_prev.to(x.dtype), x0


class ConstrainedSampler:
    """Fast constrained sampling (Graikos, Jojic & Samaras, arXiv:2410.18804).

    At each of ``num_inference_steps`` outer steps the noisy sample is corrected ``inner_steps``
    times along ``J_t g``: ``g`` is the clean-space correction of the constraint at the denoiser's
    estimate ``x0_hat = D_t(x_t)`` and ``J_t = dD_t/dx_t`` is applied by a finite difference of two
    denoiser *forwards* (``estimator="fd"``). The diffusion model is never differentiated (0 backward
    passes); the update is infinity-normalised (the largest entry of ``x_t`` moves by the step size,
    ``linspace(lr_start, lr_end, K)``), then a DDIM step with small noise (``eta``) moves to the next
    timestep using the corrected ``(x0_hat, eps)``. Cost: ``N * (1 + 2K)`` forwards.

    What it keeps exact: the pre-trained model and its sampling schedule; the correction only
    approximates Newton's method (``J`` in place of ``J^-1``, ``J g`` by finite differences).

    Args:
        model: a diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` (or a :class:`Denoiser`).
        scheduler: a diffusers VP scheduler (DDIM, DDPM, PNDM, ...): its ``alphas_cumprod`` and
            ``timesteps`` are used; the transition is this package's DDIM(eta) step.
        constraint: a :class:`~gradkit_fastsample.constraints.Constraint` (can also be given to ``sample``).
        estimator, num_inference_steps, inner_steps, lr_start, lr_end, probe, eta, step_transform, fused:
            see :class:`~gradkit_fastsample.config.FastSampleConfig` (defaults: the paper's inpainting).
        vae: a diffusers ``AutoencoderKL`` for latent models: ``images = decode(x0)``.
        model_kwargs: extra model arguments (``encoder_hidden_states`` for text-conditional UNets).
        guidance_scale, negative_model_kwargs: classifier-free guidance (same at base and probe points).
        config: a :class:`FastSampleConfig` instead of the keyword hyperparameters.

    Examples::

        >>> from gradkit_fastsample import ConstrainedSampler, Inpaint, load_pretrained, load_mnist16
        >>> unet, sched = load_pretrained()
        >>> x, _ = load_mnist16("test")
        >>> mask = torch.zeros(1, 1, 16, 16); mask[..., :8] = 1          # left half known
        >>> out = ConstrainedSampler(unet, sched, Inpaint(x[:4], mask)).sample(
        ...     (4, 1, 16, 16), generator=torch.Generator().manual_seed(0))
        >>> out.x0.shape, out.trace.nfe_forward, out.trace.nfe_backward
        (torch.Size([4, 1, 16, 16]), 220, 0)
    """

    def __init__(
        self,
        model: Any,
        scheduler: Any,
        constraint: Constraint | None = None,
        *,
        estimator: str = "fd",
        num_inference_steps: int = 20,
        inner_steps: int = 5,
        lr_start: float = 0.5,
        lr_end: float = 0.1,
        probe: float = 5e-3,
        eta: float = 0.15,
        step_transform: str = "inf_norm",
        fused: bool = True,
        vae: Any = None,
        model_kwargs: dict[str, Any] | None = None,
        guidance_scale: float = 1.0,
        negative_model_kwargs: dict[str, Any] | None = None,
        config: FastSampleConfig | None = None,
    ) -> None:
        if config is None:
            config = FastSampleConfig(estimator=estimator, num_inference_steps=num_inference_steps,
                                      inner_steps=inner_steps, lr_start=lr_start, lr_end=lr_end, probe=probe,
                                      eta=eta, step_transform=step_transform, fused=fused)
        elif not isinstance(config, FastSampleConfig):
            raise ArgumentTypeError(f"ConstrainedSampler: `config` must be a FastSampleConfig, got {type(config).__name__}")
        if constraint is not None and not isinstance(constraint, Constraint):
            raise ArgumentTypeError(f"ConstrainedSampler: `constraint` must be a Constraint, got {type(constraint).__name__}")
        self.config = config
        self.scheduler = scheduler
        self.denoiser = as_denoiser(model, scheduler, model_kwargs=model_kwargs, guidance_scale=guidance_scale,
                                    negative_model_kwargs=negative_model_kwargs)
        self.constraint = constraint
        self.vae = vae
        self._decode: Callable[[torch.Tensor], torch.Tensor] | None = vae_decoder(vae) if vae is not None else None

    def sample(
        self,
        shape: tuple[int, ...] | None = None,
        *,
        constraint: Constraint | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        progress: Callable[..., Any] | None = None,
    ) -> SampleOutput:
        """Draw constrained samples.

        Args:
            shape: ``(B, C, H, W)`` of the model's sample space (latent shape for latent models).
            constraint: overrides the constructor's constraint (``None`` there and here: unconstrained).
            generator: RNG for the initial noise and the transition noise.
            latents: the initial ``x_T`` instead of fresh noise.
            progress: optional wrapper over the step iterator (e.g. ``tqdm``).
        """
        cfg = self.config
        constraint = constraint if constraint is not None else self.constraint
        if latents is None:
            if shape is None or not all(isinstance(s, int) and s > 0 for s in shape):
                raise ConfigError(f"sample: `shape` must be a tuple of positive ints (or pass `latents`), got {shape!r}")
            dev = self._device()
            x = _noise(torch.Size(shape), generator, torch.empty((), device=dev, dtype=torch.float32))
        else:
            x = latents.detach().float() if latents.dtype not in (torch.float32, torch.float64) else latents.detach()
        if constraint is not None:
            dshape = tuple(x.shape) if constraint.decoder is None else tuple(constraint.decode(x[:1]).shape)
            if constraint.decoder is not None:
                dshape = (x.shape[0], *dshape[1:])
            constraint.validate(dshape)
            constraint.to(device=x.device)
        pairs = schedule_pairs(self.scheduler, cfg.num_inference_steps)
        den = self.denoiser
        den.reset_counters()
        trace = Trace()
        t0 = time.perf_counter()
        it: Any = pairs if progress is None else progress(pairs)
        x0 = x
        for t, ab_t, ab_prev in it:
            x, x0 = constrained_step(den, x, t, ab_t, ab_prev, constraint, cfg, generator, trace)
        trace.seconds = time.perf_counter() - t0
        trace.nfe_forward, trace.nfe_backward = den.nfe_forward, den.nfe_backward
        if constraint is not None:
            trace.final_error = constraint.error(x0)
        with torch.no_grad():
            images = self._decode(x0) if self._decode is not None else x0
        return SampleOutput(x0=x0, sample=x, images=images, trace=trace)

    def _device(self) -> torch.device:
        m = getattr(self.denoiser, "model", None)
        if isinstance(m, torch.nn.Module):
            p = next(m.parameters(), None)
            if p is not None:
                return p.device
        return torch.device("cpu")


class DPSSampler:
    """Diffusion posterior sampling baseline (Chung et al., ICLR 2023): backprop through the denoiser.

    Each step: ``x0_hat = D_t(x_t)`` with a graph, a DDIM(eta) transition, then
    ``x_prev -= scale * grad_{x_t} ||r(x0_hat)||`` with ``||r|| = sqrt(2 * loss)`` per sample (the DPS
    step ``zeta / ||r||`` times the gradient of the squared residual). One forward and one backward
    through the denoiser per step.
    """

    def __init__(self, model: Any, scheduler: Any, constraint: Constraint | None = None, *,
                 num_inference_steps: int = 200, scale: float = 1.0, eta: float = 1.0,
                 model_kwargs: dict[str, Any] | None = None) -> None:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
            raise ConfigError(f"DPSSampler: `num_inference_steps` must be a positive int, got {num_inference_steps!r}")
        if not scale >= 0:
            raise ConfigError(f"DPSSampler: `scale` must be >= 0, got {scale!r}")
        if not 0.0 <= eta <= 1.0:
            raise ConfigError(f"DPSSampler: `eta` must be in [0, 1], got {eta!r}")
        self.scheduler = scheduler
        self.denoiser = as_denoiser(model, scheduler, model_kwargs=model_kwargs)
        self.constraint = constraint
        self.num_inference_steps = num_inference_steps
        self.scale = float(scale)
        self.eta = float(eta)

    def sample(self, shape: tuple[int, ...], *, constraint: Constraint | None = None,
               generator: torch.Generator | None = None, latents: torch.Tensor | None = None) -> SampleOutput:
        constraint = constraint if constraint is not None else self.constraint
        if constraint is None:
            raise ConfigError("DPSSampler.sample: pass a `constraint`")
        x = latents.detach().float() if latents is not None else _noise(torch.Size(shape), generator, torch.empty(()))
        constraint.validate(tuple(x.shape) if constraint.decoder is None else (x.shape[0], *constraint.decode(x[:1]).shape[1:]))
        den = self.denoiser
        den.reset_counters()
        trace = Trace()
        t0 = time.perf_counter()
        x0 = x
        for t, ab_t, ab_prev in schedule_pairs(self.scheduler, self.num_inference_steps):
            with torch.enable_grad():
                xr = x.detach().requires_grad_(True)
                eps, x0r = den.eps_x0(xr, t)
                loss = constraint.loss(x0r)
                norm = (2.0 * loss).clamp_min(1e-12).sqrt()
                (grad,) = torch.autograd.grad(norm.sum(), xr)
                den.nfe_backward += 1
            x0 = x0r.detach()
            trace.timesteps.append(t)
            trace.residuals.append([float(constraint.error(x0).mean())])
            a, b, s = transition_coefficients(ab_t, ab_prev, self.eta)
            z = _noise(x.shape, generator, x0) if s > 0 else None
            with torch.no_grad():
                x = ddim_transition(x0, eps.detach(), z, a, b, s) - self.scale * grad
        trace.seconds = time.perf_counter() - t0
        trace.nfe_forward, trace.nfe_backward = den.nfe_forward, den.nfe_backward
        trace.final_error = constraint.error(x)
        return SampleOutput(x0=x, sample=x, images=x, trace=trace)
