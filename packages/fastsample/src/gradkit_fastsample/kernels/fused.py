"""Triton kernels for the sampler's element-wise steps, and their launchers.

Each op works on ``[B, N]`` views (one row per sample). Per-sample ``max |.|`` is a two-launch
reduction without atomics: the first launch writes one partial maximum per ``(sample, block)``, the
second reduces the row of partial maxima and applies the update, so results are deterministic.
All arithmetic is float32; outputs take the dtype of the output buffer.

References: :mod:`gradkit_fastsample.reference.fused`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["masked_error_probe_fwd", "fd_update_fwd", "ddim_transition_fwd"]


@triton.jit
def _masked_error_fwd_kernel(x0_ptr, y_ptr, m_ptr, g_ptr, part_ptr, N, NB, BLOCK: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs = pid_n * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    base = pid_b.to(tl.int64) * N
    x0 = tl.load(x0_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    m = tl.load(m_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    g = m * (y - x0)
    tl.store(g_ptr + base + offs, g, mask=valid)
    tl.store(part_ptr + pid_b * NB + pid_n, tl.max(tl.abs(g), axis=0))


@triton.jit
def _probe_fwd_kernel(x_ptr, g_ptr, part_ptr, xp_ptr, delta_ptr, h, N, NB, BLOCK: tl.constexpr, BLOCK_NB: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_n = tl.program_id(1)
    p_offs = tl.arange(0, BLOCK_NB)
    part = tl.load(part_ptr + pid_b * NB + p_offs, mask=p_offs < NB, other=0.0)
    amax = tl.max(part, axis=0)
    delta = tl.where(amax > 0.0, h / tl.maximum(amax, 1e-38), 0.0)
    offs = pid_n * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    base = pid_b.to(tl.int64) * N
    x = tl.load(x_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + base + offs, mask=valid, other=0.0)
    xp = x + delta * g
    tl.store(xp_ptr + base + offs, xp.to(xp_ptr.dtype.element_ty), mask=valid)
    tl.store(delta_ptr + pid_b, delta, mask=pid_n == 0)


@triton.jit
def _fd_amax_fwd_kernel(x0p_ptr, x0_ptr, part_ptr, N, NB, BLOCK: tl.constexpr):
    pid_b = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs = pid_n * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    base = pid_b.to(tl.int64) * N
    a = tl.load(x0p_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    b = tl.load(x0_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    tl.store(part_ptr + pid_b * NB + pid_n, tl.max(tl.abs(a - b), axis=0))


@triton.jit
def _fd_update_fwd_kernel(
    x_ptr, x0p_ptr, x0_ptr, part_ptr, lr_ptr, out_ptr, N, NB, BLOCK: tl.constexpr, BLOCK_NB: tl.constexpr
):
    pid_b = tl.program_id(0)
    pid_n = tl.program_id(1)
    p_offs = tl.arange(0, BLOCK_NB)
    part = tl.load(part_ptr + pid_b * NB + p_offs, mask=p_offs < NB, other=0.0)
    amax = tl.max(part, axis=0)
    lr = tl.load(lr_ptr + pid_b)
    scale = tl.where(amax > 0.0, lr / tl.maximum(amax, 1e-38), 0.0)
    offs = pid_n * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    base = pid_b.to(tl.int64) * N
    x = tl.load(x_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    a = tl.load(x0p_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    b = tl.load(x0_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    out = x + scale * (a - b)
    tl.store(out_ptr + base + offs, out.to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _ddim_transition_fwd_kernel(
    x0_ptr, eps_ptr, z_ptr, a_ptr, b_ptr, s_ptr, out_ptr, N, HAS_NOISE: tl.constexpr, BLOCK: tl.constexpr
):
    pid_b = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs = pid_n * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    base = pid_b.to(tl.int64) * N
    a = tl.load(a_ptr + pid_b)
    b = tl.load(b_ptr + pid_b)
    x0 = tl.load(x0_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    eps = tl.load(eps_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    out = a * x0 + b * eps
    if HAS_NOISE:
        s = tl.load(s_ptr + pid_b)
        z = tl.load(z_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
        out = out + s * z
    tl.store(out_ptr + base + offs, out.to(out_ptr.dtype.element_ty), mask=valid)


def _blocks(n: int) -> tuple[int, int, int]:
    block = min(triton.next_power_of_2(max(n, 16)), 4096)
    nb = triton.cdiv(n, block)
    return block, nb, triton.next_power_of_2(max(nb, 2))


def _rows(t: torch.Tensor, b: int) -> torch.Tensor:
    return t.contiguous().view(b, -1)


def masked_error_probe_fwd(
    x: torch.Tensor, x0: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, h: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch: ``g = mask*(y-x0)``, ``delta = h/max|g|`` per sample, ``x_probe = x + delta*g``.

    ``y`` and ``mask`` must already have ``x0``'s shape. Returns ``(g fp32, x_probe, delta [B] fp32)``.
    """
    bsz = x.shape[0]
    n = x[0].numel()
    block, nb, block_nb = _blocks(n)
    x0r, yr, mr, xr = (_rows(t, bsz) for t in (x0, y, mask, x))
    g = torch.empty((bsz, n), device=x.device, dtype=torch.float32)
    part = torch.empty((bsz, nb), device=x.device, dtype=torch.float32)
    xp = torch.empty_like(xr)
    delta = torch.empty((bsz,), device=x.device, dtype=torch.float32)
    _masked_error_fwd_kernel[(bsz, nb)](x0r, yr, mr, g, part, n, nb, BLOCK=block)
    _probe_fwd_kernel[(bsz, nb)](xr, g, part, xp, delta, float(h), n, nb, BLOCK=block, BLOCK_NB=block_nb)
    return g.view(x0.shape), xp.view(x.shape), delta


def fd_update_fwd(x: torch.Tensor, x0_probe: torch.Tensor, x0: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """Launch: ``x + lr * d / max|d|`` per sample with ``d = x0_probe - x0`` (no update where ``d == 0``)."""
    bsz = x.shape[0]
    n = x[0].numel()
    block, nb, block_nb = _blocks(n)
    xr, ar, br = (_rows(t, bsz) for t in (x, x0_probe, x0))
    lr = lr.to(device=x.device, dtype=torch.float32).expand(bsz).contiguous()
    part = torch.empty((bsz, nb), device=x.device, dtype=torch.float32)
    out = torch.empty_like(xr)
    _fd_amax_fwd_kernel[(bsz, nb)](ar, br, part, n, nb, BLOCK=block)
    _fd_update_fwd_kernel[(bsz, nb)](xr, ar, br, part, lr, out, n, nb, BLOCK=block, BLOCK_NB=block_nb)
    return out.view(x.shape)


def ddim_transition_fwd(
    x0: torch.Tensor, eps: torch.Tensor, noise: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """Launch: ``a*x0 + b*eps + s*noise`` with per-sample ``[B]`` coefficients."""
    bsz = x0.shape[0]
    n = x0[0].numel()
    block, nb, _ = _blocks(n)
    x0r, er = _rows(x0, bsz), _rows(eps, bsz)
    zr = _rows(noise, bsz) if noise is not None else x0r
    a, b, s = (c.to(device=x0.device, dtype=torch.float32).expand(bsz).contiguous() for c in (a, b, s))
    out = torch.empty_like(x0r)
    _ddim_transition_fwd_kernel[(bsz, nb)](x0r, er, zr, a, b, s, out, n, HAS_NOISE=noise is not None, BLOCK=block)
    return out.view(x0.shape)
