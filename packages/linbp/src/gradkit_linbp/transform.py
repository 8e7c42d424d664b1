"""The ``linbp`` gradient transform: linear backpropagation from a chosen position onward.

Guo, Li, Chen, "Backpropagating Linearly Improves Transferability of Adversarial Examples",
NeurIPS 2020, https://arxiv.org/abs/2012.03528.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from gradkit.errors import ConfigError, TransformError
from gradkit.transforms import GradientTransform, TransformHandle
from torch import nn
from torch.overrides import TorchFunctionMode

from .adapters import BlockAdapter, find_adapter
from .config import LinBPConfig
from .functional import branch_linbp, linear_relu

__all__ = ["LinBP", "Unit", "find_units", "select_units"]

_STACK = "_gradkit_linbp_forward_stack"
_MISSING = object()


@dataclass(frozen=True)
class Unit:
    """One position LinBP can linearise: an ``nn.ReLU`` module or a residual block."""

    name: str
    module: nn.Module
    kind: str  # "relu" | "block"
    order: int  # position in module order
    adapter: BlockAdapter | None = None


def _walk(model: nn.Module) -> tuple[list[Unit], dict[str, int], dict[str, str], dict[int, list[str]]]:
    """Units in module order, order index of every walked name, names hidden inside blocks, aliases."""
    units: list[Unit] = []
    order: dict[str, int] = {}
    inside: dict[str, str] = {}
    names_of: dict[int, list[str]] = {}

    def visit(mod: nn.Module, prefix: str) -> None:
        for name, child in mod._modules.items():  # not named_children(): it hides repeated modules
            if child is None:
                continue
            q = f"{prefix}.{name}" if prefix else name
            order[q] = len(order)
            first = id(child) not in names_of
            names_of.setdefault(id(child), []).append(q)
            if not first:
                continue
            adapter = find_adapter(child)
            if adapter is not None:
                units.append(Unit(q, child, "block", order[q], adapter))
                for sub, _ in child.named_modules(prefix=q):
                    if sub != q:
                        inside[sub] = q
                continue
            if isinstance(child, nn.ReLU):
                units.append(Unit(q, child, "relu", order[q]))
                continue
            visit(child, q)

    visit(model, "")
    return units, order, inside, names_of


def find_units(model: nn.Module) -> list[Unit]:
    """LinBP's units of ``model`` in module order (what an integer ``start`` indexes)."""
    return _walk(model)[0]


def select_units(model: nn.Module, start: int | str) -> list[Unit]:
    """The units linearised for ``start`` (raises :class:`ConfigError` for a position that does not exist)."""
    units, order, inside, names_of = _walk(model)
    if not units:
        raise ConfigError(
            f"LinBP: `module` ({type(model).__name__}) has no nn.ReLU modules and no supported residual blocks; "
            "LinBP linearises ReLUs: build the model with nn.ReLU modules (not F.relu) or register a BlockAdapter"
        )
    listing = ", ".join(f"{i}:{u.name}" for i, u in enumerate(units))
    if isinstance(start, int):
        n = len(units)
        if not -n <= start < n:
            raise ConfigError(
                f"LinBP: `start`={start} does not exist; the model has {n} LinBP units (valid: {-n}..{n - 1}): {listing}"
            )
        chosen = units[start:]
    else:
        if start in inside:
            raise ConfigError(
                f"LinBP: `start`={start!r} is inside residual block {inside[start]!r}; positions count whole blocks: "
                f"use start={inside[start]!r}"
            )
        if start not in order:
            raise ConfigError(f"LinBP: `start`={start!r} is not a module of the model; units are: {listing}")
        chosen = [u for u in units if u.order >= order[start]]
        if not chosen:
            raise ConfigError(f"LinBP: no ReLU or residual block at or after `start`={start!r}; units are: {listing}")
    for u in chosen:
        aliases = names_of[id(u.module)]
        if len(aliases) > 1:
            raise TransformError(
                f"LinBP: module {u.name!r} is registered under several names {aliases} (one activation used at "
                "several positions); give each position its own nn.ReLU"
            )
    return chosen


# -- reversible forward overrides (a per-module stack, so nested attaches unwind in any order) ---------


def _push_forward(module: nn.Module, token: object, fn: Callable[..., Any]) -> None:
    stack = module.__dict__.get(_STACK)
    if stack is None:
        stack = [(None, module.__dict__.get("forward", _MISSING))]
        module.__dict__[_STACK] = stack
    stack.append((token, fn))
    module.__dict__["forward"] = fn


def _pop_forward(module: nn.Module, token: object) -> None:
    stack = module.__dict__.get(_STACK)
    if stack is None:
        return
    stack[:] = [e for e in stack if e[0] is not token or e is stack[0]]
    if len(stack) > 1:
        module.__dict__["forward"] = stack[-1][1]
        return
    original = stack[0][1]
    del module.__dict__[_STACK]
    if original is _MISSING:
        module.__dict__.pop("forward", None)
    else:
        module.__dict__["forward"] = original


def _forward_below(module: nn.Module, token: object) -> Callable[..., Any]:
    """The forward that the override registered with ``token`` replaced (for wrapping overrides)."""
    stack = module.__dict__.get(_STACK, [])
    for i, (tok, _) in enumerate(stack):
        if tok is token and i > 0:
            prev = stack[i - 1][1]
            break
    else:
        prev = _MISSING
    return type(module).forward.__get__(module) if prev is _MISSING else prev


def _original_forward(module: nn.Module) -> Callable[..., Any]:
    stack = module.__dict__.get(_STACK)
    base = stack[0][1] if stack else module.__dict__.get("forward", _MISSING)
    return type(module).forward.__get__(module) if base is _MISSING else base


# -- the transform -------------------------------------------------------------------------------------


class LinBP(GradientTransform):
    """Linear backpropagation (LinBP) as a reversible gradient transform.

    Guo, Li, Chen, "Backpropagating Linearly Improves Transferability of Adversarial Examples",
    NeurIPS 2020 (https://arxiv.org/abs/2012.03528).

    The forward pass is unchanged (bitwise). In backward, every ``nn.ReLU`` from ``start`` onward
    passes gradients through as if it were the identity; in residual blocks (torchvision-style
    ``BasicBlock``/``Bottleneck`` or a registered :class:`~gradkit_linbp.adapters.BlockAdapter`) the
    branch ReLUs are linearised, the post-add ReLU is kept, and with ``renorm=True`` the branch's
    input gradient is rescaled per example to the norm of the true branch gradient (times ``lam``).
    Everything before ``start`` is plain backpropagation. Parameters inside linearised residual
    branches receive no gradient (LinBP is for input gradients of a frozen model, normally in eval
    mode; train mode works since the branch is never recomputed).

    Args:
        model: optional module; when given, ``with LinBP(model, ...):`` attaches for the block.
        start: first linearised position: unit index (see :func:`find_units`) or module name.
        renorm: per-example re-normalisation of linearised residual branches.
        lam: branch gradient multiplier (1.0 = LinBP; < 1 = LinBP+SGM).
        verify: run the first-forward checks (forward invariance of adapted blocks, no shared or
            functional ReLUs in the linearised region).

    Examples::

        >>> import torch, gradkit_linbp
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> x = torch.randn(2, 4, requires_grad=True)
        >>> with gradkit_linbp.LinBP(net, start=0):
        ...     g = torch.autograd.grad(net(x).sum(), x)[0]   # LinBP gradient
        >>> g.shape
        torch.Size([2, 4])
    """

    name = "linbp"

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        start: int | str = 0,
        renorm: bool = True,
        lam: float = 1.0,
        verify: bool = True,
        config: LinBPConfig | None = None,
    ) -> None:
        if config is None:
            config = LinBPConfig(start=start, renorm=renorm, lam=lam, verify=verify)
        elif not isinstance(config, LinBPConfig):
            raise ConfigError(f"LinBP: `config` must be a LinBPConfig, got {type(config).__name__}")
        super().__init__(model, config)

    # -- GradientTransform ----------------------------------------------------------------------
    def _attach(self, module: nn.Module, handle: TransformHandle) -> None:
        cfg: LinBPConfig = self.config
        chosen = select_units(module, cfg.start)
        token = object()
        for u in chosen:
            if u.kind == "relu":
                fn: Callable[..., Any] = linear_relu
            else:
                assert u.adapter is not None
                fn = functools.partial(_block_forward, u.module, u.adapter, cfg.lam, cfg.renorm)
            _push_forward(u.module, token, fn)
            handle.add(functools.partial(_pop_forward, u.module, token))
        handle.units = chosen  # type: ignore[attr-defined]
        if cfg.verify:
            probe = _Probe(module, chosen)
            probe_token = object()

            def probing_forward(*args: Any, **kwargs: Any) -> Any:
                below = _forward_below(module, probe_token)
                if probe.done:
                    return below(*args, **kwargs)
                probe.start()
                try:
                    out = below(*args, **kwargs)
                finally:
                    probe.cleanup()
                probe.report()
                return out

            _push_forward(module, probe_token, probing_forward)
            handle.add(functools.partial(_pop_forward, module, probe_token))

    def units(self, model: nn.Module) -> list[str]:
        """Names of the units this configuration would linearise in ``model``."""
        return [u.name for u in select_units(model, self.config.start)]


def _block_forward(block: nn.Module, adapter: BlockAdapter, lam: float, renorm: bool, x: torch.Tensor) -> torch.Tensor:
    skip = adapter.skip(block, x)
    branch = branch_linbp(x, functools.partial(adapter.branch, block), lam=lam, renorm=renorm, chain=adapter.chain)
    return adapter.post(block, skip + branch)


_RELU_FUNCS = {torch.relu, torch.relu_, nn.functional.relu, nn.functional.relu_, torch.Tensor.relu, torch.Tensor.relu_}


class _Probe:
    """First-forward checks: adapted blocks reproduce the block's own forward; no shared or functional ReLUs."""

    def __init__(self, model: nn.Module, chosen: list[Unit]) -> None:
        self.model = model
        self.chosen = chosen
        self.done = False
        self.active = False
        self._hooks: list[Any] = []
        self._mode: Any = None

    def start(self) -> None:
        self.active = True
        self.stack: list[nn.Module] = []
        self.calls: dict[int, int] = {}
        self.functional: list[str] = []
        self.mismatch: list[str] = []
        self.started = False
        relu_ids = {id(u.module) for u in self.chosen if u.kind == "relu"}
        block_ids = {id(u.module) for u in self.chosen if u.kind == "block"}
        first_id = id(self.chosen[0].module)
        names = {id(m): n for n, m in self.model.named_modules()}
        self.names = names

        def enter(m: nn.Module, a: Any) -> None:
            if id(m) == first_id:
                self.started = True
            if id(m) in relu_ids:
                self.calls[id(m)] = self.calls.get(id(m), 0) + 1
            self.stack.append(m)
            if id(m) in block_ids and not m.training and a and isinstance(a[0], torch.Tensor):
                self._check_block(m, a[0])

        def leave(m: nn.Module, a: Any, out: Any) -> None:
            if self.stack and self.stack[-1] is m:
                self.stack.pop()

        for m in self.model.modules():
            if m is self.model:
                continue
            self._hooks.append(m.register_forward_pre_hook(enter))
            self._hooks.append(m.register_forward_hook(leave))
        probe = self

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                if func in _RELU_FUNCS and probe.started:
                    inner = probe.stack[-1] if probe.stack else probe.model
                    in_unit = isinstance(inner, nn.ReLU) or any(id(m) in block_ids for m in probe.stack)
                    if not in_unit:
                        probe.functional.append(probe.names.get(id(inner), "") or type(inner).__name__)
                return func(*args, **(kwargs or {}))

        self._mode = _Mode()
        self._mode.__enter__()

    def _check_block(self, block: nn.Module, x: torch.Tensor) -> None:
        with torch.no_grad():
            mode, self._mode = self._mode, None
            try:
                mode.__exit__(None, None, None)
                want = _original_forward(block)(x)
                got = block.forward(x)
            finally:
                mode.__enter__()
                self._mode = mode
        if not (isinstance(want, torch.Tensor) and torch.equal(want, got)):
            self.mismatch.append(self.names.get(id(block), type(block).__name__))

    def cleanup(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)
        self.active = False

    def report(self) -> None:
        shared = [self.names.get(i, "?") for i, c in self.calls.items() if c > 1]
        if shared:
            raise TransformError(
                f"LinBP: ReLU module(s) {shared} are called more than once per forward (a shared activation); "
                "give each call its own nn.ReLU, or wrap the residual block in a supported BlockAdapter"
            )
        if self.functional:
            where = sorted(set(self.functional))
            raise TransformError(
                f"LinBP: functional relu calls (F.relu / torch.relu / Tensor.relu) in the linearised region, inside {where}; "
                "LinBP cannot linearise them: use nn.ReLU modules, register a BlockAdapter for the block, or start later"
            )
        if self.mismatch:
            raise TransformError(
                f"LinBP: the residual-block adapter does not reproduce the forward of {self.mismatch}; "
                "register a BlockAdapter that matches this block class"
            )
        self.done = True
