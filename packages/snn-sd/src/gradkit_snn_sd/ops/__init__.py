"""Ops that pick the Triton kernel or the reference per call (``gradkit.kernels.use_triton``)."""

from .lif_rate import lif_rate_bwd, lif_rate_fwd

__all__ = ["lif_rate_fwd", "lif_rate_bwd"]
