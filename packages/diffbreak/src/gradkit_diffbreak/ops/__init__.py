"""Ops that pick the Triton kernel or the plain-PyTorch reference (``gradkit.kernels.use_triton``)."""

from .ddpm_step import DDPMStepFunction, ddpm_step
from .eot import BroadcastCopiesFunction, broadcast_copies, copy_reduce

__all__ = ["ddpm_step", "DDPMStepFunction", "broadcast_copies", "BroadcastCopiesFunction", "copy_reduce"]
