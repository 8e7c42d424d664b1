"""Plain-PyTorch references: the CPU path and the test oracle of every kernel in ``kernels/``."""

from .renorm import renorm_scale_ref
from .update import attack_update_ref

__all__ = ["renorm_scale_ref", "attack_update_ref"]
