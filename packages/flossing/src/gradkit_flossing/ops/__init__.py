"""Autograd ops that dispatch between the Triton kernels and the torch references.

``gradkit.kernels.use_triton(*tensors)`` decides: CUDA tensors run the kernels, CPU tensors run the
reference unless ``TRITON_INTERPRET=1`` (then the kernel runs in the interpreter, which is how CI
checks its maths). float64 always takes the reference (the kernels accumulate in float32).
Gradients of the kernel path are recomputed in backward with the torch reference (checkpoint
style), so forward memory holds only the op's inputs.
"""

from .qr_logdiag import QRLogDiagFunction, qr_logdiag
from .rnn_tangent import RNNTangentStepFunction, rnn_tangent_step

__all__ = ["QRLogDiagFunction", "qr_logdiag", "RNNTangentStepFunction", "rnn_tangent_step"]
