"""Dispatch for the rate-BP LIF spike pass and rate backward.

CUDA tensors (or ``TRITON_INTERPRET=1``) run the Triton kernels of :mod:`gradkit_snn_sd.kernels.lif_rate`;
otherwise the plain-PyTorch reference runs. The kernels accumulate in fp32; float64 input always uses
the reference (the exactness tests run in float64).
"""

from __future__ import annotations

from typing import Optional

import torch
from gradkit.kernels import use_triton

from ..reference.lif import lif_rate_bwd_reference, lif_spike_pass_reference


def lif_rate_fwd(
    x_seq: torch.Tensor,
    v0: torch.Tensor | None = None,
    k0: torch.Tensor | None = None,
    *,
    lam: float,
    theta: float = 1.0,
    v_reset: Optional[float] = None,
    detach_reset: bool = True,
    alpha: float = 4.0,
    input_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spike pass of one LIF layer over ``x_seq [T, ...]`` -> ``(spikes, spike_sum, elig_sum, v_T, kappa_T)``."""
    kw = dict(lam=lam, theta=theta, v_reset=v_reset, detach_reset=detach_reset, alpha=alpha, input_scale=input_scale)
    if x_seq.dtype in (torch.float32, torch.float16, torch.bfloat16) and use_triton(x_seq):
        from ..kernels.lif_rate import lif_rate_fwd as _launch

        shape = x_seq.shape[1:]
        if v0 is None:
            v0 = torch.full(shape, 0.0 if v_reset is None else float(v_reset), dtype=torch.float32, device=x_seq.device)
        if k0 is None:
            k0 = torch.full(shape, float(input_scale), dtype=torch.float32, device=x_seq.device)
        return _launch(x_seq, v0, k0, **kw)  # type: ignore[arg-type]
    return lif_spike_pass_reference(x_seq, v0, k0, **kw)  # type: ignore[arg-type]


def lif_rate_bwd(grad_out: torch.Tensor, elig: torch.Tensor) -> torch.Tensor:
    """Rate-pass backward ``grad_out * elig``."""
    if grad_out.dtype in (torch.float32, torch.float16, torch.bfloat16) and use_triton(grad_out, elig):
        from ..kernels.lif_rate import lif_rate_bwd as _launch

        return _launch(grad_out, elig)
    return lif_rate_bwd_reference(grad_out, elig)
