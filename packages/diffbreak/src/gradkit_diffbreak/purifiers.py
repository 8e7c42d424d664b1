"""Diffusion purifiers as :class:`~gradkit_diffbreak.process.IterativeProcess` chains.

State space: images in ``[-1, 1]`` (``u = 2x - 1``). Every purifier starts with the forward noising
to ``t*`` (``sqrt(abar) u + sqrt(1 - abar) eps``, ``eps`` from the tape) and then runs reverse steps
with a diffusers ``UNet2DModel``-like noise predictor ``unet(x, t).sample``.

- :class:`DDPMPurifier`: DiffPure/GDMP-style DDPM chain with the coefficients of a diffusers
  ``DDPMScheduler`` (respaced to ``steps`` timesteps), optional GDMP guidance (MSE/SSIM) and
  ``repeats`` (GDMP iterative purification); ``ode=True`` runs the deterministic DDIM update instead.
- :class:`VPSDEPurifier`: DiffPure's VP-SDE reverse Euler-Maruyama on an integer-derived time grid
  (``ode=True``: the probability-flow ODE, Euler).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from gradkit.errors import ConfigError

from .ops.ddpm_step import ddpm_step
from .process import IterativeProcess, NoiseTape

__all__ = ["DDPMPurifier", "VPSDEPurifier", "GDMPGuidance", "Purifier", "ssim"]

# tape streams
_NOISING, _STEP, _GUIDE = 0, 1, 2


def _eps(unet: Any, x: torch.Tensor, t: int) -> torch.Tensor:
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    out = unet(x, tt)
    return out.sample if hasattr(out, "sample") else out


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    r = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, *, window: int = 7, sigma: float = 1.5, data_range: float = 2.0) -> torch.Tensor:
    """Per-sample SSIM (Gaussian window, reflect padding) of ``(B, C, H, W)`` images: shape ``(B,)``."""
    c = x.shape[1]
    w = _gaussian_window(window, sigma, x.device, x.dtype).expand(c, 1, window, window)
    pad = window // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), w, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


@dataclass(frozen=True)
class GDMPGuidance:
    """GDMP guidance (Wang et al. 2022, arXiv 2205.14969): steer each reverse step towards the input.

    Adds ``var_t * s_t * grad_{x_t} sum_b sim(x_t, g_t)`` to the step output, with
    ``s_t = sqrt(1 - abar_t) / (m sqrt(abar_t))`` and ``m = ptb * 2/255 / 3 / scale``.

    - ``kind="mse"``: ``g_t`` = guide diffused to ``t`` with its own tape noise, ``sim = -mean (x_t - g_t)^2``.
    - ``kind="ssim"``: ``g_t`` = the raw guide, ``sim = SSIM(x_t, g)``.

    The gradient is taken inside the step (``create_graph`` when a graph is being built), so
    differentiating a step is second order, and the guide (the input itself) is a second path.
    """

    kind: str = "mse"
    scale: float = 1e3
    ptb: float = 8.0
    window: int = 7

    def __post_init__(self) -> None:
        if self.kind not in ("mse", "ssim"):
            raise ConfigError(f"GDMPGuidance.kind={self.kind!r} is invalid; use 'mse' or 'ssim'")
        if not (self.scale > 0 and self.ptb > 0):
            raise ConfigError("GDMPGuidance.scale and .ptb must be > 0")
        if self.window < 1 or self.window % 2 == 0:
            raise ConfigError(f"GDMPGuidance.window={self.window} must be a positive odd integer")

    def m(self) -> float:
        return self.ptb * 2.0 / 255.0 / 3.0 / self.scale


class Purifier(IterativeProcess):
    """Common parts: the noise predictor, the diffusers scheduler, ``t_star`` and input validation."""

    def __init__(self, unet: Any, scheduler: Any, *, t_star: float) -> None:
        if not isinstance(t_star, (int, float)) or not (0.0 < float(t_star) <= 1.0):
            raise ConfigError(f"t_star={t_star!r} must be a fraction of the diffusion time in (0, 1], e.g. 0.1")
        if not hasattr(scheduler, "alphas_cumprod") or not hasattr(scheduler, "config"):
            raise ConfigError("scheduler must be a diffusers DDPM-type scheduler (with alphas_cumprod and config)")
        self.unet = unet
        self.scheduler = scheduler
        self.t_star = float(t_star)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self._acp = scheduler.alphas_cumprod.double()

    def check_images(self, x: torch.Tensor) -> None:
        """Raise :class:`ConfigError` unless ``x`` is ``(B, C, H, W)`` matching the network, values in [0, 1]."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ConfigError(f"images must be a (B, C, H, W) tensor, got shape {tuple(getattr(x, 'shape', ()))}")
        cfg = getattr(self.unet, "config", None)
        if cfg is not None and hasattr(cfg, "sample_size"):
            size = cfg.sample_size
            hw = (size, size) if isinstance(size, int) else tuple(size)
            if tuple(x.shape[-2:]) != tuple(hw) or x.shape[1] != cfg.in_channels:
                raise ConfigError(
                    f"image size {tuple(x.shape[1:])} does not match the UNet ({cfg.in_channels}, {hw[0]}, {hw[1]}); "
                    "resize the images (or use a score model trained at this size)"
                )
        xd = x.detach()
        if xd.numel() and (float(xd.min()) < 0.0 or float(xd.max()) > 1.0):
            raise ConfigError(
                f"images must have values in [0, 1] (got min {float(xd.min()):.4g}, max {float(xd.max()):.4g}); "
                "the purifier maps them to [-1, 1] itself"
            )


class DDPMPurifier(Purifier):
    """DDPM purification (DiffPure with a DDPM, GDMP): noise to ``t*``, then the reverse DDPM chain.

    Args:
        unet: noise predictor, ``unet(x, t).sample`` (a diffusers ``UNet2DModel``).
        scheduler: a diffusers ``DDPMScheduler`` (its betas, ``clip_sample`` and ``variance_type``
            ``fixed_small``/``fixed_large`` define the step).
        t_star: purification depth as a fraction of the training timesteps, in (0, 1]; the chain starts
            at timestep ``round(t_star * T) - 1``.
        steps: number of reverse steps (timesteps respaced evenly from the start down to 0); default:
            every timestep.
        guidance: optional :class:`GDMPGuidance`.
        repeats: run the whole purification this many times in a row (the guide stays the input).
        ode: deterministic DDIM update (no step noise) instead of the stochastic DDPM step.
    """

    def __init__(
        self,
        unet: Any,
        scheduler: Any,
        *,
        t_star: float = 0.1,
        steps: int | None = None,
        guidance: GDMPGuidance | None = None,
        repeats: int = 1,
        ode: bool = False,
    ) -> None:
        super().__init__(unet, scheduler, t_star=t_star)
        T = self.num_train_timesteps
        self.t_start = max(0, int(round(self.t_star * T)) - 1)
        if steps is None:
            steps = self.t_start + 1
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps={steps!r} must be a positive integer")
        if steps > self.t_start + 1:
            raise ConfigError(f"steps={steps} exceeds the {self.t_start + 1} timesteps below t_star={t_star}; lower steps")
        if not isinstance(repeats, int) or repeats < 1:
            raise ConfigError(f"repeats={repeats!r} must be a positive integer")
        if guidance is not None and not isinstance(guidance, GDMPGuidance):
            raise ConfigError("guidance must be a GDMPGuidance or None")
        if guidance is not None and ode:
            raise ConfigError("GDMP guidance needs the stochastic DDPM step (ode=False)")
        vt = getattr(scheduler.config, "variance_type", "fixed_small")
        if vt not in ("fixed_small", "fixed_large"):
            raise ConfigError(f"scheduler variance_type={vt!r} is not supported; use 'fixed_small' or 'fixed_large'")
        self.variance_type = vt
        self.clip = bool(getattr(scheduler.config, "clip_sample", True))
        ts = torch.linspace(self.t_start, 0, steps, dtype=torch.float64).round().long().tolist()
        self.timesteps: list[int] = sorted(set(ts), reverse=True)
        self.steps = len(self.timesteps)
        self.guidance = guidance
        self.repeats = repeats
        self.ode = bool(ode)
        self.uses_guide = guidance is not None
        self._coef = [self._coefficients(i) for i in range(self.steps)]

    def _coefficients(self, i: int) -> dict[str, float]:
        acp = self._acp
        t = self.timesteps[i]
        prev = self.timesteps[i + 1] if i + 1 < self.steps else -1
        ab_t = float(acp[t])
        ab_p = float(acp[prev]) if prev >= 0 else 1.0
        alpha = ab_t / ab_p
        beta = 1.0 - alpha
        a = 1.0 / math.sqrt(ab_t)
        b = math.sqrt(1.0 - ab_t) / math.sqrt(ab_t)
        if self.ode:  # DDIM (eta = 0), epsilon re-derived from the clipped x0 as diffusers does
            c2 = math.sqrt(1.0 - ab_p) / math.sqrt(1.0 - ab_t)
            c1 = math.sqrt(ab_p) - c2 * math.sqrt(ab_t)
            var = 0.0
        else:
            c1 = math.sqrt(ab_p) * beta / (1.0 - ab_t)
            c2 = math.sqrt(alpha) * (1.0 - ab_p) / (1.0 - ab_t)
            if t == 0:
                var = 0.0
            elif self.variance_type == "fixed_small":
                var = max((1.0 - ab_p) / (1.0 - ab_t) * beta, 1e-20)
            else:
                var = beta
        s_t = 0.0
        if self.guidance is not None:
            s_t = math.sqrt(1.0 - ab_t) / (self.guidance.m() * math.sqrt(ab_t))
        return {"t": t, "a": a, "b": b, "c1": c1, "c2": c2, "var": var, "sigma": math.sqrt(var), "s_t": s_t, "ab_t": ab_t}

    def num_steps(self) -> int:
        return self.repeats * (self.steps + 1)

    def step(self, k: int, state: torch.Tensor, guide: torch.Tensor | None, tape: NoiseTape) -> torch.Tensor:
        j = k % (self.steps + 1)
        if j == 0:  # forward noising to t*
            ab = float(self._acp[self.timesteps[0]])
            eps = tape.randn(state.shape, step=k, stream=_NOISING, device=state.device, dtype=state.dtype)
            return math.sqrt(ab) * state + math.sqrt(1.0 - ab) * eps
        c = self._coef[j - 1]
        eps_hat = _eps(self.unet, state, c["t"])
        noise = None
        if c["sigma"] > 0:
            noise = tape.randn(state.shape, step=k, stream=_STEP, device=state.device, dtype=state.dtype)
        out = ddpm_step(state, eps_hat, noise, a=c["a"], b=c["b"], c1=c["c1"], c2=c["c2"], sigma=c["sigma"], clip=self.clip)
        if self.guidance is not None and c["var"] > 0:
            if guide is None:
                raise ConfigError("GDMP guidance needs a guide (the input image in [-1, 1])")
            out = out + (c["var"] * c["s_t"]) * self._guidance_grad(k, state, guide, c, tape)
        return out

    def _guidance_grad(self, k: int, x: torch.Tensor, guide: torch.Tensor, c: dict[str, float], tape: NoiseTape) -> torch.Tensor:
        g = self.guidance
        assert g is not None
        build = torch.is_grad_enabled() and (x.requires_grad or guide.requires_grad)
        with torch.enable_grad():
            xg = x if (build and x.requires_grad) else x.detach().requires_grad_()
            if g.kind == "mse":
                z = tape.randn(guide.shape, step=k, stream=_GUIDE, device=guide.device, dtype=guide.dtype)
                gt = math.sqrt(c["ab_t"]) * guide + math.sqrt(1.0 - c["ab_t"]) * z
                sim = -((xg - gt) ** 2).flatten(1).mean(1)
            else:
                sim = ssim(xg, guide, window=g.window)
            (grad,) = torch.autograd.grad(sim.sum(), xg, create_graph=build)
        return grad


class VPSDEPurifier(Purifier):
    """DiffPure's VP-SDE purification, reverse Euler-Maruyama (``ode=True``: probability-flow ODE, Euler).

    ``beta(t) = beta_min + t (beta_max - beta_min)`` with ``beta_min = T * beta_start`` and
    ``beta_max = T * beta_end`` from the (linear) diffusers scheduler, ``t in [0, 1]``. The grid is
    ``t_k = t_star (N - k) / N`` computed from integers (no accumulated float sums), the network sees
    timestep ``round(t_k T) - 1``: identical in forward and backward by construction. Step from
    ``t_k`` to ``t_k - d``: ``x + [beta x / 2 + beta s] d + sqrt(beta d) xi`` with
    ``s = -eps / sqrt(1 - abar(t))``.

    Args:
        unet, scheduler, t_star: as for :class:`DDPMPurifier`.
        steps: Euler steps ``N``; default ``round(1000 t_star)`` (``dt = 1e-3`` as in DiffPure).
        ode: deterministic probability-flow ODE (only the initial noising is random).
    """

    def __init__(self, unet: Any, scheduler: Any, *, t_star: float = 0.1, steps: int | None = None, ode: bool = False) -> None:
        super().__init__(unet, scheduler, t_star=t_star)
        if getattr(scheduler.config, "beta_schedule", "linear") != "linear":
            raise ConfigError("VPSDEPurifier needs a scheduler with beta_schedule='linear' (the VP-SDE's linear beta)")
        T = self.num_train_timesteps
        self.beta_min = float(scheduler.config.beta_start) * T
        self.beta_max = float(scheduler.config.beta_end) * T
        if steps is None:
            steps = max(1, int(round(1000 * self.t_star)))
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps={steps!r} must be a positive integer")
        self.steps = steps
        self.ode = bool(ode)
        self.times = [self.t_star * (steps - k) / steps for k in range(steps)]
        self.dt = self.t_star / steps

    def beta(self, t: float) -> float:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha_bar(self, t: float) -> float:
        return math.exp(-0.5 * (self.beta_max - self.beta_min) * t * t - self.beta_min * t)

    def index(self, t: float) -> int:
        return min(self.num_train_timesteps - 1, max(0, int(round(t * self.num_train_timesteps)) - 1))

    def num_steps(self) -> int:
        return self.steps + 1

    def step(self, k: int, state: torch.Tensor, guide: torch.Tensor | None, tape: NoiseTape) -> torch.Tensor:
        if k == 0:
            ab = self.alpha_bar(self.t_star)
            eps = tape.randn(state.shape, step=0, stream=_NOISING, device=state.device, dtype=state.dtype)
            return math.sqrt(ab) * state + math.sqrt(1.0 - ab) * eps
        t = self.times[k - 1]
        beta, d = self.beta(t), self.dt
        sig_t = math.sqrt(1.0 - self.alpha_bar(t))
        eps_hat = _eps(self.unet, state, self.index(t))
        if self.ode:
            return ddpm_step(state, eps_hat, None, a=0.0, b=0.5 * beta * d / sig_t, c1=1.0, c2=1.0 + 0.5 * beta * d, clip=False)
        xi = tape.randn(state.shape, step=k, stream=_STEP, device=state.device, dtype=state.dtype)
        return ddpm_step(
            state, eps_hat, xi, a=0.0, b=beta * d / sig_t, c1=1.0, c2=1.0 + 0.5 * beta * d, sigma=math.sqrt(beta * d), clip=False
        )
