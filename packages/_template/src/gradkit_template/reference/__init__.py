"""Plain-PyTorch reference: the CPU path and the test oracle."""

import torch


def scale_reference(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x * factor``, computed in float32 for half inputs (as the kernel does), else in ``x.dtype``."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return (x.float() * factor).to(x.dtype)
    return x * factor
