"""LinBP transform: forward invariance, identity backward, positions, renorm, segment-wise equivalence,
clean removal, nesting, and refusals."""

from __future__ import annotations

import pytest
import torch
from gradkit.errors import ConfigError, TransformError
from gradkit_linbp import LinBP, branch_linbp, find_units, linear_relu
from nets import FunctionalReLU, SharedReLU, TinyResNet, TVBasic, TVBottleneck, mlp, randomize_bn, vgg_chain
from torch import nn

torch.manual_seed(0)


def input_grad(model, x, w=None):
    x = x.detach().clone().requires_grad_(True)
    out = model(x)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out) if w is None else w
    (g,) = torch.autograd.grad((out * w).sum(), x)
    return out.detach(), g


MODELS = {
    "vgg": lambda: randomize_bn(vgg_chain()),
    "basic": lambda: randomize_bn(TinyResNet(TVBasic)),
    "bottleneck": lambda: randomize_bn(TinyResNet(TVBottleneck)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("start", [0, 2, -1])
def test_forward_is_bitwise_unchanged(name, start):
    torch.manual_seed(1)
    model = MODELS[name]()
    x = torch.rand(3, 3, 8, 8)
    ref = model(x)
    with LinBP(model, start=start):
        with torch.no_grad():
            a = model(x)
        b = model(x.requires_grad_(True))
    assert torch.equal(ref, a) and torch.equal(ref, b)


def test_linear_relu_value_and_identity_backward():
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    y = linear_relu(x)
    assert torch.equal(y, torch.relu(x))
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    assert torch.equal(gx, g)


def explicit_mlp_grad(model: nn.Sequential, x: torch.Tensor, c: torch.Tensor, k: int) -> torch.Tensor:
    """Explicit W1^T D1 W2^T D2 ... c with D_i = diag(z_i > 0) for ReLU i < k and I for i >= k."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    zs, a = [], x
    for i, lin in enumerate(linears):
        z = a @ lin.weight.T + lin.bias
        zs.append(z)
        a = torch.relu(z) if i < len(linears) - 1 else z
    g = c.clone()
    for i in range(len(linears) - 1, -1, -1):
        g = g @ linears[i].weight
        if i > 0:
            relu_idx = i - 1
            if relu_idx < k:
                g = g * (zs[relu_idx] > 0)
    return g


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_positions_match_explicit_masks(k):
    torch.manual_seed(2)
    model = mlp().double()
    x = torch.randn(6, 7, dtype=torch.float64)
    c = torch.randn(6, 4, dtype=torch.float64)
    if k < 3:
        with LinBP(model, start=k):
            _, g = input_grad(model, x, c)
    else:
        _, g = input_grad(model, x, c)  # k == 3: no ReLU linearised = plain BP
    want = explicit_mlp_grad(model, x, c, k)
    torch.testing.assert_close(g, want, rtol=0, atol=1e-12)
    # the same position given by name and by negative index
    if k < 3:
        name = find_units(model)[k].name
        with LinBP(model, start=name):
            _, g_name = input_grad(model, x, c)
        with LinBP(model, start=k - 3):
            _, g_neg = input_grad(model, x, c)
        assert torch.equal(g_name, g) and torch.equal(g_neg, g)
    # ... and plain BP differs from full linearisation (the test can fail)
    if k == 0:
        assert not torch.allclose(g, explicit_mlp_grad(model, x, c, 3))


def test_name_start_counts_every_unit_after_that_module():
    model = vgg_chain()
    units = [u.name for u in find_units(model)]
    assert units == ["2", "5", "8", "11"]
    assert LinBP(start="3").units(model) == ["5", "8", "11"]  # a conv: the ReLUs after it
    assert LinBP(start="8").units(model) == ["8", "11"]


def test_all_positive_preactivations_give_plain_gradients():
    torch.manual_seed(3)
    model = mlp((5, 6, 6, 3)).double()
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.abs_()
                m.bias.abs_()
    x = torch.rand(4, 5, dtype=torch.float64)
    _, g0 = input_grad(model, x)
    with LinBP(model, start=0):
        _, g1 = input_grad(model, x)
    assert torch.equal(g0, g1)


def test_post_add_relu_stays_nonlinear_and_blocks_are_units():
    model = randomize_bn(TinyResNet(TVBasic))
    units = find_units(model)
    assert [u.kind for u in units] == ["relu"] + ["block"] * 6
    assert all(not n.startswith("layers.0.") for n in (u.name for u in units))


def test_renorm_norm_property_and_linear_in_lam():
    torch.manual_seed(4)
    block = randomize_bn(TVBasic(4, 4))

    def branch(x, act):
        return block.bn2(block.conv2(act(block.bn1(block.conv1(x)))))

    x = torch.randn(5, 4, 6, 6, dtype=torch.float64)
    block.double()
    g = torch.randn(5, 4, 6, 6, dtype=torch.float64)
    xt = x.clone().requires_grad_(True)
    (g_true,) = torch.autograd.grad(branch(xt, torch.relu), xt, g)
    out = {}
    for lam in (1.0, 0.5):
        xl = x.clone().requires_grad_(True)
        (out[lam],) = torch.autograd.grad(branch_linbp(xl, branch, lam=lam, renorm=True), xl, g)
    n_true = g_true.flatten(1).norm(dim=1)
    torch.testing.assert_close(out[1.0].flatten(1).norm(dim=1), n_true, rtol=1e-12, atol=0)
    torch.testing.assert_close(out[0.5], 0.5 * out[1.0], rtol=1e-14, atol=0)
    # direction = the linear VJP, which is not the true one
    xl = x.clone().requires_grad_(True)
    (g_lin,) = torch.autograd.grad(branch_linbp(xl, branch, renorm=False), xl, g)
    cos = torch.nn.functional.cosine_similarity(g_lin.flatten(1), out[1.0].flatten(1))
    torch.testing.assert_close(cos, torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)
    assert not torch.allclose(g_lin, g_true)


# -- independent explicit segment-wise reference sweep (float64) ----------------------------------------


def _vjp(fn, x, g):
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (gx,) = torch.autograd.grad(fn(x), x, g)
    return gx


def _segments(block):
    """The branch as [linear segment, 'relu', linear segment, ...]."""
    if isinstance(block, TVBottleneck):
        return [lambda t: block.bn1(block.conv1(t)), "relu", lambda t: block.bn2(block.conv2(t)), "relu",
                lambda t: block.bn3(block.conv3(t))]
    return [lambda t: block.bn1(block.conv1(t)), "relu", lambda t: block.bn2(block.conv2(t))]


def explicit_sweep(model: TinyResNet, x, w, start_block: int, lam: float, renorm: bool = True):
    """LinBP input gradient from residual block ``start_block`` on, computed segment by segment."""
    blocks = list(model.layers)
    with torch.no_grad():
        h = model.relu(model.bn1(model.conv1(x)))
        for b in blocks[:start_block]:
            h = b(h)
        ins = []
        for b in blocks[start_block:]:
            ins.append(h)
            h = b(h)
    g = _vjp(lambda t: model.fc(t.mean(dim=(2, 3))), h, w)
    for b, xin in zip(reversed(blocks[start_block:]), reversed(ins)):
        segs = _segments(b)
        with torch.no_grad():  # forward through the branch, remembering segment inputs and pre-activations
            vals, t = [], xin
            for s in segs:
                vals.append(t)
                t = torch.relu(t) if s == "relu" else s(t)
            skip = xin if b.downsample is None else b.downsample(xin)
            total = t + skip
        g_sum = g * (total > 0)  # post-add ReLU: true mask
        g_skip = g_sum if b.downsample is None else _vjp(b.downsample, xin, g_sum)
        g_lin = g_true = g_sum
        for s, v in zip(reversed(segs), reversed(vals)):
            if s == "relu":
                g_true = g_true * (v > 0)
            else:
                g_lin, g_true = _vjp(s, v, g_lin), _vjp(s, v, g_true)
        if renorm:
            scale = g_true.flatten(1).norm(dim=1) / g_lin.flatten(1).norm(dim=1)
            g_lin = g_lin * scale.view(-1, 1, 1, 1)
        g = g_skip + lam * g_lin
    def prefix(t):
        t = model.relu(model.bn1(model.conv1(t)))
        for b in blocks[:start_block]:
            t = b(t)
        return t
    return _vjp(prefix, x, g)


@pytest.mark.parametrize("block", [TVBasic, TVBottleneck])
@pytest.mark.parametrize("renorm,lam", [(True, 1.0), (True, 0.7), (False, 1.0)])
def test_block_function_equals_explicit_segment_sweep(block, renorm, lam):
    torch.manual_seed(5)
    model = randomize_bn(TinyResNet(block)).double()
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    w = torch.randn(4, 5, dtype=torch.float64)
    start_block = 2
    name = f"layers.{start_block}"
    with LinBP(model, start=name, renorm=renorm, lam=lam):
        _, g = input_grad(model, x, w)
    want = explicit_sweep(model, x, w, start_block, lam, renorm)
    torch.testing.assert_close(g, want, rtol=0, atol=1e-12)
    _, g_plain = input_grad(model, x, w)
    assert (g - g_plain).abs().max() > 1e-6  # LinBP really changed the gradient


# -- removal, nesting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_remove_restores_plain_backprop_and_leaves_nothing(name):
    torch.manual_seed(6)
    model = MODELS[name]()
    x = torch.rand(2, 3, 8, 8)
    before_dicts = {n: sorted(m.__dict__) for n, m in model.named_modules()}
    out0, g0 = input_grad(model, x)
    t = LinBP(start=0)
    h = t.attach(model)
    _, g1 = input_grad(model, x)
    assert not torch.equal(g0, g1)
    h.remove()
    h.remove()
    out2, g2 = input_grad(model, x)
    assert torch.equal(out0, out2) and torch.equal(g0, g2)
    assert before_dicts == {n: sorted(m.__dict__) for n, m in model.named_modules()}
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


def test_nested_and_repeated_attach_unwind_in_any_order():
    torch.manual_seed(7)
    model = randomize_bn(TinyResNet(TVBasic))
    x = torch.rand(2, 3, 8, 8)
    _, g_plain = input_grad(model, x)
    with LinBP(model, start=3):
        _, g3 = input_grad(model, x)
    with LinBP(model, start=1):
        _, g1 = input_grad(model, x)
    outer, inner = LinBP(start=3), LinBP(start=1)
    h_out = outer.attach(model)
    with pytest.raises(TransformError):
        outer.attach(model)  # the same transform twice on one model
    h_in = inner.attach(model)
    _, g_nested = input_grad(model, x)
    assert torch.equal(g_nested, g1)  # the most recent attach governs the modules both patch
    h_out.remove()  # remove the outer one first: the inner one stays fully in force
    _, g_after = input_grad(model, x)
    assert torch.equal(g_after, g1)
    h_in.remove()
    _, g_end = input_grad(model, x)
    assert torch.equal(g_end, g_plain)
    # re-attaching after removal works and gives the same gradient
    h = outer.attach(model)
    _, g3b = input_grad(model, x)
    h.remove()
    assert torch.equal(g3, g3b)


def test_torchattacks_style_second_backward_through_same_graph():
    model = randomize_bn(TinyResNet(TVBottleneck))
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    with LinBP(model, start=1):
        out = model(x).sum()
        (a,) = torch.autograd.grad(out, x, retain_graph=True)
        (b,) = torch.autograd.grad(out, x)
    assert torch.equal(a, b)


# -- refusals ------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    model = vgg_chain()
    with pytest.raises(ConfigError, match="start"):
        LinBP(model, start=4).attach(model)
    with pytest.raises(ConfigError, match="not a module"):
        LinBP(start="features.99").attach(model)
    with pytest.raises(ConfigError, match="no ReLU or residual block"):
        LinBP(start="12").attach(model)
    res = TinyResNet(TVBasic)
    with pytest.raises(ConfigError, match="inside residual block"):
        LinBP(start="layers.1.conv2").attach(res)
    with pytest.raises(ConfigError, match="no nn.ReLU"):
        LinBP(start=0).attach(nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)))
    for bad in ({"lam": 0.0}, {"lam": float("nan")}, {"start": True}, {"start": ""}, {"renorm": "yes"}):
        with pytest.raises(ConfigError):
            LinBP(**bad)
    # a failed attach leaves the model untouched
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_refuses_shared_and_functional_relus():
    x = torch.rand(2, 4, requires_grad=True)
    m = SharedReLU()
    with pytest.raises(TransformError, match="more than once"):
        with LinBP(m, start=0):
            m(x)
    f = FunctionalReLU()
    with pytest.raises(TransformError, match="functional relu"):
        with LinBP(f, start=0):
            f(x)

    class EarlyFunctional(nn.Module):  # F.relu before the linearised region is plain BP and allowed
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.act, self.fc3 = nn.Linear(4, 8), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)

        def forward(self, x):
            return self.fc3(self.act(self.fc2(torch.nn.functional.relu(self.fc1(x)))))

    e = EarlyFunctional()
    with LinBP(e, start=0):
        e(x).sum().backward()
    seq_shared = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    seq_shared.add_module("again", seq_shared[1])
    with pytest.raises(TransformError, match="several names"):
        LinBP(start=0).attach(seq_shared)


def test_training_mode_forward_and_bn_statistics_unchanged():
    """The branch runs once per forward (no recompute), so train-mode BN/dropout behave as without LinBP."""
    import copy

    torch.manual_seed(9)
    a = TinyResNet(TVBasic).train()
    b = copy.deepcopy(a)
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    ya = a(x)
    with LinBP(b, start=1):
        yb = b(x)
        yb.sum().backward()
    assert torch.equal(ya, yb)
    for (k, u), (_, v) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(u, v), k


def test_adapter_that_does_not_reproduce_forward_is_refused():
    class Scaled(TVBasic):  # same children as a BasicBlock, different forward
        def forward(self, x):
            return super().forward(x) * 2

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Scaled(4, 4)).eval()
    with pytest.raises(TransformError, match="does not reproduce"):
        with LinBP(model, start=0):
            model(torch.rand(1, 3, 5, 5, requires_grad=True))


def test_user_block_adapter():
    from gradkit_linbp import BlockAdapter, register_block_adapter
    from gradkit_linbp.adapters import ADAPTERS

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6))

        def forward(self, x):
            return torch.nn.functional.relu(x + self.body(x))

    adapter = BlockAdapter(
        "res", lambda m: isinstance(m, Res), skip=lambda b, x: x,
        branch=lambda b, x, act: b.body[2](act(b.body[0](x))), post=lambda b, y: torch.nn.functional.relu(y),
    )
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(5, 6), Res(), Res(), nn.Linear(6, 3)).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    with pytest.raises(TransformError, match="functional relu"):  # without the adapter: the F.relu is refused
        with LinBP(model, start=0):
            model(x)
    register_block_adapter(adapter)
    try:
        assert [u.kind for u in find_units(model)] == ["block", "block"]
        out0, _ = input_grad(model, x)
        with LinBP(model, start=0, renorm=False):
            out1, g = input_grad(model, x)
        assert torch.equal(out0, out1)
        # independent: linearise the body ReLUs by hand (post-add F.relu stays a true ReLU)
        for blk in (model[1], model[2]):
            blk.body[1].forward = linear_relu
        _, want = input_grad(model, x)
        for blk in (model[1], model[2]):
            del blk.body[1].forward
        torch.testing.assert_close(g, want, rtol=0, atol=1e-12)
    finally:
        ADAPTERS.remove(adapter)
