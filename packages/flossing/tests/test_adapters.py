"""Analytic adapters = the torch modules' own forward, and their tangents = autograd Jacobians."""

import pytest
import torch
from gradkit_flossing import as_dynamics, from_cell, jvp_tangent
from helpers import F64, make_rnn, torch_reference_step
from torch.func import jacrev

CASES = [
    ("rnn", 1, "tanh"), ("rnn", 1, "relu"), ("rnn", 3, "tanh"), ("rnncell", 1, "tanh"),
    ("gru", 1, None), ("gru", 2, None), ("grucell", 1, None),
    ("lstm", 1, None), ("lstm", 2, None), ("lstmcell", 1, None),
]


def _state(dyn, B, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, dyn.state_dim, generator=g, dtype=F64), torch.randn(B, dyn.input_size, generator=g, dtype=F64)


@pytest.mark.parametrize("kind,layers,act", CASES)
def test_step_matches_torch_module(kind, layers, act):
    m = make_rnn(kind, layers=layers, nonlinearity=act or "tanh") if "cell" not in kind else make_rnn(kind, nonlinearity=act or "tanh")
    dyn = as_dynamics(m)
    h, x = _state(dyn, 4)
    torch.testing.assert_close(dyn.step(h, x), torch_reference_step(m, h, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind,layers,act", CASES)
def test_analytic_tangent_equals_jacrev_and_jvp(kind, layers, act):
    m = make_rnn(kind, layers=layers, nonlinearity=act or "tanh") if "cell" not in kind else make_rnn(kind, nonlinearity=act or "tanh")
    dyn = as_dynamics(m)
    B, k = 3, 4
    h, x = _state(dyn, B)
    q = torch.randn(B, dyn.state_dim, k, dtype=F64)
    h2, z = dyn.step_tangent(h, x, q)
    # oracle: the full Jacobian of the torch module's own step, per batch element
    for b in range(B):
        J = jacrev(lambda hh: torch_reference_step(m, hh.unsqueeze(0), x[b : b + 1]).squeeze(0))(h[b])
        torch.testing.assert_close(z[b], J @ q[b], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(z, jvp_tangent(dyn.step, h, x, q), rtol=1e-10, atol=1e-10)


def test_lstm_tangent_includes_cell_path():
    # d c'/d c = diag(f) must be present: a frame living only in c-directions still moves
    m = make_rnn("lstm")
    dyn = as_dynamics(m)
    h, x = _state(dyn, 2)
    N = m.hidden_size
    q = torch.zeros(2, 2 * N, 1, dtype=F64)
    q[:, N, 0] = 1.0
    _, z = dyn.step_tangent(h, x, q)
    assert z[:, N:].abs().max() > 1e-3


def test_from_cell_uses_jvp_and_matches_analytic():
    m = make_rnn("rnn", hidden=6)
    ref = as_dynamics(m)
    cell = from_cell(ref.step, ref.state_dim, list(m.parameters()), input_size=ref.input_size)
    h, x = _state(ref, 2)
    q = torch.randn(2, 6, 3, dtype=F64)
    torch.testing.assert_close(cell.step_tangent(h, x, q)[1], ref.step_tangent(h, x, q)[1], rtol=1e-12, atol=1e-12)


def test_model_with_one_rnn_is_found_and_several_need_a_name():
    from gradkit.errors import ConfigError

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.GRU(2, 3)
            self.b = torch.nn.LSTM(2, 3)

    class One(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.RNN(2, 3, batch_first=True)
            self.head = torch.nn.Linear(3, 1)

    assert as_dynamics(One()).state_dim == 3 and as_dynamics(One()).batch_first
    with pytest.raises(ConfigError, match="module="):
        as_dynamics(Two())
    assert as_dynamics(Two(), module="b").state_dim == 6
    with pytest.raises(ConfigError, match="no nn.RNN"):
        as_dynamics(torch.nn.Linear(2, 2))
