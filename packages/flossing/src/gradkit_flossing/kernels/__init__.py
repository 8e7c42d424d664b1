"""Triton kernels and their launchers (no autograd here; see ``gradkit_flossing.ops``).

Importing this module imports triton; callers go through ``gradkit_flossing.ops``, which only
imports it when ``gradkit.kernels.use_triton`` says a kernel should run.
"""

from .mgs_qr import mgs_qr_fwd
from .rnn_tangent import rnn_tangent_fwd

__all__ = ["mgs_qr_fwd", "rnn_tangent_fwd"]
