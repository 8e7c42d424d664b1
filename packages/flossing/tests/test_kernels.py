"""Triton kernels vs the torch references (values and every gradient), under TRITON_INTERPRET=1 on CPU."""

import pytest
import torch

pytestmark = pytest.mark.kernel

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=4e-3, atol=4e-3)}


def _inputs(B, N, k, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, N, generator=g).tanh()
    q = torch.linalg.qr(torch.randn(B, N, k, generator=g))[0]
    w = 1.5 * torch.randn(N, N, generator=g) / N**0.5
    inp = torch.randn(B, N, generator=g)
    return [t.to(dtype) for t in (h, q, w, inp)]


@pytest.mark.parametrize("B,N,k", [(3, 37, 5), (2, 70, 33)])
@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fused_step_matches_reference(B, N, k, act, dtype):
    from gradkit_flossing.kernels.rnn_tangent import rnn_tangent_fwd
    from gradkit_flossing.reference import rnn_tangent_step_reference

    h, q, w, inp = _inputs(B, N, k, dtype)
    got = rnn_tangent_fwd(h, q, w, inp, act)
    want = rnn_tangent_step_reference(*(t.float() for t in (h, q, w, inp)), act)
    for a, b in zip(got, want):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), b, **TOL[dtype])


def test_fused_step_op_gradients():
    from gradkit_flossing.ops import RNNTangentStepFunction
    from gradkit_flossing.reference import rnn_tangent_step_reference

    h, q, w, inp = _inputs(2, 21, 3, torch.float32, seed=1)
    g = torch.Generator().manual_seed(2)
    gh, gz = torch.randn(2, 21, generator=g), torch.randn(2, 21, 3, generator=g)
    leaves_k = [t.clone().requires_grad_(True) for t in (h, q, w, inp)]
    leaves_r = [t.clone().requires_grad_(True) for t in (h, q, w, inp)]
    out_k = RNNTangentStepFunction.apply(*leaves_k, "tanh")
    out_r = rnn_tangent_step_reference(*leaves_r, "tanh")
    for a, b in zip(out_k, out_r):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    gk = torch.autograd.grad(out_k, leaves_k, (gh, gz))
    gr = torch.autograd.grad(out_r, leaves_r, (gh, gz))
    for a, b in zip(gk, gr):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("B,N,k", [(3, 37, 5), (2, 70, 33), (1, 16, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_mgs_qr_matches_sign_fixed_torch_qr(B, N, k, dtype):
    from gradkit_flossing.kernels.mgs_qr import mgs_qr_fwd
    from gradkit_flossing.reference import qr_logdiag_reference

    g = torch.Generator().manual_seed(3)
    a = (torch.randn(B, N, k, generator=g) * torch.logspace(0, -1, k)).to(dtype)  # graded columns
    q, logr = mgs_qr_fwd(a)
    q_ref, logr_ref = qr_logdiag_reference(a.float())
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(q.float(), q_ref, **tol)
    torch.testing.assert_close(logr.float(), logr_ref, **tol)
    eye = torch.eye(k).expand(B, k, k)
    torch.testing.assert_close(q.float().transpose(1, 2) @ q.float(), eye, **tol)


def test_qr_op_gradients():
    from gradkit_flossing.ops import QRLogDiagFunction
    from gradkit_flossing.reference import qr_logdiag_reference

    g = torch.Generator().manual_seed(4)
    a = torch.randn(2, 19, 4, generator=g)
    ak, ar = a.clone().requires_grad_(True), a.clone().requires_grad_(True)
    outk = QRLogDiagFunction.apply(ak, 1e-30)
    outr = qr_logdiag_reference(ar)
    cot = (torch.randn(2, 19, 4, generator=g), torch.randn(2, 4, generator=g))
    (gk,) = torch.autograd.grad(outk, ak, cot)
    (gr,) = torch.autograd.grad(outr, ar, cot)
    torch.testing.assert_close(gk, gr, rtol=1e-4, atol=1e-5)


def test_spectrum_and_its_gradient_through_kernels_match_reference(monkeypatch):
    from gradkit_flossing import flossing_loss, lyapunov_spectrum, random_frame

    torch.manual_seed(0)
    rnn = torch.nn.RNN(2, 24)
    xs = torch.randn(30, 2, 2, generator=torch.Generator().manual_seed(5))
    q0 = random_frame(2, 24, 6, like=xs, generator=torch.Generator().manual_seed(6))

    def run():
        lam = lyapunov_spectrum(rnn, xs, 6, q0=q0, transient=5)
        return lam.detach(), torch.autograd.grad(flossing_loss(lam), rnn.weight_hh_l0)[0]

    import gradkit_flossing.kernels.mgs_qr as kq
    import gradkit_flossing.kernels.rnn_tangent as kr

    calls = {"qr": 0, "step": 0}

    def counted(name, fn):
        def wrapper(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapper

    monkeypatch.setattr(kq, "mgs_qr_fwd", counted("qr", kq.mgs_qr_fwd))
    monkeypatch.setattr(kr, "rnn_tangent_fwd", counted("step", kr.rnn_tangent_fwd))
    monkeypatch.setenv("GRADKIT_KERNELS", "triton")
    lam_k, g_k = run()
    assert calls == {"qr": 30, "step": 30}  # every step went through both kernels
    monkeypatch.setenv("GRADKIT_KERNELS", "reference")
    lam_r, g_r = run()
    torch.testing.assert_close(lam_k, lam_r, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g_k, g_r, rtol=1e-3, atol=1e-5)
