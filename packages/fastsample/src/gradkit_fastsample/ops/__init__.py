"""Dispatching ops: the Triton kernel when ``gradkit.kernels.use_triton(...)`` says so, else the reference."""

from .fused import ddim_transition, fd_update, masked_error_probe

__all__ = ["masked_error_probe", "fd_update", "ddim_transition"]
