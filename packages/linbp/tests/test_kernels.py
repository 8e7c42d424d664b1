"""Triton kernels vs their plain-torch references (run with TRITON_INTERPRET=1 on CPU, or on a GPU)."""

from __future__ import annotations

import os

import pytest
import torch

pytestmark = pytest.mark.kernel


@pytest.fixture(autouse=True)
def _need_kernel_env():
    if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
        pytest.skip("needs a GPU or TRITON_INTERPRET=1")
    pytest.importorskip("triton")


def dev():
    return "cuda" if torch.cuda.is_available() else "cpu"


TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float16: dict(rtol=2e-3, atol=2e-3)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (2, 1, 63), (1, 1500)])
def test_renorm_kernel_matches_reference(dtype, shape):
    from gradkit_linbp.kernels.renorm import renorm_fwd
    from gradkit_linbp.ops import renorm_scale
    from gradkit_linbp.reference import renorm_scale_ref

    g = torch.Generator().manual_seed(0)
    gl = torch.randn(shape, generator=g).to(dev(), dtype)
    gt = (3 * torch.randn(shape, generator=g)).to(dev(), dtype)
    gl[0] = 0  # zero row -> zeros, no NaN
    want = renorm_scale_ref(gl, gt, 0.7)
    got = renorm_fwd(gl, gt, 0.7, block=64)  # several blocks per row
    torch.testing.assert_close(got, want, **TOL[dtype])
    assert torch.equal(got[0], torch.zeros_like(got[0]))
    torch.testing.assert_close(renorm_scale(gl, gt, 0.7), want, **TOL[dtype])  # the op dispatches to the kernel


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("momentum", [False, True])
def test_attack_update_kernel_matches_reference(dtype, norm, momentum):
    from gradkit_linbp.kernels.update import attack_update_fwd
    from gradkit_linbp.reference import attack_update_ref

    g = torch.Generator().manual_seed(1)
    shape = (3, 3, 7, 9)
    x0 = torch.rand(shape, generator=g)
    xa = (x0 + 0.05 * torch.randn(shape, generator=g)).clamp(0, 1)
    grad = torch.randn(shape, generator=g)
    m = torch.randn(shape, generator=g) if momentum else None
    eps = 0.04 if norm == "linf" else 0.5
    cast = lambda t: None if t is None else t.to(dev(), dtype)  # noqa: E731
    args = (cast(xa), cast(x0), cast(grad), cast(m))
    want, m_want = attack_update_ref(*args[:3], alpha=0.01, eps=eps, norm=norm, momentum=args[3], decay=0.9)
    got, m_got = attack_update_fwd(*args, alpha=0.01, eps=eps, l2=norm == "l2", decay=0.9, block=64)
    tol = TOL[dtype] if dtype == torch.float32 else dict(rtol=0, atol=2e-3)
    torch.testing.assert_close(got, want, **tol)
    if momentum:
        torch.testing.assert_close(m_got, m_want, **(TOL[dtype] if dtype == torch.float32 else dict(rtol=2e-3, atol=2e-3)))
    else:
        assert m_got is None
    # the l_inf ball and [0, 1] hold exactly for the kernel's output
    d = (got.float() - x0.to(got.device, dtype).float()).flatten(1)
    lim = eps if norm == "linf" else None
    if lim is not None:
        assert d.abs().max() <= lim + (1e-6 if dtype == torch.float32 else 2e-3)
    assert got.min() >= 0 and got.max() <= 1


def test_linbp_block_backward_through_kernel_equals_reference_path(monkeypatch):
    """The full LinBP block backward with the renorm kernel vs GRADKIT_KERNELS=reference."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from gradkit_linbp import LinBP
    from nets import TinyResNet, TVBasic, randomize_bn

    torch.manual_seed(0)
    model = randomize_bn(TinyResNet(TVBasic, widths=(4, 4)))
    x = torch.rand(2, 3, 6, 6)

    def grad():
        xx = x.clone().requires_grad_(True)
        with LinBP(model, start=1):
            (g,) = torch.autograd.grad(model(xx).square().sum(), xx)
        return g

    got = grad()
    monkeypatch.setenv("GRADKIT_KERNELS", "reference")
    want = grad()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
