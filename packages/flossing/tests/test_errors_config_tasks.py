"""Bad input gives ConfigError naming the parameter; configs round-trip; task generators are right."""

import pytest
import torch
from gradkit.errors import ConfigError
from gradkit_flossing import (
    Flosser,
    FlossingConfig,
    as_dynamics,
    delayed_copy,
    delayed_xor,
    floss,
    flossing_loss,
    lyapunov_spectrum,
    temporal_parity,
)
from gradkit_flossing.tasks import bit_accuracy, make_task, masked_bce


def _rnn(**kw):
    torch.manual_seed(0)
    return torch.nn.RNN(2, 5, **kw)


@pytest.mark.parametrize("k", [0, -1, 6, 2.5])
def test_bad_k(k):
    with pytest.raises(ConfigError, match="`k`"):
        lyapunov_spectrum(_rnn(), torch.randn(10, 1, 2), k)


def test_k_above_state_dim_names_the_limit():
    with pytest.raises(ConfigError, match="exceeds the state dimension 5"):
        lyapunov_spectrum(_rnn(), torch.randn(10, 1, 2), 6)
    # LSTM state is (h, c): k up to 2N is fine
    lstm = torch.nn.LSTM(2, 5)
    assert lyapunov_spectrum(lstm, torch.randn(10, 1, 2), 10).shape == (1, 10)


def test_batch_first_mismatch():
    rnn = _rnn(batch_first=True)
    with pytest.raises(ConfigError, match="batch_first"):
        lyapunov_spectrum(rnn, torch.randn(3, 10, 2), 2, batch_first=False)
    with pytest.raises(ConfigError, match="batch_first"):
        as_dynamics(rnn, batch_first=False)
    # an h0 for B=3 with inputs laid out (T, B, I) by mistake is caught and the layout is named
    with pytest.raises(ConfigError, match=r"batch_first=True"):
        lyapunov_spectrum(rnn, torch.randn(10, 3, 2), 2, h0=torch.zeros(3, 5))
    assert lyapunov_spectrum(rnn, torch.randn(3, 10, 2), 2).shape == (3, 2)


def test_wrong_feature_size_and_rank():
    with pytest.raises(ConfigError, match="input_size is 2"):
        lyapunov_spectrum(_rnn(), torch.randn(10, 1, 3), 2)
    with pytest.raises(ConfigError, match="3-D"):
        lyapunov_spectrum(_rnn(), torch.randn(10, 2), 2)


def test_non_finite_states():
    xs = torch.randn(10, 1, 2)
    xs[3, 0, 0] = float("nan")
    with pytest.raises(ConfigError, match="non-finite"):
        lyapunov_spectrum(_rnn(), xs, 2)
    relu = torch.nn.RNN(2, 5, nonlinearity="relu")
    with torch.no_grad():
        relu.weight_hh_l0.copy_(1e3 * torch.eye(5))
    with pytest.raises(ConfigError, match="non-finite"):
        lyapunov_spectrum(relu, torch.ones(200, 1, 2), 2)


def test_transient_t_ons_and_unsupported_modules():
    with pytest.raises(ConfigError, match="transient"):
        lyapunov_spectrum(_rnn(), torch.randn(10, 1, 2), 2, transient=10)
    with pytest.raises(ConfigError, match="t_ons"):
        lyapunov_spectrum(_rnn(), torch.randn(10, 1, 2), 2, t_ons=0)
    with pytest.raises(ConfigError, match="bidirectional"):
        as_dynamics(torch.nn.GRU(2, 3, bidirectional=True))
    with pytest.raises(ConfigError, match="proj_size"):
        as_dynamics(torch.nn.LSTM(2, 4, proj_size=2))
    with pytest.raises(ConfigError, match="reduction"):
        flossing_loss(torch.zeros(2, 3), reduction="max")


@pytest.mark.parametrize("field,value", [
    ("k", 0), ("t_ons", 0), ("horizon", 1), ("transient", 60), ("lr", 0.0), ("mode", "always"), ("params", "all"),
    ("sampler", "gauss"), ("reg_every", 0), ("betas", (0.9, 1.0)), ("clip", -1.0), ("pre_steps", -1),
])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field if field != "transient" else "transient"):
        FlossingConfig(**{field: value})


def test_config_round_trips_and_defaults_are_the_reference():
    c = FlossingConfig(k=16, betas=(0.8, 0.99), clip=1.0)
    assert FlossingConfig.from_json(c.to_json()) == c
    d = FlossingConfig()
    assert (d.horizon, d.transient_steps, d.batch, d.lr, d.pre_steps, d.inter_every, d.inter_steps, d.inter_max, d.t_ons) == (
        55, 16, 1, 1e-3, 500, 100, 500, 2, 1)


def test_flosser_k_defaults_and_checks():
    assert Flosser(torch.nn.RNN(1, 40)).k == 32
    assert Flosser(torch.nn.RNN(1, 8)).k == 8
    with pytest.raises(ConfigError, match="`k`=9 exceeds"):
        Flosser(torch.nn.RNN(1, 8), FlossingConfig(k=9))


def test_flossing_update_leaves_grad_and_other_params_alone():
    from gradkit_flossing import DelayTaskRNN

    m = DelayTaskRNN(12, generator=torch.Generator().manual_seed(0))
    for p in m.parameters():
        p.grad = torch.full_like(p, 0.5)
    readout = m.readout.weight.detach().clone()
    w = m.rnn.weight_hh_l0.detach().clone()
    f = Flosser(m.rnn, FlossingConfig(k=4, horizon=20, transient=4, lr=1e-2))
    f.run(2)
    for p in m.parameters():
        assert torch.equal(p.grad, torch.full_like(p, 0.5))
    assert torch.equal(m.readout.weight, readout)
    assert not torch.equal(m.rnn.weight_hh_l0, w)
    # params="recurrent" moves only weight_hh
    wi = m.rnn.weight_ih_l0.detach().clone()
    Flosser(m.rnn, FlossingConfig(k=4, horizon=20, transient=4, params="recurrent")).run(1)
    assert torch.equal(m.rnn.weight_ih_l0, wi)


def test_floss_function_history():
    hist = floss(torch.nn.RNN(1, 10), steps=3, k=3, horizon=20, transient=4)
    assert len(hist) == 3 and set(hist[0]) >= {"loss", "lambda_1", "lambda_k"}


def test_task_targets():
    g = torch.Generator().manual_seed(0)
    x, y, m = delayed_copy(4, 30, 7, generator=g)
    assert x.shape == (4, 30, 1) and y.shape == (4, 30) and m.shape == (4, 30)
    assert torch.equal(y[:, 7:], x[:, :-7, 0]) and not m[:, :7].any() and m[:, 7:].all()
    x, y, m = delayed_xor(4, 40, 10, generator=g)
    b = x[..., 0]
    assert torch.equal(y[:, 10:], (b[:, 5:-5] + b[:, :-10]) % 2)
    x, y, _ = temporal_parity(3, 50, 12, 3, generator=g)
    b = x[..., 0]
    assert torch.equal(y[:, 12:], (b[:, 8:-4] + b[:, 4:-8] + b[:, :-12]) % 2)
    with pytest.raises(ConfigError, match="multiple"):
        delayed_xor(2, 30, 5)
    with pytest.raises(ConfigError, match="task"):
        make_task("sort", 4)
    logits = torch.where(y == 1, 3.0, -3.0)
    mask = torch.ones_like(y, dtype=torch.bool)
    assert bit_accuracy(logits, y, mask) == 1.0
    assert float(masked_bce(torch.zeros_like(y), y, mask)) == pytest.approx(0.6931, abs=1e-4)


def test_gradient_clipping_of_flossing_updates():
    from gradkit_flossing.schedule import _clip

    g = [torch.full((3,), 2.0), torch.full((4,), -2.0)]  # joint norm sqrt(7) * 2
    _clip(g, 1.0)
    assert float(torch.cat(g).norm()) == pytest.approx(1.0, rel=1e-5)
    small = [torch.full((2,), 0.1)]
    _clip(small, 1.0)
    assert torch.equal(small[0], torch.full((2,), 0.1))
    hist = floss(torch.nn.RNN(1, 6), steps=2, k=2, horizon=15, transient=3, clip=0.5)
    assert len(hist) == 2
