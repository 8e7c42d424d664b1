"""``FastSample``: the gradkit transform that makes ``gradkit.sample(...)`` run the constrained sampler.

It modifies no module (``attach`` is a no-op that is undone trivially); its work happens in the
plugin's ``gradkit_sample_step`` hook, which acts only while the transform is active
(``state.transform("fastsample")`` is not ``None``).
"""

from __future__ import annotations

from typing import Any

import torch
from gradkit.context import SampleState, StashKey
from gradkit.errors import ArgumentTypeError, ConfigError
from gradkit.transforms import GradientTransform

from .config import FastSampleConfig
from .constraints import Constraint
from .denoiser import Denoiser, UNetDenoiser
from .sampler import SampleOutput, Trace, constrained_step

__all__ = ["FastSample", "make_fastsample"]

_DEN = StashKey[Denoiser]("fastsample.denoiser")
_TRACE = StashKey[Trace]("fastsample.trace")
_X0 = StashKey[torch.Tensor]("fastsample.x0")


class FastSample(GradientTransform):
    """Constrained sampling inside ``gradkit.sample`` (Graikos et al., arXiv:2410.18804).

    ``num_inference_steps`` comes from ``gradkit.sample``; the other fields of
    :class:`FastSampleConfig` apply. After the run, :attr:`last_output` holds the
    :class:`~gradkit_fastsample.sampler.SampleOutput` (last corrected ``x0`` and the trace).
    The scheduler supplies the timesteps and ``alphas_cumprod``; the transition is this package's
    DDIM(``eta``) step (so ``scheduler.step`` is not called). Without a constraint the transform
    samples unconstrained with that step.

    Examples::

        >>> t = FastSample(constraint=Inpaint(image, mask), inner_steps=5)
        >>> x = gradkit.sample(unet, scheduler, shape=(4, 1, 16, 16), num_inference_steps=20, transforms=[t])
    """

    name = "fastsample"

    def __init__(self, constraint: Constraint | None = None, *, config: FastSampleConfig | None = None, **kwargs: Any) -> None:
        if config is None:
            config = FastSampleConfig(**kwargs)
        elif kwargs:
            raise ConfigError(f"FastSample: pass either `config` or keyword hyperparameters, not both (got {sorted(kwargs)})")
        super().__init__(None, config)
        self.constraint = constraint
        self.last_output: SampleOutput | None = None

    @property
    def constraint(self) -> Constraint | None:
        return self._constraint

    @constraint.setter
    def constraint(self, value: Constraint | None) -> None:
        if value is not None and not isinstance(value, Constraint):
            raise ArgumentTypeError(f"FastSample: `constraint` must be a gradkit_fastsample Constraint, got {type(value).__name__}")
        self._constraint = value

    # -- hooks' work ---------------------------------------------------------------------------
    def start(self, state: SampleState) -> None:
        den = UNetDenoiser(state.model, state.scheduler, model_kwargs=state.model_kwargs)
        state.stash[_DEN] = den
        state.stash[_TRACE] = Trace()
        if self.constraint is not None:
            self.constraint.validate(tuple(state.sample.shape) if self.constraint.decoder is None
                                     else (state.sample.shape[0], *self.constraint.decode(state.sample[:1].float()).shape[1:]))
            self.constraint.to(device=state.sample.device)
        self.last_output = None

    def step(self, state: SampleState) -> torch.Tensor:
        den = state.stash.get(_DEN)
        if den is None:
            self.start(state)
            den = state.stash[_DEN]
        trace = state.stash[_TRACE]
        ts = [int(t) for t in state.scheduler.timesteps]
        i = state.index
        t = int(ts[i])
        ab_t = den.alpha_bar(t)
        if i + 1 < len(ts):
            ab_prev = den.alpha_bar(ts[i + 1])
        else:
            final = getattr(state.scheduler, "final_alpha_cumprod", None)
            ab_prev = float(final) if final is not None else 1.0
        x = state.sample.float() if state.sample.dtype not in (torch.float32, torch.float64) else state.sample
        x_prev, x0 = constrained_step(den, x, t, ab_t, ab_prev, self.constraint, self.config, state.generator, trace)
        state.stash[_X0] = x0
        return x_prev.to(state.sample.dtype)

    def finish(self, state: SampleState, sample: torch.Tensor) -> None:
        den = state.stash.get(_DEN)
        trace = state.stash.get(_TRACE)
        x0 = state.stash.get(_X0)
        if den is None or trace is None or x0 is None:
            return
        trace.nfe_forward, trace.nfe_backward = den.nfe_forward, den.nfe_backward
        if self.constraint is not None:
            trace.final_error = self.constraint.error(x0)
        self.last_output = SampleOutput(x0=x0, sample=sample, images=x0, trace=trace)


def make_fastsample(**config: Any) -> FastSample:
    """Factory registered as transform ``"fastsample"`` (set ``.constraint`` before sampling)."""
    return FastSample(config=FastSampleConfig(**config))


