"""Reference for the per-token weighted cross-entropy over one logits chunk.

Forward: for each row ``n`` of ``logits`` (N, V) and target ``y_n`` return the
token log-probability ``logp_n = logits[n, y_n] - logsumexp(logits[n])`` and the
row log-sum-exp. Rows whose target equals ``ignore_index`` get ``logp = 0``.

Backward (in place): given ``grad_logp`` (N,) = dL/dlogp_n, overwrite ``logits``
with ``dL/dlogits = grad_logp[:, None] * (onehot(y) - softmax(logits))``; ignored
rows become zero. SFT uses ``grad_logp = -1/N``, GRPO the per-token derivative
of its clipped surrogate, DPO the per-sequence coefficient ``c_b``.

Maths runs in float32 for half inputs and in the input dtype for float32/64.
"""

from __future__ import annotations

import torch

_ROWS = 64


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def token_logprobs_ref(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(logp, lse)``, both (N,) in the compute dtype."""
    cd = _compute_dtype(logits.dtype)
    n = logits.shape[0]
    valid = targets != ignore_index
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    logp = torch.empty(n, dtype=cd, device=logits.device)
    lse = torch.empty(n, dtype=cd, device=logits.device)
    for r0 in range(0, n, _ROWS):  # fused log_softmax on row blocks: a small temporary, one pass
        x = logits[r0:r0 + _ROWS].to(cd)
        ls = torch.log_softmax(x, dim=-1)
        lse[r0:r0 + _ROWS] = x[:, 0] - ls[:, 0]
        logp[r0:r0 + _ROWS] = ls.gather(-1, safe[r0:r0 + _ROWS].unsqueeze(-1)).squeeze(-1)
    logp = torch.where(valid, logp, torch.zeros_like(logp))
    return logp, lse


def weighted_ce_bwd_ref(
    logits: torch.Tensor,
    targets: torch.Tensor,
    lse: torch.Tensor,
    grad_logp: torch.Tensor,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Overwrite ``logits`` with dL/dlogits and return it (in place when the dtype is float32/64)."""
    cd = _compute_dtype(logits.dtype)
    valid = targets != ignore_index
    g = torch.where(valid, grad_logp.to(cd), torch.zeros((), dtype=cd, device=logits.device))
    x = logits if logits.dtype == cd else logits.to(cd)
    x.sub_(lse.to(cd).unsqueeze(-1)).exp_().mul_(-g.unsqueeze(-1))  # -g * softmax
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    x.scatter_add_(-1, safe.unsqueeze(-1), g.unsqueeze(-1))
    if x is not logits:
        logits.copy_(x)
    return logits
