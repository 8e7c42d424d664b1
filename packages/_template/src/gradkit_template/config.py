from __future__ import annotations

from dataclasses import dataclass

from gradkit.config import Config, check_positive


@dataclass(frozen=True)
class ScaleConfig(Config):
    """Hyperparameters of :class:`GradScale`."""

    factor: float = 0.5

    def __post_init__(self) -> None:
        check_positive("GradScale", "factor", self.factor)
