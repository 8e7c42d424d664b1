"""Plain-PyTorch references for the Triton kernels (the CPU path and the test oracle)."""

from .qr import qr_logdiag_reference
from .rnn_tangent import rnn_tangent_step_reference

__all__ = ["qr_logdiag_reference", "rnn_tangent_step_reference"]
