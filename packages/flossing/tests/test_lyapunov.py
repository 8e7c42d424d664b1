"""The QR estimator against analytic identities, a two-trajectory estimate and finite-time SVD."""


import pytest
import torch
from gradkit_flossing import (
    as_dynamics,
    dns_lyapunov_exponent,
    flossing_loss,
    from_cell,
    gradient_norm_vs_delay,
    jacobian_condition,
    long_term_jacobian,
    lyapunov_spectrum,
    random_frame,
)
from helpers import F64, make_rnn, seeded
from torch.autograd import gradcheck
from torch.func import jacrev


def _linear_cell(A):
    return from_cell(lambda h, x: h @ A.t(), A.shape[0], tangent=lambda h, x, hn, q: torch.matmul(A, q), input_size=1)


def test_linear_map_exponents_are_log_abs_eigenvalues():
    g = seeded(0)
    eig = torch.tensor([1.7, -1.3, 1.0, 0.9, -0.6, 0.5, 0.3, 0.1], dtype=F64)
    V = torch.randn(8, 8, generator=g, dtype=F64) + 3 * torch.eye(8, dtype=F64)
    A = V @ torch.diag(eig) @ torch.linalg.inv(V)
    xs = torch.zeros(3000, 1, 1, dtype=F64)
    lam = lyapunov_spectrum(_linear_cell(A), xs, 8, generator=g)[0]
    expected = eig.abs().log().sort(descending=True).values
    torch.testing.assert_close(lam, expected, atol=5e-3, rtol=0)


def test_jvp_tangent_gives_the_same_spectrum_as_the_analytic_one():
    g = seeded(1)
    A = torch.randn(6, 6, generator=g, dtype=F64) / 6**0.5
    xs = torch.zeros(60, 2, 1, dtype=F64)
    q0 = random_frame(2, 6, 3, like=xs, generator=g)
    jvp_cell = from_cell(lambda h, x: h @ A.t(), 6, input_size=1)
    torch.testing.assert_close(lyapunov_spectrum(jvp_cell, xs, 3, q0=q0), lyapunov_spectrum(_linear_cell(A), xs, 3, q0=q0),
                               rtol=1e-12, atol=1e-12)


def test_trivial_fixed_point_gives_log_abs_eig_of_W():
    # tanh RNN with no input drive and no bias stays at h = 0, where D_t = W exactly
    N, k = 40, 10
    rnn = torch.nn.RNN(1, N, bias=False).double()
    g = seeded(2)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(0.8 * torch.randn(N, N, generator=g, dtype=F64) / N**0.5)
        rnn.weight_ih_l0.zero_()
    xs = torch.zeros(2000, 1, 1, dtype=F64)
    lam = lyapunov_spectrum(rnn, xs, k, generator=g, transient=200)[0]
    expected = torch.linalg.eigvals(rnn.weight_hh_l0.detach()).abs().log().sort(descending=True).values[:k]
    torch.testing.assert_close(lam, expected, atol=2e-2, rtol=0)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_sum_of_all_exponents_is_mean_log_abs_det(kind):
    m = make_rnn(kind, input_size=2, hidden=6, gain=1.0)
    dyn = as_dynamics(m)
    S, T = dyn.state_dim, 50
    g = seeded(3)
    xs = torch.randn(T, 1, 2, generator=g, dtype=F64)
    lam = lyapunov_spectrum(m, xs, S, generator=g)
    h = dyn.init_state(1, like=xs)
    logdet = 0.0
    for t in range(T):
        J = jacrev(lambda hh: dyn.step(hh.unsqueeze(0), xs[t]).squeeze(0))(h[0])
        logdet += torch.linalg.slogdet(J)[1]
        h = dyn.step(h, xs[t])
    torch.testing.assert_close(lam.sum(), logdet / T, rtol=0, atol=1e-8)


def test_tanh_rnn_log_det_identity_with_closed_form():
    # sum lambda = log|det W| + mean_t sum_j log(1 - h_{t+1,j}^2) for h' = tanh(W h + U x + b)
    m = make_rnn("rnn", input_size=2, hidden=12, gain=1.0)
    g = seeded(4)
    xs = torch.randn(200, 1, 2, generator=g, dtype=F64)
    lam = lyapunov_spectrum(m, xs, 12, generator=g)
    hs, _ = m(xs)
    closed = torch.linalg.slogdet(m.weight_hh_l0)[1] + torch.log(1 - hs[:, 0] ** 2).sum(1).mean()
    torch.testing.assert_close(lam.sum(), closed.detach(), rtol=0, atol=1e-8)


def test_top_exponent_agrees_with_two_trajectory_estimate():
    N = 60
    rnn = torch.nn.RNN(1, N).double()
    g = seeded(5)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(3.0 * torch.randn(N, N, generator=g, dtype=F64) / N**0.5)
    xs = 0.1 * torch.randn(2500, 1, 1, generator=g, dtype=F64)
    with torch.no_grad():
        lam1 = lyapunov_spectrum(rnn, xs, 1, generator=g, transient=200)[0, 0]
    dns = dns_lyapunov_exponent(rnn, xs, transient=200, generator=g)[0]
    assert lam1 > 0.05  # chaotic regime, so the check means something
    assert abs(float(lam1 - dns)) < 0.02, (float(lam1), float(dns))


def test_finite_time_singular_values_match_qr_exponents():
    N, T = 30, 60
    rnn = torch.nn.RNN(1, N).double()
    g = seeded(6)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(1.5 * torch.randn(N, N, generator=g, dtype=F64) / N**0.5)
    xs = torch.randn(T, 1, 1, generator=g, dtype=F64)
    sv = torch.linalg.svdvals(long_term_jacobian(rnn, xs))[0]
    lam = lyapunov_spectrum(rnn, xs, 4, generator=g)[0].detach()
    torch.testing.assert_close(sv[:4].log() / T, lam, atol=0.1, rtol=0)
    cond = jacobian_condition(rnn, xs, 4)
    torch.testing.assert_close(cond["log10_cond"][0], (sv[0] / sv[3]).log10())


def test_gradient_norm_vs_delay_is_the_jacobian_product_norm():
    N, T = 8, 12
    m = make_rnn("rnn", input_size=1, hidden=N, gain=0.7)
    g = seeded(7)
    xs = torch.randn(T, 1, 1, generator=g, dtype=F64)
    r = torch.randn(N, generator=g, dtype=F64)
    norms = gradient_norm_vs_delay(m, xs, readout=r)
    assert norms.shape == (T + 1,)
    torch.testing.assert_close(norms[0], r.norm())
    for d in (1, 5, T):
        M = long_term_jacobian(m, xs, burn_in=T - d)[0]
        torch.testing.assert_close(norms[d], (M.t() @ r).norm(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_flossing_loss_gradcheck_float64(kind):
    m = make_rnn(kind, input_size=2, hidden=4 if kind != "rnn" else 6, gain=0.8)
    params = list(m.parameters())
    dyn = as_dynamics(m)
    k, T, B = 3, 8, 2
    g = seeded(8)
    xs = torch.randn(T, B, 2, generator=g, dtype=F64)
    q0 = random_frame(B, dyn.state_dim, k, like=xs, generator=g)
    names = [n for n, _ in m.named_parameters()]

    def loss(*ps):
        state = dict(zip(names, ps))
        with torch.nn.utils.stateless._reparametrize_module(m, state):
            return flossing_loss(lyapunov_spectrum(dyn, xs, k, q0=q0, transient=2))

    assert gradcheck(loss, tuple(p.detach().clone().requires_grad_(True) for p in params), eps=1e-6, atol=1e-6)


def test_flossing_gradient_jvp_path_equals_analytic_path():
    m = make_rnn("rnn", input_size=2, hidden=8, gain=0.9)
    dyn = as_dynamics(m)
    cell = from_cell(dyn.step, dyn.state_dim, list(m.parameters()), input_size=2)
    g = seeded(9)
    xs = torch.randn(12, 2, 2, generator=g, dtype=F64)
    q0 = random_frame(2, 8, 3, like=xs, generator=g)
    ga = torch.autograd.grad(flossing_loss(lyapunov_spectrum(dyn, xs, 3, q0=q0)), list(m.parameters()))
    gj = torch.autograd.grad(flossing_loss(lyapunov_spectrum(cell, xs, 3, q0=q0)), list(m.parameters()))
    for a, b in zip(ga, gj):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_t_ons_and_normalize_total():
    m = make_rnn("rnn", input_size=1, hidden=6, gain=0.9)
    g = seeded(10)
    xs = torch.randn(40, 1, 1, generator=g, dtype=F64)
    q0 = random_frame(1, 6, 3, like=xs, generator=g)
    a = lyapunov_spectrum(m, xs, 3, q0=q0)
    b = lyapunov_spectrum(m, xs, 3, q0=q0, t_ons=5)
    c = lyapunov_spectrum(m, xs, 3, q0=q0, normalize="total")
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)  # QR every step or every 5: same exponents
    torch.testing.assert_close(c, 40 * a, rtol=1e-12, atol=1e-12)


def test_detach_state_keeps_values_changes_gradient():
    m = make_rnn("rnn", input_size=1, hidden=6, gain=1.2)
    g = seeded(11)
    xs = torch.randn(20, 1, 1, generator=g, dtype=F64)
    q0 = random_frame(1, 6, 3, like=xs, generator=g)
    a = lyapunov_spectrum(m, xs, 3, q0=q0)
    b = lyapunov_spectrum(m, xs, 3, q0=q0, detach_state=True)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    ga = torch.autograd.grad(a.sum(), m.weight_hh_l0)[0]
    gb = torch.autograd.grad(b.sum(), m.weight_hh_l0)[0]
    assert (ga - gb).abs().max() > 1e-6


def test_saturated_units_do_not_give_infinite_exponents_in_float32():
    # |a| >> 9: 1 - tanh(a)^2 is exactly 0 in float32; sech^2(a) from the pre-activation is not
    rnn = torch.nn.RNN(1, 4)
    with torch.no_grad():
        rnn.weight_ih_l0.fill_(30.0)
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
    xs = torch.ones(20, 1, 1)
    lam = lyapunov_spectrum(rnn, xs, 4, generator=seeded(0))
    assert torch.isfinite(lam).all()
    assert float(lam.detach().max()) < -20


def test_floss_reduces_held_out_loss_5x():
    from gradkit_flossing import DelayTaskRNN, Flosser, FlossingConfig

    model = DelayTaskRNN(32, generator=seeded(12))
    f = Flosser(model.rnn, FlossingConfig(k=24, horizon=55, lr=3e-3, seed=0))
    held = f.sample(4, 200)
    with torch.no_grad():
        before = float(flossing_loss(f.exponents(held)))
    f.run(100)
    with torch.no_grad():
        after = float(flossing_loss(f.exponents(held)))
    assert after * 5 <= before, (before, after)
