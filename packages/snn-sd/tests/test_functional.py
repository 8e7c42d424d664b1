import pytest
import torch
from gradkit.errors import ConfigError
from gradkit_snn_sd import masked_kd, rate_node, reliable_teacher


def test_rate_node_value_and_backward_is_elig():
    torch.manual_seed(0)
    i_bar = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    rate = torch.rand(3, 7, dtype=torch.float64)
    elig = torch.rand(3, 7, dtype=torch.float64)
    out = rate_node(i_bar, rate, elig)
    assert torch.equal(out, rate)
    w = torch.randn(3, 7, dtype=torch.float64)
    (g,) = torch.autograd.grad((out * w).sum(), i_bar)
    assert torch.equal(g, w * elig)
    # gradcheck on the first-order model rate + elig * (i - i0): its numerical Jacobian is diag(elig)
    i0 = i_bar.detach().clone()
    assert torch.autograd.gradcheck(lambda i: rate_node(i, rate + elig * (i.detach() - i0), elig), (i_bar,))
    (g2,) = torch.autograd.grad(rate_node(i_bar, rate, elig).sum(), i_bar)
    assert torch.equal(g2, elig)


def test_rate_node_shape_mismatch():
    with pytest.raises(ConfigError, match="shape"):
        rate_node(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3))


def test_reliable_teacher_hand_made():
    y = torch.tensor([0, 1, 2])
    z1 = torch.tensor([[5.0, 0, 0], [0, 3.0, 0], [1.0, 0, 0]])  # right, right, wrong
    z2 = torch.tensor([[3.0, 0, 0], [4.0, 0, 0], [0, 2.0, 0]])  # right, wrong, wrong
    z3 = torch.tensor([[0, 1.0, 0], [0, 5.0, 1], [0, 3.0, 0]])  # wrong, right, wrong
    t, valid, n = reliable_teacher([z1, z2, z3], y)
    assert valid.tolist() == [True, True, False]
    assert n.tolist() == [2, 2, 0]
    torch.testing.assert_close(t[0], (z1[0] + z2[0]) / 2)
    torch.testing.assert_close(t[1], (z1[1] + z3[1]) / 2)
    assert torch.equal(t[2], torch.zeros(3))
    assert not t.requires_grad


def test_masked_kd_gradient_formula():
    torch.manual_seed(0)
    tau = 3.0
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 4, dtype=torch.float64)
    valid = torch.tensor([True, False, True, True, False])
    kd = masked_kd(z, t, valid, tau)
    (g,) = torch.autograd.grad(kd, z)
    expect = tau * (torch.softmax(z / tau, -1) - torch.softmax(t / tau, -1)) / valid.sum()
    expect[~valid] = 0
    torch.testing.assert_close(g, expect.detach(), atol=1e-12, rtol=0)
    # value: tau^2 * mean KL over valid rows
    p = torch.softmax(t[valid] / tau, -1)
    kl = (p * (p.log() - torch.log_softmax(z[valid] / tau, -1))).sum(-1).mean() * tau**2
    torch.testing.assert_close(kd, kl)


def test_masked_kd_no_reliable_exit_is_zero_not_nan():
    z = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 0, 0, 0])
    wrong = torch.tensor([[0.0, 1.0, 0.0]] * 4)
    t, valid, _ = reliable_teacher([wrong, wrong], y)
    assert not valid.any()
    kd = masked_kd(z, t, valid)
    assert kd.item() == 0.0 and torch.isfinite(kd)
    kd.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))
