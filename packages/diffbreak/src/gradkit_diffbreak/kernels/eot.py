"""EOT copy reduction: ``out[b, i] = scale * sum_j g[b * copies + j, i]`` (fp32 accumulation).

Reference: :func:`gradkit_diffbreak.reference.eot.copy_reduce_ref`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 2048


@triton.jit
def _copy_reduce_fwd_kernel(g_ptr, out_ptr, d, copies, scale, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    pid = tl.program_id(1)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < d
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    base = b * copies * d
    for j in range(0, copies):
        acc += tl.load(g_ptr + base + j * d + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + b * d + offs, (acc * scale).to(out_ptr.dtype.element_ty), mask=mask)


def copy_reduce_fwd(g: torch.Tensor, copies: int, scale: float = 1.0) -> torch.Tensor:
    g = g.contiguous()
    lead = g.shape[0] // copies
    d = g[0].numel() if g.shape[0] else 0
    out = torch.empty((lead, *g.shape[1:]), dtype=g.dtype, device=g.device)
    if lead == 0 or d == 0:
        return out.zero_()
    grid = (lead, triton.cdiv(d, BLOCK))
    _copy_reduce_fwd_kernel[grid](g, out, d, copies, float(scale), BLOCK=BLOCK)
    return out
