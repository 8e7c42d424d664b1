"""Plain-PyTorch references: the CPU path and the oracle for every Triton kernel."""

from .ddpm_step import ddpm_step_bwd_ref, ddpm_step_ref
from .eot import copy_reduce_ref

__all__ = ["ddpm_step_ref", "ddpm_step_bwd_ref", "copy_reduce_ref"]
