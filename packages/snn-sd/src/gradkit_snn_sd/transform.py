"""Rate-based backpropagation (``rate-bp-m``, ``rate-bp-s``) and enhanced self-distillation (``snn-sd``).

Rate-BP: Yu, Liu, Wang, Li, Wang, "Advancing Training Efficiency of Deep Spiking Neural Networks
through Rate-based Backpropagation", NeurIPS 2024, https://arxiv.org/abs/2410.11488.
Self-distillation: Zhao, Yu, Yu, Liu, Wang, "Enhanced Self-Distillation Framework for Efficient
Spiking Neural Network Training", NeurIPS 2025, https://arxiv.org/abs/2510.06254.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from collections.abc import Callable
from typing import Any, Optional

import torch
import torch.nn.functional as F
from gradkit.errors import ConfigError, TransformError
from gradkit.transforms import GradientTransform, TransformHandle
from torch import nn

from .config import RateBPConfig, SDConfig
from .functional import masked_kd, rate_node, reliable_teacher
from .modules import NeuronParams, RateLIF, SepConvBranch
from .ops.lif_rate import lif_rate_fwd

__all__ = ["RateBackprop", "RateBackpropM", "RateBackpropS", "SelfDistillation", "find_neurons", "neuron_params"]

SPIKE_M, SPIKE_S, RATE = "spike_m", "spike_s", "rate"

#: model -> active rate-BP runtime (so SD can see the phase)
_RUNTIMES: weakref.WeakKeyDictionary[nn.Module, _Runtime] = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------------------------
# neurons
# ------------------------------------------------------------------------------------------------
def _sj_classes() -> tuple[type, ...]:
    """spikingjelly's LIF/IF node classes, if spikingjelly is already imported (never imported here)."""
    if "spikingjelly.activation_based.neuron" not in sys.modules:
        return ()
    neuron = sys.modules["spikingjelly.activation_based.neuron"]
    return (neuron.LIFNode, neuron.IFNode)


def _is_sj_node(m: nn.Module) -> bool:
    return any(c.__module__.startswith("spikingjelly.") and c.__name__.endswith("Node") for c in type(m).__mro__)


def neuron_params(m: nn.Module) -> NeuronParams:
    """Rate-BP parameters of a supported neuron (our :class:`RateLIF`, spikingjelly 2.0 ``LIFNode``/``IFNode``)."""
    if isinstance(m, RateLIF):
        return m.neuron_params()
    sj = _sj_classes()
    if sj and type(m) in sj:
        name = type(m).__name__
        if getattr(m, "step_mode", "s") != "m":
            raise ConfigError(
                f"rate-BP needs multi-step spikingjelly neurons; {name} has step_mode={m.step_mode!r}: "
                "call spikingjelly.activation_based.functional.set_step_mode(model, 'm') first"
            )
        sg = m.surrogate_function
        if type(sg).__name__ != "Sigmoid" or not getattr(sg, "spiking", True):
            raise ConfigError(
                f"rate-BP supports the sigmoid surrogate only; {name} uses {type(sg).__name__}: "
                "build the neuron with surrogate_function=surrogate.Sigmoid(alpha)"
            )
        v_reset = None if m.v_reset is None else float(m.v_reset)
        if name == "LIFNode":
            tau = float(m.tau)
            lam, c = 1.0 - 1.0 / tau, (1.0 / tau if m.decay_input else 1.0)
        else:
            lam, c = 1.0, 1.0
        return NeuronParams(lam=lam, theta=float(m.v_threshold), v_reset=v_reset,
                            detach_reset=bool(m.detach_reset), alpha=float(sg.alpha), input_scale=c)
    raise ConfigError(
        f"rate-BP does not support the neuron {type(m).__name__}; supported: gradkit_snn_sd.RateLIF and "
        "spikingjelly 2.0 LIFNode/IFNode (multi-step, sigmoid surrogate)"
    )


_NONLINEAR_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                    nn.AdaptiveMaxPool3d)


def nonlinear_after_neurons(model: nn.Module) -> list[str]:
    """Names of max-pooling modules registered after the first spiking neuron (in module order).

    Between neurons they break rate-BP's time-linearity (the rate pass's values stop being time
    averages); before the first neuron (a stem under direct encoding) they are harmless.
    """
    seen_neuron, out = False, []
    for name, m in model.named_modules():
        if isinstance(m, RateLIF) or _is_sj_node(m):
            seen_neuron = True
        elif seen_neuron and isinstance(m, _NONLINEAR_POOLS):
            out.append(name)
    return out


def find_neurons(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """All spiking neurons of ``model`` (raises :class:`ConfigError` for unsupported spiking nodes)."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, RateLIF) or _is_sj_node(m):
            neuron_params(m)  # validates
            out.append((name, m))
    return out


class _NeuronState:
    __slots__ = ("r", "e", "v", "k", "n")

    def __init__(self) -> None:
        self.r = self.e = self.v = self.k = None
        self.n = 0


class _BNState:
    __slots__ = ("mean", "var", "n", "sum_mean", "sum_inv", "sum_uvar", "finalized")

    def __init__(self) -> None:
        self.mean = self.var = None
        self.n = 0
        self.sum_mean = self.sum_inv = self.sum_uvar = None
        self.finalized = False


class _GradScale(torch.autograd.Function):
    @staticmethod
    def forward(x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
        ctx.scale = inputs[1]

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def, override]
        return g * ctx.scale, None


def grad_scale(x: Any, scale: float) -> Any:
    """Identity in value; multiplies the gradient by ``scale`` (tensors inside tuples/lists/dicts too)."""
    if scale == 1.0:
        return x
    if isinstance(x, torch.Tensor):
        return _GradScale.apply(x, scale) if x.requires_grad else x
    if isinstance(x, tuple) and not hasattr(x, "_fields"):
        return tuple(grad_scale(v, scale) for v in x)
    if isinstance(x, list):
        return [grad_scale(v, scale) for v in x]
    if isinstance(x, dict):
        return {k: grad_scale(v, scale) for k, v in x.items()}
    return x


class _Runtime:
    """Per-attachment state: current phase, per-neuron and per-BN statistics."""

    def __init__(self, step_mode: str) -> None:
        self.step_mode = step_mode
        self.phase: Optional[str] = None
        self.scale = 1.0
        self.T = 0
        self.neurons: dict[nn.Module, _NeuronState] = {}
        self.bns: dict[nn.Module, _BNState] = {}

    def reset(self) -> None:
        for k in self.neurons:
            self.neurons[k] = _NeuronState()
        for k in self.bns:
            self.bns[k] = _BNState()


def _neuron_forward(rt: _Runtime, m: nn.Module, p: NeuronParams, plain: Callable[..., Any]) -> Callable[..., Any]:
    def forward(x_seq: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        phase = rt.phase
        if phase is None:
            return plain(x_seq, *args, **kwargs)
        st = rt.neurons[m]
        if phase == SPIKE_M:
            spikes, r, e, _, _ = lif_rate_fwd(x_seq, **p.kwargs())
            st.r, st.e, st.n = r, e, x_seq.shape[0]
            return spikes
        if phase == SPIKE_S:
            spikes, r, e, v, k = lif_rate_fwd(x_seq, st.v, st.k, **p.kwargs())
            st.r = r if st.r is None else st.r + r
            st.e = e if st.e is None else st.e + e
            st.v, st.k, st.n = v, k, st.n + x_seq.shape[0]
            return spikes
        # rate pass: input [1, B, ...] = time-averaged current
        if st.r is None:
            raise TransformError("rate-BP: a neuron ran in the rate pass without a spike pass (was the model changed?)")
        if x_seq.shape[0] != 1:
            raise TransformError(f"rate-BP: rate pass expects a [1, B, ...] input, got {tuple(x_seq.shape)}")
        i_bar = x_seq[0]
        rate = (st.r / st.n).to(i_bar.dtype)
        elig = (st.e / st.n).to(i_bar.dtype)
        return rate_node(i_bar, rate, elig).unsqueeze(0)

    return forward


def _bn_fold(m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Optional[tuple[int, int]]]:
    if getattr(m, "step_mode", "s") == "m":
        return x.flatten(0, 1), (x.shape[0], x.shape[1])
    return x, None


def _bn_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    dims = [0] + list(range(2, x.dim()))
    n = x.numel() // x.shape[1]
    return x.mean(dims), x.var(dims, unbiased=False), n


def _update_running(m: nn.Module, mean: torch.Tensor, uvar: torch.Tensor) -> None:
    if not m.track_running_stats or m.running_mean is None:
        return
    m.num_batches_tracked.add_(1)
    mom = (1.0 / float(m.num_batches_tracked)) if m.momentum is None else m.momentum
    m.running_mean.mul_(1 - mom).add_(mom * mean.to(m.running_mean.dtype))
    m.running_var.mul_(1 - mom).add_(mom * uvar.to(m.running_var.dtype))


def _bn_forward(rt: _Runtime, m: nn.modules.batchnorm._BatchNorm, plain: Callable[..., Any]) -> Callable[..., Any]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        phase = rt.phase
        if phase is None or not m.training:
            return plain(x)
        st = rt.bns[m]
        xf, tb = _bn_fold(m, x)
        if phase == SPIKE_M:
            y = plain(x)  # ordinary training BN: normalises with and updates from the T*B batch
            st.mean, st.var, _ = _bn_stats(xf)
            return y
        if phase == SPIKE_S:
            mean, var, n = _bn_stats(xf)
            uvar = var * (n / max(n - 1, 1))
            inv = 1.0 / (var + m.eps)
            st.sum_mean = mean if st.sum_mean is None else st.sum_mean + mean
            st.sum_inv = inv if st.sum_inv is None else st.sum_inv + inv
            st.sum_uvar = uvar if st.sum_uvar is None else st.sum_uvar + uvar
            st.n += 1
            y = F.batch_norm(xf, None, None, m.weight, m.bias, True, 0.0, m.eps)
            return y if tb is None else y.view(*tb, *y.shape[1:])
        # rate pass
        if rt.step_mode == "s" and not st.finalized:
            if st.n == 0:
                raise TransformError("rate-BP: a BatchNorm ran in the rate pass without a spike pass")
            st.mean = st.sum_mean / st.n
            st.var = st.n / st.sum_inv - m.eps  # 1/(var+eps) averaged over steps
            _update_running(m, st.mean, st.sum_uvar / st.n)
            st.finalized = True
        if st.mean is None:
            raise TransformError("rate-BP: a BatchNorm ran in the rate pass without a spike pass")
        mu_r, var_r, _ = _bn_stats(xf)
        mu = st.mean.to(xf.dtype) + (mu_r - mu_r.detach())
        var = (st.var.to(xf.dtype) + (var_r - var_r.detach())).clamp(min=0.0)
        shape = [1, -1] + [1] * (xf.dim() - 2)
        y = (xf - mu.view(shape)) * torch.rsqrt(var + m.eps).view(shape)
        if m.weight is not None:
            y = y * m.weight.view(shape) + m.bias.view(shape)
        return y if tb is None else y.view(*tb, *y.shape[1:])

    return forward


def _override_forward(m: nn.Module, fn: Callable[..., Any], handle: TransformHandle) -> None:
    had = "forward" in m.__dict__
    old = m.__dict__.get("forward")
    m.forward = fn  # type: ignore[method-assign]

    def undo() -> None:
        if had:
            m.forward = old  # type: ignore[method-assign]
        else:
            del m.forward

    handle.add(undo)


# ------------------------------------------------------------------------------------------------
# RateBackprop
# ------------------------------------------------------------------------------------------------
class RateBackprop(GradientTransform):
    """Rate-based backpropagation for multi-step SNNs (use :class:`RateBackpropM` / :class:`RateBackpropS`).

    Yu et al., "Advancing Training Efficiency of Deep Spiking Neural Networks through Rate-based
    Backpropagation", NeurIPS 2024, https://arxiv.org/abs/2410.11488.

    After ``attach(model)``, a training-mode forward with autograd on, ``model(x)``, runs

    1. a **spike pass** without a graph over all ``T`` steps (``rate-bp-m``: one call on the whole
       sequence, BN statistics over ``T*B``; ``rate-bp-s``: ``T`` calls of one step, state carried,
       per-step BN statistics), keeping each neuron's firing rate and eligibility and each BN's batch
       statistics (running statistics are updated once per forward);
    2. a **rate pass** on the time-averaged input that builds the only graph: each neuron returns its
       rate with derivative = eligibility; each BN normalises with the spike-pass statistics (value)
       and differentiates through its own batch statistics (gradient).

    It returns the rate pass's output (``rate-bp-m``: exactly the mean-over-time output of the spike
    pass when only time-linear ops sit between neurons). Gradients are exact (= BPTT summed over time)
    for a neuron with time-constant input and for the whole network at ``T = 1``; otherwise an
    approximation whose memory does not grow with ``T``. Eval mode and ``torch.no_grad()`` run the
    plain SNN. ``remove()`` restores the model exactly.

    Input: whatever the model takes; the time-major sequence is ``model.to_time_major(x)`` when the
    model defines it (the models in :mod:`gradkit_snn_sd.models`), else ``x`` itself (``[T, B, ...]``).

    Constraints: only time-linear ops between neurons (conv, linear, avg-pool, add, BN); max-pool of
    spikes, spike attention or multiplicative gates give wrong values. Neurons: :class:`RateLIF`,
    spikingjelly 2.0 ``LIFNode``/``IFNode`` (``step_mode='m'``, sigmoid surrogate).

    Examples::

        >>> import torch, gradkit_snn_sd as sd
        >>> net = sd.SpikingConvNet(widths=(8, 16), T=4)
        >>> with sd.RateBackpropM(net, loss_scale=1.0):
        ...     loss = torch.nn.functional.cross_entropy(net(torch.rand(5, 1, 8, 8)), torch.arange(5))
        ...     loss.backward()
    """

    step_mode = "m"

    def __init__(self, module: nn.Module | None = None, config: RateBPConfig | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise ConfigError("RateBackprop: pass either `config` or keyword hyperparameters, not both")
        super().__init__(module, config if config is not None else RateBPConfig(**kwargs))
        self._runtime: Optional[_Runtime] = None

    @property
    def phase(self) -> Optional[str]:
        return None if self._runtime is None else self._runtime.phase

    def _attach(self, model: nn.Module, handle: TransformHandle) -> None:
        if model in _RUNTIMES:
            raise TransformError("a rate-BP transform is already attached to this model; remove it first")
        neurons = find_neurons(model)
        if not neurons:
            raise ConfigError(
                f"{self.name}: the model has no spiking neurons (RateLIF or spikingjelly LIFNode/IFNode); "
                "rate-BP only applies to spiking networks"
            )
        bad = nonlinear_after_neurons(model)
        if bad:
            warnings.warn(
                f"{self.name}: max pooling {bad} follows a spiking neuron; rate-BP needs time-linear ops between "
                "neurons (use average pooling), otherwise its gradients are computed at wrong rate-pass values",
                UserWarning,
                stacklevel=3,
            )
        rt = _Runtime(self.step_mode)
        for _, m in neurons:
            rt.neurons[m] = _NeuronState()
            _override_forward(m, _neuron_forward(rt, m, neuron_params(m), type(m).forward.__get__(m)), handle)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not getattr(m, "_gradkit_ann", False):
                rt.bns[m] = _BNState()
                _override_forward(m, _bn_forward(rt, m, type(m).forward.__get__(m)), handle)
        orig = model.forward
        _override_forward(model, self._wrap(model, rt, orig), handle)
        _RUNTIMES[model] = rt
        self._runtime = rt

        def undo() -> None:
            _RUNTIMES.pop(model, None)
            self._runtime = None

        handle.add(undo)

    def _wrap(self, model: nn.Module, rt: _Runtime, orig: Callable[..., Any]) -> Callable[..., Any]:
        cfg: RateBPConfig = self.config

        def forward(x: Any, *args: Any, **kwargs: Any) -> Any:
            if rt.phase is not None or not model.training or not torch.is_grad_enabled():
                return orig(x, *args, **kwargs)
            to_tm = getattr(model, "to_time_major", None)
            xs = to_tm(x) if callable(to_tm) else x
            if not isinstance(xs, torch.Tensor) or xs.dim() < 2:
                raise ConfigError(f"{self.name}: the model input must be a time-major tensor [T, B, ...]")
            T = xs.shape[0]
            if T <= 0:
                raise ConfigError(f"{self.name}: the input has T = {T} time steps; need T >= 1")
            if cfg.T is not None and T != cfg.T:
                raise ConfigError(f"{self.name}: config T = {cfg.T} but the input has T = {T} steps ([T, B, ...])")
            rt.reset()
            rt.T = T
            try:
                with torch.no_grad():
                    if self.step_mode == "m":
                        rt.phase = SPIKE_M
                        orig(xs, *args, **kwargs)
                    else:
                        rt.phase = SPIKE_S
                        for t in range(T):
                            orig(xs[t : t + 1], *args, **kwargs)
                rt.phase = RATE
                rt.scale = cfg.scale_for(T)
                out = orig(xs.mean(0, keepdim=True), *args, **kwargs)
            finally:
                rt.phase = None
            return grad_scale(out, rt.scale)

        return forward

    def neuron_stats(self) -> dict[str, float]:
        """Mean firing rate and mean eligibility over all neurons of the last spike pass."""
        rt = self._runtime
        if rt is None:
            return {}
        rs = [st.r.float().mean() / st.n for st in rt.neurons.values() if st.r is not None]
        es = [st.e.float().mean() / st.n for st in rt.neurons.values() if st.e is not None]
        if not rs:
            return {}
        return {"rate_bp/mean_rate": float(torch.stack(rs).mean()), "rate_bp/mean_elig": float(torch.stack(es).mean())}


class RateBackpropM(RateBackprop):
    """``rate-bp-m``: spike pass as one multi-step call on ``[T, B, ...]`` (BN statistics over T*B)."""

    name = "rate-bp-m"
    step_mode = "m"


class RateBackpropS(RateBackprop):
    """``rate-bp-s``: spike pass as ``T`` one-step calls (state carried; per-step BN statistics, whose
    mean and harmonic-mean variance the rate pass uses; transient memory constant in ``T``)."""

    name = "rate-bp-s"
    step_mode = "s"


# ------------------------------------------------------------------------------------------------
# SelfDistillation
# ------------------------------------------------------------------------------------------------
class SelfDistillation(GradientTransform):
    """Enhanced self-distillation for SNNs trained with rate-BP.

    Zhao et al., "Enhanced Self-Distillation Framework for Efficient Spiking Neural Network Training",
    NeurIPS 2025, https://arxiv.org/abs/2510.06254.

    ``attach(model)`` adds lightweight ANN branches (:class:`SepConvBranch`) on the outputs of
    ``stages`` as the child ``model.sd_branches`` (also ``transform.branches``; for an ``nn.Sequential``
    model only there, with a warning, since a new child would run as a layer). In training with autograd on they run on the stage
    outputs' firing rates: in rate-BP's rate pass (the value is the true firing rate and the gradient
    reaches the SNN through the eligibility), or, without rate-BP, on ``mean_t`` of the BPTT spikes.
    They never run in the spike pass or in eval mode, so the model's inference output is unchanged.

    Loss (:meth:`loss`, or ``gradkit_loss_terms`` inside :func:`gradkit.train`), exits ``z_1..z_K``
    (branches, then the head)::

        teacher_b = mean of the z_{i,b} with argmax z_{i,b} = y_b   (detached; none correct: excluded)
        alpha * sum_branches CE(z_i, y) + (w_head - 1) * CE(z_K, y) + beta * sum_i KD_tau(z_i, teacher)

    (the objective supplies the head's CE with weight 1; ``w_head = final_ce_weight or alpha``).
    With no reliable exit in the batch the KD term is exactly 0 (the reference code returns NaN).

    Build the optimizer after attaching (the branches add parameters). ``export_inference()``
    returns the state dict without the branches.

    Examples::

        >>> import torch, gradkit_snn_sd as sd
        >>> net = sd.SpikingConvNet(widths=(8, 16, 16), T=2)
        >>> with sd.RateBackpropM(net), sd.SelfDistillation(net, stages=("stage1", "stage2")) as esd:
        ...     x, y = torch.rand(6, 1, 8, 8), torch.arange(6)
        ...     out = net(x)
        ...     loss = torch.nn.functional.cross_entropy(out, y) + esd.loss(out, y)
        ...     loss.backward()
    """

    name = "snn-sd"

    def __init__(
        self,
        module: nn.Module | None = None,
        config: SDConfig | None = None,
        *,
        example_input: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        if config is not None and kwargs:
            raise ConfigError("SelfDistillation: pass either `config` or keyword hyperparameters, not both")
        super().__init__(module, config if config is not None else SDConfig(**kwargs))
        self.example_input = example_input
        self._exits: dict[str, torch.Tensor] = {}
        self._model: Optional[nn.Module] = None
        self.branches: Optional[nn.ModuleDict] = None
        self.last_stats: dict[str, float] = {}

    def _attach(self, model: nn.Module, handle: TransformHandle) -> None:
        cfg: SDConfig = self.config
        if not cfg.stages:
            raise ConfigError("SelfDistillation: `stages` is empty; name the submodules to branch from, e.g. ('layer1', 'layer2')")
        if hasattr(model, "sd_branches"):
            raise TransformError("SelfDistillation: the model already has `sd_branches`; remove the other attachment first")
        names = dict(model.named_modules())
        missing = [s for s in cfg.stages if s not in names or s == ""]
        if missing:
            top = [n for n, _ in model.named_children()]
            raise ConfigError(
                f"SelfDistillation: stage(s) {missing} do not exist in {type(model).__name__}; "
                f"top-level submodules are {top} (use dotted names for nested ones)"
            )
        if not find_neurons(model):
            raise ConfigError("SelfDistillation: the model has no spiking neurons (RateLIF or spikingjelly LIFNode/IFNode)")
        shapes, out = self._dry_run(model, names)
        if isinstance(out, torch.Tensor) and out.dim() == 3:
            out = out.mean(0)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise ConfigError("SelfDistillation: the model must return logits [B, classes] (or [T, B, classes])")
        num_classes = out.shape[-1]
        for s, shp in shapes.items():
            if len(shp) != 5:
                raise ConfigError(
                    f"SelfDistillation: stage {s!r} outputs shape {tuple(shp)}; branches need time-major "
                    "feature maps [T, B, C, H, W]"
                )
        width = cfg.branch_width or 2 * max(shp[2] for shp in shapes.values())
        spatial = cfg.branch_spatial or max(1, min(shp[3] for shp in shapes.values()) // 2)
        p = next(model.parameters())
        branches = nn.ModuleDict()
        for s in cfg.stages:
            shp = shapes[s]
            branches[s.replace(".", "_")] = SepConvBranch(shp[2], shp[3], width=width, spatial=spatial,
                                                           num_classes=num_classes).to(p.device, p.dtype)
        branches.train(model.training)
        self.branches = branches
        if isinstance(model, (nn.Sequential, nn.ModuleList)):
            # a Sequential's forward iterates over its children: a new child would run as a layer
            warnings.warn(
                "SelfDistillation: the model is an nn.Sequential, so the branches are not added to it; they are "
                "in `transform.branches` -- give their parameters to the optimizer yourself",
                UserWarning,
                stacklevel=3,
            )
        else:
            model.sd_branches = branches

            def undo_branches() -> None:
                if "sd_branches" in model._modules:
                    del model._modules["sd_branches"]

            handle.add(undo_branches)
        for s in cfg.stages:
            key = s.replace(".", "_")
            handle.add_torch_handle(names[s].register_forward_hook(self._tap_hook(model, key)))
        handle.add_torch_handle(model.register_forward_pre_hook(lambda m, a: self._exits.clear()))
        self._model = model

        def undo() -> None:
            self._exits.clear()
            self._model = None
            self.branches = None

        handle.add(undo)

    def _dry_run(self, model: nn.Module, names: dict[str, nn.Module]) -> tuple[dict[str, torch.Size], Any]:
        x = self.example_input
        if x is None:
            ex = getattr(model, "example_input", None)
            if not callable(ex):
                raise ConfigError(
                    "SelfDistillation: pass `example_input=` (one batch the model accepts) so the branches can be "
                    "sized, or give the model an `example_input()` method"
                )
            x = ex()
        shapes: dict[str, torch.Size] = {}
        hooks = [names[s].register_forward_hook(lambda m, a, o, s=s: shapes.__setitem__(s, o.shape)) for s in self.config.stages]
        was = model.training
        try:
            model.eval()
            with torch.no_grad():
                out = model(x)
        finally:
            model.train(was)
            for h in hooks:
                h.remove()
            for m in model.modules():  # spikingjelly memories
                if _is_sj_node(m) and hasattr(m, "reset"):
                    m.reset()
        return shapes, out

    def _tap_hook(self, model: nn.Module, key: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, out: Any) -> None:
            if not model.training or not torch.is_grad_enabled():
                return
            rt = _RUNTIMES.get(model)
            if rt is not None and rt.phase in (SPIKE_M, SPIKE_S):
                return
            if not isinstance(out, torch.Tensor) or out.dim() != 5:
                raise TransformError(f"SelfDistillation: stage output must be [T, B, C, H, W], got {type(out).__name__}")
            logits = self.branches[key](out.mean(0))
            if rt is not None and rt.phase == RATE:
                logits = grad_scale(logits, rt.scale)
            self._exits[key] = logits

        return hook

    @property
    def exits(self) -> list[torch.Tensor]:
        """Branch logits of the last training forward, in ``stages`` order."""
        return [self._exits[s.replace(".", "_")] for s in self.config.stages if s.replace(".", "_") in self._exits]

    def loss_terms(self, outputs: torch.Tensor, y: torch.Tensor) -> list[tuple[str, torch.Tensor, float]]:
        """``[(name, value, weight), ...]``: the extra terms added to the head's CE (see class docstring)."""
        cfg: SDConfig = self.config
        branch = self.exits
        if not branch:
            return []
        z = outputs.mean(0) if outputs.dim() == 3 else outputs
        allz = branch + [z]
        teacher, valid, n = reliable_teacher(allz, y)
        ce = torch.stack([F.cross_entropy(b, y) for b in branch]).sum()
        kd = torch.stack([masked_kd(zi, teacher, valid, cfg.temperature) for zi in allz]).sum()
        terms = [("snn_sd.branch_ce", ce, float(cfg.alpha)), ("snn_sd.kd", kd, float(cfg.beta))]
        w_head = cfg.alpha if cfg.final_ce_weight is None else cfg.final_ce_weight
        if w_head != 1.0:
            terms.append(("snn_sd.head_ce_extra", F.cross_entropy(z, y), float(w_head) - 1.0))
        with torch.no_grad():
            stats = {f"snn_sd/acc_exit{i + 1}": float((e.argmax(-1) == y).float().mean()) for i, e in enumerate(allz)}
            stats["snn_sd/valid_frac"] = float(valid.float().mean())
            stats["snn_sd/mean_reliable_exits"] = float(n.float().mean())
        self.last_stats = stats
        return terms

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum of :meth:`loss_terms` (add it to the head's CE); ``0`` when the branches did not run."""
        terms = self.loss_terms(outputs, y)
        if not terms:
            return outputs.sum() * 0.0
        return sum(w * v for _, v, w in terms)  # type: ignore[return-value]

    def export_inference(self, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """The model's state dict without the SD branches (loads into the plain backbone)."""
        model = model or self._model or self.module
        if model is None:
            raise TransformError("SelfDistillation.export_inference: no model attached")
        return {k: v for k, v in model.state_dict().items() if not k.startswith("sd_branches.")}
