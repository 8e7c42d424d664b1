"""Plain-PyTorch references of the fused element-wise steps (the CPU path and the kernels' test oracle)."""

from .fused import ddim_transition_ref, fd_update_ref, masked_error_probe_ref, per_sample_amax

__all__ = ["masked_error_probe_ref", "fd_update_ref", "ddim_transition_ref", "per_sample_amax"]
