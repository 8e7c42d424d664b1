"""gradkit-linbp: LinBP (linear backpropagation) for transferable adversarial examples.

Guo, Li, Chen, "Backpropagating Linearly Improves Transferability of Adversarial Examples",
NeurIPS 2020, https://arxiv.org/abs/2012.03528.
"""

from .adapters import BlockAdapter, register_block_adapter
from .config import ILAConfig, LinBPConfig
from .functional import branch_linbp, linear_relu
from .transform import LinBP, find_units, select_units

__all__ = [
    "LinBP",
    "LinBPConfig",
    "ILAConfig",
    "BlockAdapter",
    "register_block_adapter",
    "find_units",
    "select_units",
    "linear_relu",
    "branch_linbp",
]
__version__ = "0.1.0"
