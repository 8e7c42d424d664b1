"""Fused reverse-step kernels: ``out = c1 * clamp(a x - b eps) + c2 x + sigma z`` and its backward.

Reference: :mod:`gradkit_diffbreak.reference.ddpm_step`. Arithmetic is done in fp32 whatever the
storage dtype (fp16/bf16 loads are upcast), results are stored in the input dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 4096


@triton.jit
def _ddpm_step_fwd_kernel(
    x_ptr, eps_ptr, z_ptr, out_ptr, n, a, b, c1, c2, sigma,
    CLIP: tl.constexpr, HAS_NOISE: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    e = tl.load(eps_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    x0 = a * x - b * e
    if CLIP:
        x0 = tl.minimum(tl.maximum(x0, -1.0), 1.0)
    out = c1 * x0 + c2 * x
    if HAS_NOISE:
        z = tl.load(z_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        out = out + sigma * z
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _ddpm_step_bwd_kernel(
    g_ptr, x_ptr, eps_ptr, dx_ptr, deps_ptr, n, a, b, c1, c2,
    CLIP: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    gm = g
    if CLIP:
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        e = tl.load(eps_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        x0 = a * x - b * e
        inside = (x0 >= -1.0) & (x0 <= 1.0)
        gm = tl.where(inside, g, 0.0)
    dx = c2 * g + (a * c1) * gm
    de = (-b * c1) * gm
    tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    tl.store(deps_ptr + offs, de.to(deps_ptr.dtype.element_ty), mask=mask)


def ddpm_step_fwd(
    x: torch.Tensor, eps: torch.Tensor, noise: torch.Tensor | None,
    a: float, b: float, c1: float, c2: float, sigma: float, clip: bool,
) -> torch.Tensor:
    x, eps = x.contiguous(), eps.contiguous()
    has_noise = noise is not None and sigma != 0.0
    z = noise.contiguous() if has_noise else x
    out = torch.empty_like(x)
    n = x.numel()
    grid = (triton.cdiv(n, BLOCK),)
    _ddpm_step_fwd_kernel[grid](
        x, eps, z, out, n, float(a), float(b), float(c1), float(c2), float(sigma),
        CLIP=bool(clip), HAS_NOISE=has_noise, BLOCK=BLOCK,
    )
    return out


def ddpm_step_bwd(
    grad: torch.Tensor, x: torch.Tensor, eps: torch.Tensor,
    a: float, b: float, c1: float, c2: float, clip: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    grad, x, eps = grad.contiguous(), x.contiguous(), eps.contiguous()
    dx = torch.empty_like(x)
    deps = torch.empty_like(eps)
    n = x.numel()
    grid = (triton.cdiv(n, BLOCK),)
    _ddpm_step_bwd_kernel[grid](
        grad, x, eps, dx, deps, n, float(a), float(b), float(c1), float(c2),
        CLIP=bool(clip), BLOCK=BLOCK,
    )
    return dx, deps
