"""Frozen, validated configs of the LinBP transform and the ILA second stage."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

from gradkit.config import Config
from gradkit.errors import ConfigError

__all__ = ["LinBPConfig", "ILAConfig"]


@dataclass(frozen=True)
class LinBPConfig(Config):
    """Hyperparameters of :class:`gradkit_linbp.LinBP`.

    Attributes:
        start: the first linearised position: an ``int`` indexes LinBP's units (the model's
            ``nn.ReLU`` modules and supported residual blocks, in module order; negative counts
            from the end), a ``str`` is a qualified module name: every unit at or after that
            module (in ``named_modules`` order) is linearised. ``0`` linearises everything.
        renorm: re-normalise each linearised residual branch's input gradient per example to the
            norm of its true gradient (the paper's rule; ReLUs outside residual blocks are never
            re-normalised).
        lam: multiplier of each linearised branch's input gradient (``lam`` of the paper's
            LinBP+SGM combination; 1.0 is plain LinBP).
        verify: on the first forward after attaching, check forward invariance of every adapted
            block, refuse shared ReLU modules and functional ``F.relu`` calls in the linearised region.
    """

    start: Union[int, str] = 0
    renorm: bool = True
    lam: float = 1.0
    verify: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.start, bool) or not isinstance(self.start, (int, str)):
            raise ConfigError(
                f"LinBPConfig: `start` must be an int (unit index) or a str (module name), got {self.start!r}"
            )
        if isinstance(self.start, str) and not self.start:
            raise ConfigError("LinBPConfig: `start` must be a non-empty module name such as 'features.23' or 'layer3.1'")
        if not isinstance(self.renorm, bool):
            raise ConfigError(f"LinBPConfig: `renorm` must be True or False, got {self.renorm!r}")
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or not math.isfinite(self.lam) or self.lam <= 0:
            raise ConfigError(f"LinBPConfig: `lam` must be a finite number > 0, got {self.lam!r}")
        if not isinstance(self.verify, bool):
            raise ConfigError(f"LinBPConfig: `verify` must be True or False, got {self.verify!r}")


@dataclass(frozen=True)
class ILAConfig(Config):
    """Hyperparameters of the ILA second stage (Huang et al., ICCV 2019).

    The budget (eps, alpha, steps, norm) is that of the ``gradkit.attack`` call the transform runs in.

    Attributes:
        layer: qualified name of the module whose output ``h`` is used (the paper's choice precedes
            the linearised region).
        normalize_guide: l2-normalise the guide ``h(x') - h(x0)`` per example (TA-Bench) instead of
            using it raw (original ILA and the LinBP reference code).
    """

    layer: str = ""
    normalize_guide: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str) or not self.layer:
            raise ConfigError("ILAConfig: `layer` must name a module of the model, e.g. 'features.12'")
        if not isinstance(self.normalize_guide, bool):
            raise ConfigError(f"ILAConfig: `normalize_guide` must be True or False, got {self.normalize_guide!r}")
