"""Configuration of the constrained sampler (a frozen, JSON round-tripping dataclass)."""

from __future__ import annotations

from dataclasses import dataclass

from gradkit.config import Config, check_in, check_positive, check_range
from gradkit.errors import ConfigError

__all__ = ["FastSampleConfig", "ESTIMATORS", "STEP_TRANSFORMS"]

#: gradient estimators, each its own name (see :mod:`gradkit_fastsample.estimators`)
ESTIMATORS = ("fd", "fd_central", "jvp", "dps", "x0_only")
#: how the direction is scaled before the update
STEP_TRANSFORMS = ("inf_norm", "l2_norm", "none")


def _int(owner: str, name: str, v: object, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{owner}: `{name}` must be an int, got {v!r}")
    if v < lo:
        raise ConfigError(f"{owner}: `{name}` must be >= {lo}, got {v!r}")


@dataclass(frozen=True)
class FastSampleConfig(Config):
    """Hyperparameters of :class:`gradkit_fastsample.ConstrainedSampler` (defaults: the paper's inpainting setup).

    Attributes:
        estimator: ``"fd"`` (the method: ``J g`` by one extra forward), ``"fd_central"`` (two probes,
            O(h^2)), ``"jvp"`` (exact forward-mode JVP, an oracle), ``"dps"`` (``J^T g`` by backprop
            through the denoiser, the DPS direction) or ``"x0_only"`` (correct ``x0_hat`` only, MPGD-style).
        num_inference_steps: outer denoising steps N (> 0).
        inner_steps: corrections K per outer step (>= 0; 0 = unconstrained sampling).
        lr_start, lr_end: step sizes ``linspace(lr_start, lr_end, K)`` (with ``inf_norm``: the largest
            entry of ``x_t`` moves by exactly this much).
        probe: finite-difference probe size ``h``: the perturbation's largest entry (``delta = h / max|g|``).
        eta: DDIM stochasticity of the transition (0 = deterministic DDIM; the paper's step is ~0.15).
        step_transform: ``"inf_norm"`` (``d / max|d|`` per sample, the paper), ``"l2_norm"``
            (``d / rms(d)``) or ``"none"`` (raw direction times the step size).
        fused: use the fused element-wise ops (Triton on CUDA) for the inpainting FD path.
    """

    estimator: str = "fd"
    num_inference_steps: int = 20
    inner_steps: int = 5
    lr_start: float = 0.5
    lr_end: float = 0.1
    probe: float = 5e-3
    eta: float = 0.15
    step_transform: str = "inf_norm"
    fused: bool = True

    def __post_init__(self) -> None:
        owner = "FastSampleConfig"
        check_in(owner, "estimator", self.estimator, ESTIMATORS)
        _int(owner, "num_inference_steps", self.num_inference_steps, 1)
        _int(owner, "inner_steps", self.inner_steps, 0)
        check_positive(owner, "lr_start", self.lr_start, allow_zero=True)
        check_positive(owner, "lr_end", self.lr_end, allow_zero=True)
        check_positive(owner, "probe", self.probe)
        check_range(owner, "eta", self.eta, 0.0, 1.0)
        check_in(owner, "step_transform", self.step_transform, STEP_TRANSFORMS)
        if not isinstance(self.fused, bool):
            raise ConfigError(f"{owner}: `fused` must be a bool, got {self.fused!r}")

    def step_sizes(self) -> list[float]:
        """``linspace(lr_start, lr_end, inner_steps)``."""
        k = self.inner_steps
        if k == 1:
            return [float(self.lr_start)]
        return [self.lr_start + (self.lr_end - self.lr_start) * i / (k - 1) for i in range(k)]
