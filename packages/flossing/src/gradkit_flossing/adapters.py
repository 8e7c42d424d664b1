"""Adapters that expose an RNN's forward dynamics ``h_{t+1} = f(h_t, x_{t+1})`` and its tangent map.

The estimator never forms the Jacobian ``D_t``; it asks the adapter for ``D_t Q`` (a ``(B, S, k)``
frame). Analytic fast paths exist for ``nn.RNN``/``nn.RNNCell`` (tanh, relu), ``nn.GRU``/``nn.GRUCell``
and ``nn.LSTM``/``nn.LSTMCell`` (state ``(h, c)``, so ``S = 2N`` per layer), including stacked
layers (concatenated state; ``D_t`` is block lower-triangular). Any other cell goes through
:func:`from_cell`, whose tangent is ``torch.func.jvp`` vmapped over the ``k`` frame columns.

Layer-to-layer dropout of stacked ``nn.RNN``/``nn.GRU``/``nn.LSTM`` is not applied (the dynamics
are those of the module in eval mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from gradkit.errors import ArgumentTypeError, ConfigError
from torch import Tensor, nn

from .ops import rnn_tangent_step
from .reference.rnn_tangent import activation_slope

__all__ = [
    "RecurrentDynamics",
    "RNNDynamics",
    "GRUDynamics",
    "LSTMDynamics",
    "CellDynamics",
    "from_cell",
    "as_dynamics",
    "jvp_tangent",
]


_JVP_READY = False


def _warm_jvp() -> None:
    # torch.func.jvp lazily imports torch._decomp.decompositions_for_jvp, which calls the deprecated
    # torch.jit.script internally and warns on every fresh process; import it once, quietly.
    global _JVP_READY
    if not _JVP_READY:
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
            import torch._decomp.decompositions_for_jvp  # noqa: F401
        _JVP_READY = True


def jvp_tangent(step: Callable[[Tensor, Tensor], Tensor], h: Tensor, x_t: Tensor, q: Tensor) -> Tensor:
    """``D_t Q`` for any differentiable ``step(h, x_t)``: forward-mode jvp, vmapped over the k columns.

    Exact (no finite differences) and differentiable with respect to parameters closed over by
    ``step`` and to ``h``; costs about k step evaluations, vectorised.
    """
    _warm_jvp()

    def column(v: Tensor) -> Tensor:
        return torch.func.jvp(lambda hh: step(hh, x_t), (h,), (v,))[1]

    return torch.func.vmap(column, in_dims=2, out_dims=2)(q)


class RecurrentDynamics:
    """What the Lyapunov estimator needs from a recurrent model.

    Subclasses set ``state_dim`` (``S``) and implement :meth:`step`; :meth:`tangent` defaults to
    :func:`jvp_tangent`. Inputs ``xs`` are ``(T, B, I)``, or ``(B, T, I)`` when ``batch_first``.

    Attributes:
        state_dim: size ``S`` of the flattened state.
        input_size: feature size ``I`` of ``x_t`` (``None``: not checked).
        batch_first: layout of the ``xs`` given to the estimator.
    """

    state_dim: int = 0
    input_size: int | None = None
    batch_first: bool = False

    def init_state(self, batch: int, *, like: Tensor) -> Tensor:
        """Initial state ``(B, S)``, zeros by default (``nn.RNN``'s default ``h0``)."""
        return torch.zeros(batch, self.state_dim, dtype=like.dtype, device=like.device)

    def step(self, h: Tensor, x_t: Tensor) -> Tensor:  # pragma: no cover - abstract
        """One step: ``(B, S), (B, I) -> (B, S)``."""
        raise NotImplementedError

    def tangent(self, h: Tensor, x_t: Tensor, h_next: Tensor, q: Tensor) -> Tensor:
        """``D_t Q`` with ``D_t = d h_next / d h`` at ``h``; ``q`` is ``(B, S, k)``."""
        return jvp_tangent(self.step, h, x_t, q)

    def step_tangent(self, h: Tensor, x_t: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """``(h_next, D_t Q)`` in one call (analytic adapters share the pre-activations)."""
        h_next = self.step(h, x_t)
        return h_next, self.tangent(h, x_t, h_next, q)

    def flossing_parameters(self) -> list[nn.Parameter]:
        """Parameters the flossing loss is minimised over (recurrent, input weights and biases)."""
        return []

    def time_major(self, xs: Tensor) -> Tensor:
        """Validate ``xs`` and return it as ``(T, B, I)``."""
        if not isinstance(xs, torch.Tensor):
            raise ArgumentTypeError(f"`xs` must be a tensor, got {type(xs).__name__}")
        if xs.dim() != 3:
            layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise ConfigError(f"`xs` must be 3-D {layout} (batch_first={self.batch_first}), got shape {tuple(xs.shape)}")
        if self.input_size is not None and xs.shape[-1] != self.input_size:
            raise ConfigError(
                f"`xs` has {xs.shape[-1]} features but the model's input_size is {self.input_size}; "
                f"pass inputs shaped {'(B, T, I)' if self.batch_first else '(T, B, I)'}"
            )
        return xs.transpose(0, 1) if self.batch_first else xs


# ---------------------------------------------------------------------------------------------
# torch.nn adapters
# ---------------------------------------------------------------------------------------------


def _layers(module: nn.Module) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]:
    if isinstance(module, nn.RNNCellBase):
        return [(module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh)]
    out = []
    for layer in range(module.num_layers):
        out.append(
            (
                getattr(module, f"weight_ih_l{layer}"),
                getattr(module, f"weight_hh_l{layer}"),
                getattr(module, f"bias_ih_l{layer}", None),
                getattr(module, f"bias_hh_l{layer}", None),
            )
        )
    return out


class _TorchRNNBase(RecurrentDynamics):
    kind = ""
    state_per_layer = 1  # multiples of hidden_size

    def __init__(self, module: nn.Module, *, batch_first: bool | None = None) -> None:
        if isinstance(module, nn.RNNBase):
            if module.bidirectional:
                raise ConfigError(
                    f"{type(module).__name__}(bidirectional=True) has no forward-in-time dynamics; "
                    "Lyapunov exponents need a causal recurrence: use bidirectional=False"
                )
            if getattr(module, "proj_size", 0):
                raise ConfigError(
                    "nn.LSTM(proj_size>0) is not supported by the analytic adapter; wrap its step with from_cell(...)"
                )
            if batch_first is not None and batch_first != module.batch_first:
                raise ConfigError(
                    f"`batch_first={batch_first}` conflicts with the module's batch_first={module.batch_first}; "
                    "pass inputs in the module's own layout (or leave batch_first=None)"
                )
            self.batch_first = bool(module.batch_first)
            self.num_layers = module.num_layers
        else:
            self.batch_first = bool(batch_first)
            self.num_layers = 1
        self.module = module
        self.hidden_size = module.hidden_size
        self.input_size = module.input_size
        self.state_dim = self.state_per_layer * self.hidden_size * self.num_layers

    def flossing_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.module.parameters() if p.requires_grad]

    def layers(self) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]:
        return _layers(self.module)

    def split(self, t: Tensor) -> list[Tensor]:
        """Per-layer blocks of a state ``(B, S)`` or a frame ``(B, S, k)``."""
        return list(t.split(self.state_per_layer * self.hidden_size, dim=1))

    def _drive(self, x: Tensor, w_ih: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor:
        g = x @ w_ih.t()
        if b_ih is not None:
            g = g + b_ih
        if b_hh is not None:
            g = g + b_hh
        return g

    def step(self, h: Tensor, x_t: Tensor) -> Tensor:
        return self.step_tangent(h, x_t, None)[0]

    def tangent(self, h: Tensor, x_t: Tensor, h_next: Tensor, q: Tensor) -> Tensor:
        return self.step_tangent(h, x_t, q)[1]

    def step_tangent(self, h: Tensor, x_t: Tensor, q: Tensor | None) -> tuple[Tensor, Tensor]:
        hs = self.split(h)
        qs = self.split(q) if q is not None else [None] * self.num_layers
        x, dx = x_t, None
        new_h, new_q = [], []
        for (w_ih, w_hh, b_ih, b_hh), hl, ql in zip(self.layers(), hs, qs):
            hn, zl, out, dout = self.layer_step(hl, x, ql, dx, w_ih, w_hh, b_ih, b_hh)
            new_h.append(hn)
            new_q.append(zl)
            x, dx = out, dout
        h_next = torch.cat(new_h, dim=1) if len(new_h) > 1 else new_h[0]
        if q is None:
            return h_next, None  # type: ignore[return-value]
        z = torch.cat(new_q, dim=1) if len(new_q) > 1 else new_q[0]
        return h_next, z

    def layer_step(self, h, x, q, dx, w_ih, w_hh, b_ih, b_hh):  # pragma: no cover - abstract
        raise NotImplementedError


class RNNDynamics(_TorchRNNBase):
    """Elman ``nn.RNN``/``nn.RNNCell`` (tanh or relu), stacked layers allowed.

    ``h' = phi(W_hh h + W_ih x + b)``, ``D_t = diag(phi'(a)) W_hh`` (slope at the new
    pre-activation). The first layer's step + tangent goes through the fused op
    ``gradkit_flossing.ops.rnn_tangent_step`` (a Triton kernel on GPU).
    """

    kind = "rnn"

    def __init__(self, module: nn.RNN | nn.RNNCell, *, batch_first: bool | None = None) -> None:
        if not isinstance(module, (nn.RNN, nn.RNNCell)):
            raise ArgumentTypeError(f"RNNDynamics needs nn.RNN or nn.RNNCell, got {type(module).__name__}")
        super().__init__(module, batch_first=batch_first)
        self.nonlinearity = module.nonlinearity

    def layer_step(self, h, x, q, dx, w_ih, w_hh, b_ih, b_hh):
        inp = self._drive(x, w_ih, b_ih, b_hh)
        if q is None:
            a = h @ w_hh.t() + inp
            hn = torch.tanh(a) if self.nonlinearity == "tanh" else torch.relu(a)
            return hn, None, hn, None
        if dx is None:
            hn, z = rnn_tangent_step(h, q, w_hh, inp, self.nonlinearity)
            return hn, z, hn, z
        hn, slope = activation_slope(h @ w_hh.t() + inp, self.nonlinearity)
        z = slope.unsqueeze(-1) * (torch.matmul(w_hh, q) + torch.matmul(w_ih, dx))
        return hn, z, hn, z


class GRUDynamics(_TorchRNNBase):
    """``nn.GRU``/``nn.GRUCell`` (PyTorch's gate convention: r, z, n; ``h' = (1-z) n + z h``)."""

    kind = "gru"

    def __init__(self, module: nn.GRU | nn.GRUCell, *, batch_first: bool | None = None) -> None:
        if not isinstance(module, (nn.GRU, nn.GRUCell)):
            raise ArgumentTypeError(f"GRUDynamics needs nn.GRU or nn.GRUCell, got {type(module).__name__}")
        super().__init__(module, batch_first=batch_first)

    def layer_step(self, h, x, q, dx, w_ih, w_hh, b_ih, b_hh):
        gi = x @ w_ih.t()
        if b_ih is not None:
            gi = gi + b_ih
        gh = h @ w_hh.t()
        if b_hh is not None:
            gh = gh + b_hh
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        zg = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        hn = (1 - zg) * n + zg * h
        if q is None:
            return hn, None, hn, None
        dgh = torch.matmul(w_hh, q)
        dh_r, dh_z, dh_n = dgh.chunk(3, dim=1)
        if dx is not None:
            dgi = torch.matmul(w_ih, dx)
            di_r, di_z, di_n = dgi.chunk(3, dim=1)
            dr = (r * (1 - r)).unsqueeze(-1) * (di_r + dh_r)
            dz = (zg * (1 - zg)).unsqueeze(-1) * (di_z + dh_z)
            dn_in = di_n
        else:
            dr = (r * (1 - r)).unsqueeze(-1) * dh_r
            dz = (zg * (1 - zg)).unsqueeze(-1) * dh_z
            dn_in = 0.0
        dn = (1 - n * n).unsqueeze(-1) * (dn_in + dr * h_n.unsqueeze(-1) + r.unsqueeze(-1) * dh_n)
        z = (h - n).unsqueeze(-1) * dz + (1 - zg).unsqueeze(-1) * dn + zg.unsqueeze(-1) * q
        return hn, z, hn, z


class LSTMDynamics(_TorchRNNBase):
    """``nn.LSTM``/``nn.LSTMCell``; the state is ``(h, c)`` per layer, flattened as ``[h_0, c_0, h_1, ...]``.

    The full ``2N``-dimensional tangent is propagated (``d c'/d c = diag(f)`` included), unlike
    Jacobians taken with ``c`` held fixed.
    """

    kind = "lstm"
    state_per_layer = 2

    def __init__(self, module: nn.LSTM | nn.LSTMCell, *, batch_first: bool | None = None) -> None:
        if not isinstance(module, (nn.LSTM, nn.LSTMCell)):
            raise ArgumentTypeError(f"LSTMDynamics needs nn.LSTM or nn.LSTMCell, got {type(module).__name__}")
        super().__init__(module, batch_first=batch_first)

    def layer_step(self, s, x, q, dx, w_ih, w_hh, b_ih, b_hh):
        N = self.hidden_size
        h, c = s[:, :N], s[:, N:]
        g = self._drive(x, w_ih, b_ih, b_hh) + h @ w_hh.t()
        a_i, a_f, a_g, a_o = g.chunk(4, dim=1)
        i, f, gg, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
        c2 = f * c + i * gg
        tc = torch.tanh(c2)
        h2 = o * tc
        new_s = torch.cat([h2, c2], dim=1)
        if q is None:
            return new_s, None, h2, None
        dh, dc = q[:, :N], q[:, N:]
        da = torch.matmul(w_hh, dh)
        if dx is not None:
            da = da + torch.matmul(w_ih, dx)
        d_i, d_f, d_g, d_o = da.chunk(4, dim=1)
        u = lambda t: t.unsqueeze(-1)  # noqa: E731
        dc2 = u(f) * dc + u(c * f * (1 - f)) * d_f + u(gg * i * (1 - i)) * d_i + u(i * (1 - gg * gg)) * d_g
        dh2 = u(tc * o * (1 - o)) * d_o + u(o * (1 - tc * tc)) * dc2
        return new_s, torch.cat([dh2, dc2], dim=1), h2, dh2


# ---------------------------------------------------------------------------------------------
# Generic cells
# ---------------------------------------------------------------------------------------------


class CellDynamics(RecurrentDynamics):
    """Any cell ``step(h, x_t) -> h_next`` on a flat ``(B, S)`` state; tangent by jvp unless given."""

    def __init__(
        self,
        step: Callable[[Tensor, Tensor], Tensor],
        state_dim: int,
        parameters: Iterable[nn.Parameter] = (),
        *,
        tangent: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor] | None = None,
        input_size: int | None = None,
        batch_first: bool = False,
        init_state: Callable[[int, Tensor], Tensor] | None = None,
    ) -> None:
        if not callable(step):
            raise ArgumentTypeError(f"`step` must be callable, got {type(step).__name__}")
        if not isinstance(state_dim, int) or state_dim <= 0:
            raise ConfigError(f"`state_dim` must be a positive int, got {state_dim!r}")
        self._step = step
        self._tangent = tangent
        self._params = list(parameters)
        self._init = init_state
        self.state_dim = state_dim
        self.input_size = input_size
        self.batch_first = batch_first

    def step(self, h: Tensor, x_t: Tensor) -> Tensor:
        return self._step(h, x_t)

    def tangent(self, h: Tensor, x_t: Tensor, h_next: Tensor, q: Tensor) -> Tensor:
        if self._tangent is not None:
            return self._tangent(h, x_t, h_next, q)
        return jvp_tangent(self._step, h, x_t, q)

    def init_state(self, batch: int, *, like: Tensor) -> Tensor:
        if self._init is not None:
            return self._init(batch, like)
        return super().init_state(batch, like=like)

    def flossing_parameters(self) -> list[nn.Parameter]:
        return self._params


def from_cell(
    step: Callable[[Tensor, Tensor], Tensor], state_dim: int, parameters: Iterable[nn.Parameter] = (), **kwargs: Any
) -> CellDynamics:
    """Wrap a user cell; see :class:`CellDynamics`. ``parameters`` are the ones flossing updates."""
    return CellDynamics(step, state_dim, parameters, **kwargs)


_ADAPTERS: list[tuple[tuple[type, ...], type]] = [
    ((nn.RNN, nn.RNNCell), RNNDynamics),
    ((nn.GRU, nn.GRUCell), GRUDynamics),
    ((nn.LSTM, nn.LSTMCell), LSTMDynamics),
]


def as_dynamics(obj: Any, *, module: str | None = None, batch_first: bool | None = None) -> RecurrentDynamics:
    """Find the dynamics of ``obj``.

    ``obj`` may be a :class:`RecurrentDynamics`, an ``nn.RNN``/``GRU``/``LSTM`` (or cell), a model
    with a ``flossing_dynamics()`` method, or a model with exactly one recurrent submodule
    (``module=`` names it when there are several).
    """
    if isinstance(obj, RecurrentDynamics):
        return obj
    if not isinstance(obj, nn.Module):
        raise ArgumentTypeError(
            f"expected an nn.Module or a RecurrentDynamics, got {type(obj).__name__}; "
            "wrap a plain step function with gradkit_flossing.from_cell(step, state_dim, params)"
        )
    if module is not None:
        try:
            obj = obj.get_submodule(module)
        except AttributeError as exc:
            raise ConfigError(f"`module={module!r}` is not a submodule of {type(obj).__name__}") from exc
    for types, adapter in _ADAPTERS:
        if isinstance(obj, types):
            return adapter(obj, batch_first=batch_first)
    fn = getattr(obj, "flossing_dynamics", None)
    if callable(fn):
        return as_dynamics(fn())
    found = [(name, m) for name, m in obj.named_modules() if any(isinstance(m, t) for t, _ in _ADAPTERS)]
    if len(found) == 1:
        return as_dynamics(found[0][1], batch_first=batch_first)
    if not found:
        raise ConfigError(
            f"{type(obj).__name__} has no nn.RNN/GRU/LSTM (or cell) submodule; give it a flossing_dynamics() "
            "method or pass a RecurrentDynamics (see gradkit_flossing.from_cell)"
        )
    names = [n for n, _ in found]
    raise ConfigError(f"{type(obj).__name__} has several recurrent submodules {names}; choose one with `module=`")
