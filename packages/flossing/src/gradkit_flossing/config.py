"""``FlossingConfig``: hyperparameters of gradient flossing (reference values where the paper's code is explicit)."""

from __future__ import annotations

from dataclasses import dataclass

from gradkit.config import Config, check_in, check_positive
from gradkit.errors import ConfigError

__all__ = ["FlossingConfig", "MODES", "PARAMS"]

MODES = ("phases", "regularizer", "both", "off")
PARAMS = ("recurrent+input+bias", "recurrent")


def _int(owner: str, name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{owner}: `{name}` must be an int >= {lo}, got {value!r}")


@dataclass(frozen=True)
class FlossingConfig(Config):
    """Gradient flossing (Engelken, NeurIPS 2023, arXiv:2312.17306).

    Attributes:
        k: number of Lyapunov exponents pushed to ``target`` (``None``: ``min(state_dim, 32)``).
        target: target exponent (0 = neither exploding nor vanishing).
        t_ons: steps between QR re-orthonormalisations (reference: 1).
        horizon: input steps per flossing sequence (reference ``Tp = 55``).
        transient: steps not accumulated (``None``: ``10 + ceil(horizon / 10)``, as the reference).
        batch: sequences per flossing update (reference: 1).
        lr: learning rate of flossing's own Adam (reference 1e-3; state never shared with the task's).
        betas: Adam betas of the flossing optimiser.
        clip: max gradient norm of a flossing update (``None``: no clipping, as the reference).
        pre_steps: flossing updates before training (reference 500).
        inter_every: run a flossing episode at task steps ``inter_every, 2 inter_every, ...``
            (0 disables inter-flossing).
        inter_steps: updates per episode (reference 500).
        inter_max: number of episodes (reference 2).
        mode: ``"phases"`` (separate optimiser phases, the reference), ``"regularizer"`` (adds
            ``beta * L_floss`` to the task loss every ``reg_every`` steps; an extension, not in the
            paper's code), ``"both"``, or ``"off"`` (diagnostics only).
        beta: weight of the additive term in ``regularizer``/``both`` modes.
        reg_every: add the term on every ``reg_every``-th task step.
        params: which parameters flossing updates: ``"recurrent+input+bias"`` (reference) or
            ``"recurrent"`` (``weight_hh`` only).
        normalize: ``"per_step"`` exponents or ``"total"`` (``T * lambda``).
        reduction: ``"mean"`` over exponents (reference) or ``"sum"``.
        detach_state: detach the trajectory (NOT the paper's method; see ``lyapunov_spectrum``).
        sampler: inputs for flossing: ``"batch"`` (crop the task batch's inputs to ``horizon`` steps)
            or ``"bernoulli"`` (fresh Bernoulli(1/2) inputs, as the reference's tasks).
        seed: seed of the flossing RNG (frames and sampled inputs).
        log_every: report exponents every ``log_every`` task steps (0: never).
        log_k: how many exponents to put in step reports.
        module: dotted name of the recurrent submodule when the model holds several.
    """

    k: int | None = None
    target: float = 0.0
    t_ons: int = 1
    horizon: int = 55
    transient: int | None = None
    batch: int = 1
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    clip: float | None = None
    pre_steps: int = 500
    inter_every: int = 100
    inter_steps: int = 500
    inter_max: int = 2
    mode: str = "phases"
    beta: float = 1.0
    reg_every: int = 1
    params: str = "recurrent+input+bias"
    normalize: str = "per_step"
    reduction: str = "mean"
    detach_state: bool = False
    sampler: str = "batch"
    seed: int = 0
    log_every: int = 100
    log_k: int = 4
    module: str | None = None

    def __post_init__(self) -> None:
        o = "FlossingConfig"
        if self.k is not None:
            _int(o, "k", self.k, 1)
        _int(o, "t_ons", self.t_ons, 1)
        _int(o, "horizon", self.horizon, 2)
        if self.transient is not None:
            _int(o, "transient", self.transient, 0)
        if self.transient_steps >= self.horizon:
            raise ConfigError(
                f"{o}: `transient`={self.transient_steps} must be < `horizon`={self.horizon} (no step would be accumulated)"
            )
        _int(o, "batch", self.batch, 1)
        check_positive(o, "lr", self.lr)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"{o}: `betas` must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.clip is not None:
            check_positive(o, "clip", self.clip)
        for name in ("pre_steps", "inter_every", "inter_steps", "inter_max", "log_every", "seed"):
            _int(o, name, getattr(self, name), 0)
        _int(o, "reg_every", self.reg_every, 1)
        _int(o, "log_k", self.log_k, 1)
        check_in(o, "mode", self.mode, MODES)
        check_positive(o, "beta", self.beta, allow_zero=True)
        check_in(o, "params", self.params, PARAMS)
        check_in(o, "normalize", self.normalize, ("per_step", "total"))
        check_in(o, "reduction", self.reduction, ("mean", "sum"))
        check_in(o, "sampler", self.sampler, ("batch", "bernoulli"))
        if self.target != self.target:
            raise ConfigError(f"{o}: `target` must be a finite number, got {self.target!r}")

    @property
    def transient_steps(self) -> int:
        """The transient actually used (the reference's ``10 + ceil(horizon / 10)`` when unset)."""
        import math

        return self.transient if self.transient is not None else 10 + math.ceil(self.horizon / 10)

    @property
    def phases(self) -> bool:
        return self.mode in ("phases", "both")

    @property
    def regularizer(self) -> bool:
        return self.mode in ("regularizer", "both")
