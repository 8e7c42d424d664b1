"""``FlossingTransform``: the loop-side state of gradient flossing (registered as ``"flossing"``).

Flossing does not change how the task gradient is computed; it adds optimiser phases (and optionally
a loss term). The transform therefore modifies nothing on ``attach``: it binds the recurrent
dynamics of the (still unwrapped, pre-``accelerator.prepare``) model and creates flossing's own
optimiser; the hooks in :mod:`gradkit_flossing.plugin` drive it. ``remove()`` drops that state;
parameter updates already made by flossing are, by design, kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from gradkit.context import LossTerm
from gradkit.errors import ArgumentTypeError, ConfigError
from gradkit.transforms import GradientTransform, TransformHandle
from torch import Tensor

from .config import FlossingConfig
from .lyapunov import flossing_loss, gradient_norm_vs_delay, jacobian_condition
from .schedule import Flosser, crop_inputs

__all__ = ["FlossingTransform", "batch_inputs"]


def batch_inputs(batch: Any) -> Tensor:
    """The input tensor of a task batch: ``batch[0]`` of a tuple/list, ``batch['x'|'inputs'|'input']``
    of a dict, or the tensor itself."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, dict):
        for key in ("x", "inputs", "input", "input_ids"):
            if key in batch and isinstance(batch[key], torch.Tensor):
                return batch[key]
    raise ConfigError(
        f"flossing cannot find the inputs in a batch of type {type(batch).__name__}; use a tuple (x, y), a dict "
        "with key 'x', or FlossingConfig(sampler='bernoulli') / FlossingTransform(sampler=...)"
    )


class FlossingTransform(GradientTransform):
    """Gradient flossing (Engelken, NeurIPS 2023, https://arxiv.org/abs/2312.17306) for ``gradkit.train``.

    Modes (``config.mode``): ``"phases"`` runs ``pre_steps`` flossing updates before the first task
    update and ``inter_max`` episodes of ``inter_steps`` updates at task steps ``inter_every, 2
    inter_every, ...`` with its own Adam (the paper's method; the task gradient is exact plain
    autograd); ``"regularizer"`` adds ``beta * L_floss`` on the current batch's inputs as a loss term
    every ``reg_every`` steps (an extension); ``"both"``; ``"off"`` only reports exponents.

    Args:
        module: optional model (for ``with FlossingTransform(model): ...``).
        config: a :class:`FlossingConfig`; or keyword fields of it.
        sampler: ``sampler(batch, length) -> xs``; overrides ``config.sampler``.

    Examples::

        >>> import torch, gradkit
        >>> from gradkit_flossing import FlossingConfig
        >>> from gradkit_flossing.transform import FlossingTransform
        >>> t = FlossingTransform(config=FlossingConfig(k=4, pre_steps=2, inter_every=0, horizon=20, transient=5))
        >>> t.config.k
        4
    """

    name = "flossing"

    def __init__(self, module: torch.nn.Module | None = None, config: FlossingConfig | None = None, *,
                 sampler: Callable[[int, int], Tensor] | None = None, **fields: Any) -> None:
        if config is None:
            config = FlossingConfig(**fields)
        elif fields:
            config = config.replace(**fields)
        if not isinstance(config, FlossingConfig):
            raise ArgumentTypeError(f"`config` must be a FlossingConfig, got {type(config).__name__}")
        super().__init__(module, config)
        self.sampler = sampler
        self.flosser: Flosser | None = None
        self._reset_run()

    def _reset_run(self) -> None:
        self.pre_done = False
        self.episodes = 0
        self.floss_seconds = 0.0
        self.floss_updates = 0
        self.last_batch_x: Tensor | None = None
        self.spectra: dict[str, list[float]] = {}

    # -- attach -----------------------------------------------------------------------------------
    def _attach(self, module: torch.nn.Module, handle: TransformHandle) -> None:
        if self.flosser is not None:
            raise ConfigError("this FlossingTransform is already bound to a model; create one per model")
        self.flosser = Flosser(module, self.config, sampler=self._sample)
        self._reset_run()

        def undo() -> None:
            self.flosser = None

        handle.add(undo)

    def _sample(self, batch: int, length: int) -> Tensor:
        if self.sampler is not None:
            return self.sampler(batch, length)
        f = self._need()
        if self.config.sampler == "bernoulli":
            return f.bernoulli(batch, length)
        if self.last_batch_x is None:
            raise ConfigError("flossing with sampler='batch' has not seen a task batch yet; use sampler='bernoulli'")
        return crop_inputs(self.last_batch_x, batch, length, batch_first=f.dynamics.batch_first, generator=f.generator)

    def _need(self) -> Flosser:
        if self.flosser is None:
            raise ConfigError("the flossing transform is not attached to a model; pass it in gradkit.train(transforms=[...])")
        return self.flosser

    @property
    def needs_batch(self) -> bool:
        return self.sampler is None and self.config.sampler == "batch"

    # -- phases -----------------------------------------------------------------------------------
    def run_phase(self, n: int, label: str) -> None:
        f = self._need()
        t0 = time.perf_counter()
        if f"{label}/before" not in self.spectra:
            self.spectra[f"{label}/before"] = f.spectrum(k=min(f.k, self.config.log_k)).tolist()
        f.run(n)
        self.spectra[f"{label}/after"] = f.spectrum(k=min(f.k, self.config.log_k)).tolist()
        self.floss_seconds += time.perf_counter() - t0
        self.floss_updates += n

    def loop_start(self, start_step: int = 0) -> None:
        """A run starts at task step ``start_step`` (> 0 after a resume: phases already due are skipped;
        flossing's own Adam state is not part of the checkpoint and restarts)."""
        self._reset_run()
        c = self.config
        if start_step > 0:
            self.pre_done = True
            self.episodes = min(c.inter_max, (start_step - 1) // c.inter_every) if c.inter_every else 0
            return
        if c.phases and c.pre_steps and not self.needs_batch:
            self.run_phase(self.config.pre_steps, "pre")
            self.pre_done = True

    def before_micro_batch(self, step: Any) -> None:
        """Called before each micro-batch's forward/backward; runs the scheduled phases on the first."""
        if self.needs_batch:
            self.last_batch_x = batch_inputs(step.batch)
        if step.micro_index != 0 or not self.config.phases:
            return
        if not self.pre_done:
            self.pre_done = True
            if self.config.pre_steps:
                self.run_phase(self.config.pre_steps, "pre")
        c = self.config
        if c.inter_every and c.inter_steps and self.episodes < c.inter_max and step.index > 0 and step.index % c.inter_every == 0:
            self.episodes += 1
            self.run_phase(c.inter_steps, f"inter{self.episodes}")

    def loss_term(self, step: Any) -> LossTerm | None:
        c = self.config
        if not c.regularizer or step.index % c.reg_every:
            return None
        f = self._need()
        if self.needs_batch:
            self.last_batch_x = batch_inputs(step.batch)
        xs = f.sample()
        with torch.autocast(device_type=xs.device.type, enabled=False):  # QR and logs stay in full precision
            lam = f.exponents(xs)
        return LossTerm("floss", flossing_loss(lam, c.target, c.reduction), c.beta)

    def report(self, step: Any, result: Any) -> None:
        c = self.config
        if not c.log_every or step.index % c.log_every:
            return
        f = self._need()
        if self.needs_batch and self.last_batch_x is None:
            return
        lam = f.spectrum(batch=2, k=min(f.k, c.log_k))
        xs = f.sample(1, c.horizon)
        cond = jacobian_condition(f.dynamics, xs, f.k, burn_in=c.transient_steps)["log10_cond"]
        gnorm = gradient_norm_vs_delay(f.dynamics, xs, generator=f.generator)
        result.metrics[f"floss/log10_cond_{c.horizon - c.transient_steps}"] = float(cond.mean())
        result.metrics[f"floss/grad_norm_delay_{c.horizon}"] = float(gnorm[-1])
        result.metrics["floss/lambda_1"] = float(lam[0])
        result.metrics[f"floss/lambda_{lam.numel()}"] = float(lam[-1])
        result.metrics["floss/seconds"] = self.floss_seconds
        result.metrics["floss/updates"] = float(self.floss_updates)

    def summary(self) -> dict[str, Any]:
        f = self._need()
        out: dict[str, Any] = {"updates": self.floss_updates, "seconds": self.floss_seconds, "episodes": self.episodes,
                               "spectra": dict(self.spectra), "config": self.config.to_dict()}
        if not (self.needs_batch and self.last_batch_x is None):
            out["final_spectrum"] = f.spectrum(k=f.k).tolist()
        return out

