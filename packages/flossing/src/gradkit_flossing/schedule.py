"""Flossing phases: an own Adam on the recurrent parameters minimising the flossing loss.

As in the paper's code, flossing never shares optimiser state with the task, and its losses are never
summed with the task loss (that is the ``regularizer`` extension, see ``plugin.py``). A flossing update
leaves the parameters' ``.grad`` exactly as it found them, so it can run in the middle of a task step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from gradkit.errors import ArgumentTypeError, ConfigError
from torch import Tensor, nn

from .adapters import RecurrentDynamics, _TorchRNNBase, as_dynamics
from .config import FlossingConfig
from .lyapunov import _check_k, flossing_loss, lyapunov_spectrum

__all__ = ["Flosser", "floss", "crop_inputs", "bernoulli_inputs"]

Sampler = Callable[[int, int], Tensor]


def bernoulli_inputs(
    batch: int, length: int, input_size: int, *, batch_first: bool, generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", p: float = 0.5, amplitude: float = 1.0,
) -> Tensor:
    """Fresh Bernoulli(p) * amplitude inputs (the reference's task input distribution)."""
    x = (torch.rand(batch, length, input_size, generator=generator) < p).to(dtype) * amplitude
    x = x.to(device)
    return x if batch_first else x.transpose(0, 1).contiguous()


def crop_inputs(
    xs: Tensor, batch: int, length: int, *, batch_first: bool, generator: torch.Generator | None = None
) -> Tensor:
    """``batch`` random sequences of ``xs`` cropped at a random offset to ``length`` steps (tiled in time
    when shorter); in the same layout as ``xs``."""
    xb = xs if batch_first else xs.transpose(0, 1)  # (B, T, I)
    B, T = xb.shape[0], xb.shape[1]
    if T < length:
        reps = -(-length // T)
        xb = xb.repeat(1, reps, 1)
        T = xb.shape[1]
    rows = torch.randint(0, B, (batch,), generator=generator)
    start = int(torch.randint(0, T - length + 1, (1,), generator=generator))
    out = xb[rows.to(xb.device), start : start + length].detach()
    return out if batch_first else out.transpose(0, 1).contiguous()


def _select_params(dyn: RecurrentDynamics, which: str) -> list[nn.Parameter]:
    params = dyn.flossing_parameters()
    if which == "recurrent":
        if not isinstance(dyn, _TorchRNNBase):
            raise ConfigError("`params='recurrent'` needs an nn.RNN/GRU/LSTM adapter; pass the parameters to from_cell instead")
        ids = {id(w_hh) for _, w_hh, _, _ in dyn.layers()}
        params = [p for p in params if id(p) in ids]
    if not params:
        raise ConfigError("flossing found no trainable parameters in the dynamics (all frozen, or none given to from_cell)")
    return params


class Flosser:
    """Runs flossing updates on a recurrent model with its own optimiser.

    Args:
        model: an ``nn.RNN``/``GRU``/``LSTM``, a model containing one, or a ``RecurrentDynamics``.
        config: a :class:`FlossingConfig` (defaults: the reference values).
        sampler: ``sampler(batch, length) -> xs`` in the dynamics' layout; default: Bernoulli(1/2)
            inputs of the model's ``input_size`` (``crop_inputs`` of task batches inside the loop plugin).

    Examples::

        >>> import torch
        >>> from gradkit_flossing import Flosser, FlossingConfig
        >>> rnn = torch.nn.RNN(1, 16, batch_first=True)
        >>> f = Flosser(rnn, FlossingConfig(k=4, horizon=20, transient=5))
        >>> losses = f.run(3)
        >>> len(losses)
        3
    """

    def __init__(self, model: Any, config: FlossingConfig | None = None, *, sampler: Sampler | None = None) -> None:
        if config is None:
            config = FlossingConfig()
        if not isinstance(config, FlossingConfig):
            raise ArgumentTypeError(f"`config` must be a FlossingConfig, got {type(config).__name__}")
        self.config = config
        self.dynamics = as_dynamics(model, module=config.module)
        self.k = _check_k(config.k if config.k is not None else min(self.dynamics.state_dim, 32), self.dynamics.state_dim)
        self.params = _select_params(self.dynamics, config.params)
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr, betas=config.betas)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.sampler = sampler
        self.updates = 0
        self.seconds = 0.0
        self.history: list[dict[str, float]] = []

    # -- inputs -----------------------------------------------------------------------------------
    def sample(self, batch: int | None = None, length: int | None = None) -> Tensor:
        b = self.config.batch if batch is None else batch
        n = self.config.horizon if length is None else length
        p = self.params[0]
        if self.sampler is not None:
            return self.sampler(b, n).to(device=p.device, dtype=p.dtype)
        return self.bernoulli(b, n)

    def bernoulli(self, batch: int, length: int) -> Tensor:
        """Fresh Bernoulli(1/2) inputs of the model's ``input_size`` in its layout."""
        if self.dynamics.input_size is None:
            raise ConfigError("flossing needs inputs: pass `sampler=` (the dynamics declare no input_size)")
        p = self.params[0]
        return bernoulli_inputs(batch, length, self.dynamics.input_size, batch_first=self.dynamics.batch_first,
                                generator=self.generator, dtype=p.dtype, device=p.device)

    # -- loss -------------------------------------------------------------------------------------
    def exponents(self, xs: Tensor, k: int | None = None) -> Tensor:
        """Differentiable ``(B, k)`` exponents on ``xs`` with this config's estimator settings."""
        c = self.config
        length = xs.shape[1 if self.dynamics.batch_first else 0]
        return lyapunov_spectrum(
            self.dynamics, xs, self.k if k is None else k, t_ons=c.t_ons, transient=min(c.transient_steps, length - 1),
            generator=self.generator, normalize=c.normalize, detach_state=c.detach_state,
        )

    def loss(self, xs: Tensor) -> tuple[Tensor, Tensor]:
        lam = self.exponents(xs)
        return flossing_loss(lam, self.config.target, self.config.reduction), lam

    def update(self, xs: Tensor | None = None) -> dict[str, float]:
        """One flossing update; the parameters' ``.grad`` is left as it was."""
        t0 = time.perf_counter()
        xs = self.sample() if xs is None else xs
        loss, lam = self.loss(xs)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        _average_across_processes(grads)
        if self.config.clip is not None:
            _clip(grads, self.config.clip)
        saved = [p.grad for p in self.params]
        try:
            for p, g in zip(self.params, grads):
                p.grad = g
            self.optimizer.step()
        finally:
            for p, g in zip(self.params, saved):
                p.grad = g
        self.updates += 1
        self.seconds += time.perf_counter() - t0
        lam_m = lam.detach().mean(0)
        rec = {"update": float(self.updates), "loss": float(loss.detach()), "lambda_1": float(lam_m[0]), "lambda_k": float(lam_m[-1])}
        self.history.append(rec)
        return rec

    def run(self, n: int, *, progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
            inputs: Callable[[], Tensor] | None = None) -> list[float]:
        """``n`` updates (fresh inputs each); returns the losses."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"number of flossing updates must be an int >= 0, got {n!r}")
        it: Iterable[int] = range(n) if progress is None else progress(range(n))
        return [self.update(None if inputs is None else inputs())["loss"] for _ in it]

    @torch.no_grad()
    def spectrum(self, xs: Tensor | None = None, *, batch: int = 4, length: int | None = None, k: int | None = None) -> Tensor:
        """No-grad exponents averaged over ``batch`` sequences: ``(k,)``."""
        xs = self.sample(batch, length or max(self.config.horizon, 100)) if xs is None else xs
        return self.exponents(xs, k).mean(0)


def _average_across_processes(grads: list[Tensor]) -> None:
    """Under torch.distributed (DDP via accelerate), average flossing gradients over ranks so that
    every rank applies the same update (each rank flosses on its own inputs)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for g in grads:
            dist.all_reduce(g, op=dist.ReduceOp.SUM)
            g.div_(dist.get_world_size())


def _clip(grads: list[Tensor], max_norm: float) -> None:
    """Scale ``grads`` in place so that their joint 2-norm is at most ``max_norm``."""
    total = torch.nn.utils.get_total_norm(grads)
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale)


def floss(model: Any, sampler: Sampler | None = None, steps: int = 500, config: FlossingConfig | None = None, **overrides: Any) -> list[dict[str, float]]:
    """Floss ``model`` for ``steps`` updates; returns the per-update history (loss, lambda_1, lambda_k).

    ``overrides`` replace fields of ``config`` (e.g. ``k=16, lr=3e-3``).
    """
    config = config or FlossingConfig()
    if overrides:
        config = config.replace(**overrides)
    f = Flosser(model, config, sampler=sampler)
    f.run(steps)
    return f.history
