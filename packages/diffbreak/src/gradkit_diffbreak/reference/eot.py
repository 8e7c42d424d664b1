"""EOT reduction over purification copies, in plain PyTorch.

Copies of one input sit next to each other in the batch (``index = b * copies + j``). The input
gradient of an EOT loss is the reduction of the per-copy gradients over ``j``.
"""

from __future__ import annotations

import torch


def copy_reduce_ref(g: torch.Tensor, copies: int, scale: float = 1.0) -> torch.Tensor:
    """``scale * sum_j g[b * copies + j]`` for a ``(B * copies, ...)`` tensor -> ``(B, ...)``."""
    lead = g.shape[0] // copies
    out = g.reshape(lead, copies, *g.shape[1:]).sum(1)
    return out * scale if scale != 1.0 else out
