"""gradkit-flossing: Gradient Flossing (Engelken, NeurIPS 2023, arXiv:2312.17306).

Pushes the k largest Lyapunov exponents of an RNN's forward dynamics towards 0 with a differentiable
QR (Benettin) estimator, in separate optimiser phases before/during training (the paper's method) or
as an additive loss term (an extension), so that gradients neither explode nor vanish over long delays.
"""

from .adapters import (
    CellDynamics,
    GRUDynamics,
    LSTMDynamics,
    RecurrentDynamics,
    RNNDynamics,
    as_dynamics,
    from_cell,
    jvp_tangent,
)
from .config import FlossingConfig
from .lyapunov import (
    dns_lyapunov_exponent,
    flossing_loss,
    gradient_norm_vs_delay,
    jacobian_condition,
    long_term_jacobian,
    lyapunov_exponents,
    lyapunov_spectrum,
    random_frame,
)
from .schedule import Flosser, bernoulli_inputs, crop_inputs, floss
from .tasks import DelayTaskRNN, delayed_copy, delayed_xor, temporal_parity, train_delay_task

__version__ = "0.1.0"

__all__ = [
    "CellDynamics",
    "DelayTaskRNN",
    "Flosser",
    "FlossingConfig",
    "GRUDynamics",
    "LSTMDynamics",
    "RNNDynamics",
    "RecurrentDynamics",
    "as_dynamics",
    "bernoulli_inputs",
    "crop_inputs",
    "delayed_copy",
    "delayed_xor",
    "dns_lyapunov_exponent",
    "floss",
    "flossing_loss",
    "from_cell",
    "gradient_norm_vs_delay",
    "jacobian_condition",
    "jvp_tangent",
    "long_term_jacobian",
    "lyapunov_exponents",
    "lyapunov_spectrum",
    "random_frame",
    "temporal_parity",
    "train_delay_task",
]
