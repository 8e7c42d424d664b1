"""Per-example gradient re-normalisation of a linearised residual branch (LinBP, Sec. 3 of the paper).

Given the branch VJP with linearised ReLUs ``g_lin`` (the direction) and with the true ReLU masks
``g_true`` (the magnitude), both ``[N, ...]``, return ``lam * ||g_true[n]|| / ||g_lin[n]|| * g_lin[n]``
with l2 norms over every non-batch dimension. Rows where ``||g_lin[n]|| == 0`` give zeros.
"""

from __future__ import annotations

import torch


def renorm_scale_ref(g_lin: torch.Tensor, g_true: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Reference re-normalisation; accumulates in float32 (float64 stays float64)."""
    acc = torch.float64 if g_lin.dtype == torch.float64 else torch.float32
    n = g_lin.shape[0]
    gl = g_lin.reshape(n, -1).to(acc)
    gt = g_true.reshape(n, -1).to(acc)
    sl = (gl * gl).sum(dim=1)
    st = (gt * gt).sum(dim=1)
    scale = torch.where(sl > 0, lam * torch.sqrt(st) / torch.sqrt(torch.where(sl > 0, sl, 1.0)), 0.0)
    return (gl * scale[:, None]).to(g_lin.dtype).reshape(g_lin.shape)
