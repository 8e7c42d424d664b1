"""Triton kernels vs the plain-torch reference (run under TRITON_INTERPRET=1 or on CUDA)."""

import pytest
import torch
from gradkit_fastsample.reference import ddim_transition_ref, fd_update_ref, masked_error_probe_ref

pytestmark = pytest.mark.kernel

SHAPES = [(1, 1, 3, 5), (3, 2, 7, 9), (2, 4, 33, 35)]  # the last has > 4096 entries per sample (2 blocks)


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_masked_error_probe_kernel(shape, dtype):
    from gradkit_fastsample.kernels.fused import masked_error_probe_fwd

    g = torch.Generator().manual_seed(0)
    x, x0, y = (torch.randn(shape, generator=g).to(dtype) for _ in range(3))
    mask = (torch.rand(shape, generator=g) > 0.4).to(dtype)
    mask[0] = 0  # an empty mask: delta 0, probe == x
    got = masked_error_probe_fwd(x, x0, y, mask, 5e-3)
    want = masked_error_probe_ref(x, x0, y, mask, 5e-3)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **_tol(dtype))
    assert got[2][0] == 0 and torch.equal(got[1][0], x[0])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fd_update_kernel(shape, dtype):
    from gradkit_fastsample.kernels.fused import fd_update_fwd

    g = torch.Generator().manual_seed(1)
    x, x0p, x0 = (torch.randn(shape, generator=g).to(dtype) for _ in range(3))
    x0p[0] = x0[0]  # zero direction: unchanged
    lr = torch.linspace(0.5, 0.1, shape[0])
    got = fd_update_fwd(x, x0p, x0, lr)
    torch.testing.assert_close(got, fd_update_ref(x, x0p, x0, lr), **_tol(dtype))
    assert torch.equal(got[0], x[0])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("with_noise", [True, False])
def test_ddim_transition_kernel(shape, dtype, with_noise):
    from gradkit_fastsample.kernels.fused import ddim_transition_fwd

    g = torch.Generator().manual_seed(2)
    x0, eps, z = (torch.randn(shape, generator=g).to(dtype) for _ in range(3))
    a, b, s = (torch.rand(shape[0], generator=g) for _ in range(3))
    noise = z if with_noise else None
    got = ddim_transition_fwd(x0, eps, noise, a, b, s)
    torch.testing.assert_close(got, ddim_transition_ref(x0, eps, noise, a, b, s), **_tol(dtype))


def test_ops_dispatch_to_kernel_and_keep_autograd_on_reference():
    from gradkit.kernels import use_triton
    from gradkit_fastsample.ops import ddim_transition, fd_update, masked_error_probe

    x, x0, y = (torch.randn(2, 1, 5, 6) for _ in range(3))
    mask = torch.ones(1, 1, 5, 6)
    assert use_triton(x)
    g, xp, d = masked_error_probe(x, x0, y, mask, 1e-2)
    torch.testing.assert_close(xp, masked_error_probe_ref(x, x0, y, mask, 1e-2)[1])
    torch.testing.assert_close(fd_update(x, xp, x0, 0.3), fd_update_ref(x, xp, x0, torch.tensor(0.3)))
    # inputs that require grad take the differentiable reference: gradients are exact
    x0r = x0.clone().requires_grad_(True)
    out = ddim_transition(x0r, y, None, 0.7, 0.2, 0.0)
    out.sum().backward()
    torch.testing.assert_close(x0r.grad, torch.full_like(x0, 0.7))
