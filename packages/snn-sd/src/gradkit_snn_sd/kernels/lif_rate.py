"""Triton kernels for the rate-BP LIF: the spike pass fused over T and the rate-pass backward.

``_lif_rate_fwd_kernel``: one program per block of neurons; the time loop runs inside the kernel with
``V``, ``kappa``, spike count and eligibility sum in fp32 registers; ``x[t]`` is read once and the
spikes written once. Reference: :func:`gradkit_snn_sd.reference.lif_spike_pass_reference`.

``_lif_rate_bwd_kernel``: ``grad_in = grad_out * e``. Reference:
:func:`gradkit_snn_sd.reference.lif_rate_bwd_reference`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_FWD_BLOCK = 1024
_BWD_BLOCK = 1024


@triton.jit
def _lif_rate_fwd_kernel(
    x_ptr, v0_ptr, k0_ptr,
    s_ptr, r_ptr, e_ptr, v_ptr, k_ptr,
    N, T,
    lam, theta, v_reset, alpha, c,
    MODE: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    k = tl.load(k0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    r = tl.zeros([BLOCK], dtype=tl.float32)
    e = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        x = tl.load(x_ptr + t * N + offs, mask=mask, other=0.0).to(tl.float32)
        if MODE < 2:
            h = lam * v + c * x
        else:
            h = lam * v + (1.0 - lam) * v_reset + c * x
        u = h - theta
        s = tl.where(u >= 0.0, 1.0, 0.0)
        sig = 1.0 / (1.0 + tl.exp(-alpha * u))
        g = alpha * sig * (1.0 - sig)
        e += g * k
        r += s
        if MODE == 0:
            a = tl.full([BLOCK], 1.0, tl.float32)
            v = h - theta * s
        elif MODE == 1:
            a = 1.0 - theta * g
            v = h - theta * s
        elif MODE == 2:
            a = 1.0 - s
            v = s * v_reset + (1.0 - s) * h
        else:
            a = (1.0 - s) + (v_reset - h) * g
            v = s * v_reset + (1.0 - s) * h
        k = c + lam * a * k
        tl.store(s_ptr + t * N + offs, s.to(s_ptr.dtype.element_ty), mask=mask)
    tl.store(r_ptr + offs, r, mask=mask)
    tl.store(e_ptr + offs, e, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    tl.store(k_ptr + offs, k, mask=mask)


@triton.jit
def _lif_rate_bwd_kernel(g_ptr, e_ptr, out_ptr, N, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    e = tl.load(e_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, (g * e).to(out_ptr.dtype.element_ty), mask=mask)


def lif_rate_fwd(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    k0: torch.Tensor,
    *,
    lam: float,
    theta: float,
    v_reset: float | None,
    detach_reset: bool,
    alpha: float,
    input_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the fused spike pass. ``x_seq [T, ...]``, ``v0``/``k0`` one-step shaped (fp32)."""
    from ..reference.lif import reset_mode_id

    T = x_seq.shape[0]
    shape = x_seq.shape[1:]
    x = x_seq.contiguous().view(T, -1)
    n = x.shape[1]
    v0 = v0.contiguous().view(-1).to(torch.float32)
    k0 = k0.contiguous().view(-1).to(torch.float32)
    spikes = torch.empty_like(x)
    r = torch.empty(n, dtype=torch.float32, device=x.device)
    e = torch.empty_like(r)
    v = torch.empty_like(r)
    k = torch.empty_like(r)
    if n > 0 and T > 0:
        grid = (triton.cdiv(n, _FWD_BLOCK),)
        _lif_rate_fwd_kernel[grid](
            x, v0, k0, spikes, r, e, v, k, n, T,
            float(lam), float(theta), float(0.0 if v_reset is None else v_reset), float(alpha), float(input_scale),
            MODE=reset_mode_id(v_reset, detach_reset), BLOCK=_FWD_BLOCK,
        )
    return spikes.view(x_seq.shape), r.view(shape), e.view(shape), v.view(shape), k.view(shape)


def lif_rate_bwd(grad_out: torch.Tensor, elig: torch.Tensor) -> torch.Tensor:
    """Launch ``grad_in = grad_out * elig`` (output in ``grad_out``'s dtype)."""
    g = grad_out.contiguous().view(-1)
    e = elig.contiguous().view(-1)
    out = torch.empty_like(g)
    n = g.numel()
    if n > 0:
        _lif_rate_bwd_kernel[(triton.cdiv(n, _BWD_BLOCK),)](g, e, out, n, BLOCK=_BWD_BLOCK)
    return out.view(grad_out.shape)
