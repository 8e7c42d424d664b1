"""Ops that pick the Triton kernel or the plain-PyTorch reference per call (``gradkit.kernels.use_triton``)."""

from .renorm import renorm_scale
from .update import attack_update

__all__ = ["renorm_scale", "attack_update"]
