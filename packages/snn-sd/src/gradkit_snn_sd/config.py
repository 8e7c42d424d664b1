"""Frozen, validated configs (round-trip to dict/JSON through :class:`gradkit.config.Config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from gradkit.config import Config, check_positive
from gradkit.errors import ConfigError

__all__ = ["RateBPConfig", "SDConfig"]


@dataclass(frozen=True)
class RateBPConfig(Config):
    """Rate-based backpropagation (Yu et al., NeurIPS 2024).

    Attributes:
        T: expected number of time steps (``None``: take it from each input). A mismatch raises.
        loss_scale: gradient scale of the rate pass: ``"1/T"`` (the published training scripts
            backpropagate ``loss / T``; an effective learning-rate change, not a correctness factor)
            or a positive float (``1.0`` gives BPTT-magnitude gradients).
    """

    T: Optional[int] = None
    loss_scale: Union[float, str] = "1/T"

    def __post_init__(self) -> None:
        if self.T is not None:
            if isinstance(self.T, bool) or not isinstance(self.T, int) or self.T <= 0:
                raise ConfigError(f"RateBPConfig: `T` must be a positive int (number of time steps) or None, got {self.T!r}")
        if isinstance(self.loss_scale, str):
            if self.loss_scale != "1/T":
                raise ConfigError(f"RateBPConfig: `loss_scale` must be '1/T' or a positive float, got {self.loss_scale!r}")
        elif isinstance(self.loss_scale, bool) or not isinstance(self.loss_scale, (int, float)):
            raise ConfigError(f"RateBPConfig: `loss_scale` must be '1/T' or a positive float, got {self.loss_scale!r}")
        else:
            check_positive("RateBPConfig", "loss_scale", float(self.loss_scale))

    def scale_for(self, T: int) -> float:
        return 1.0 / T if self.loss_scale == "1/T" else float(self.loss_scale)


@dataclass(frozen=True)
class SDConfig(Config):
    """Enhanced self-distillation (Zhao, Yu et al., NeurIPS 2025).

    Attributes:
        stages: names of the submodules whose (time-major ``[T, B, C, H, W]``) outputs feed the ANN
            branches, e.g. ``("layer1", "layer2", "layer3")``.
        alpha: weight of each branch's cross-entropy.
        beta: weight of the summed distillation terms (all exits, head included).
        temperature: distillation temperature tau.
        final_ce_weight: weight of the head's cross-entropy; ``None`` = ``alpha`` (CIFAR script).
            The objective already contributes the head's CE with weight 1, so ``w - 1`` is added.
        branch_width: channels of the branches' last block (``None``: twice the deepest stage's).
        branch_spatial: spatial size the branches downsample to (``None``: half the deepest stage's).
    """

    stages: tuple = ()
    alpha: float = 1.0
    beta: float = 0.3
    temperature: float = 3.0
    final_ce_weight: Optional[float] = None
    branch_width: Optional[int] = None
    branch_spatial: Optional[int] = None

    def __post_init__(self) -> None:
        if isinstance(self.stages, str):
            object.__setattr__(self, "stages", (self.stages,))
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))
        if not isinstance(self.stages, tuple) or not all(isinstance(s, str) and s for s in self.stages):
            raise ConfigError(f"SDConfig: `stages` must be a tuple of submodule names, got {self.stages!r}")
        if len(set(self.stages)) != len(self.stages):
            raise ConfigError(f"SDConfig: `stages` has duplicates: {self.stages!r}")
        check_positive("SDConfig", "alpha", float(self.alpha), allow_zero=True)
        check_positive("SDConfig", "beta", float(self.beta), allow_zero=True)
        check_positive("SDConfig", "temperature", float(self.temperature))
        if self.final_ce_weight is not None:
            check_positive("SDConfig", "final_ce_weight", float(self.final_ce_weight), allow_zero=True)
        for name in ("branch_width", "branch_spatial"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ConfigError(f"SDConfig: `{name}` must be a positive int or None, got {v!r}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["stages"] = list(self.stages)
        return d
