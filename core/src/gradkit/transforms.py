"""Gradient transforms: objects that change how gradients are computed for a module.

A transform is not a hook. It is an object with a config and ``attach(module) -> TransformHandle``;
``handle.remove()`` restores the module exactly (parameters, buffers, forward behaviour and plain
autograd gradients). Transforms constructed with a module are also context managers::

    with LinBP(model, start="layer3"):
        grad = torch.autograd.grad(loss_fn(model(x)), x)[0]

Plugins register factories through ``gradkit_register_transforms``; users build them by name with
:func:`create` and list them with :func:`available`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from .errors import ConfigError, TransformError, UnknownNameError
from .manager import transform_entries

__all__ = ["GradientTransform", "TransformHandle", "create", "available", "describe", "resolve"]


class TransformHandle:
    """Undo handle returned by :meth:`GradientTransform.attach` (like torch's ``RemovableHandle``).

    ``remove()`` runs the undo callbacks in reverse order, exactly once. The handle is also a
    context manager that removes on exit.
    """

    def __init__(self, transform: GradientTransform | None = None, module: torch.nn.Module | None = None) -> None:
        self.transform = transform
        self.module = module
        self._undo: list[Callable[[], None]] = []
        self._removed = False

    def add(self, undo: Callable[[], None]) -> None:
        """Add an undo callback (e.g. a torch hook handle's ``remove``)."""
        if self._removed:
            raise TransformError("cannot add to a handle that was already removed")
        self._undo.append(undo)

    def add_torch_handle(self, handle: Any) -> None:
        """Add a torch ``RemovableHandle`` (from ``register_*_hook``)."""
        self.add(handle.remove)

    @property
    def removed(self) -> bool:
        return self._removed

    def remove(self) -> None:
        """Undo everything the attach did. Idempotent."""
        if self._removed:
            return
        self._removed = True
        errors: list[BaseException] = []
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except BaseException as exc:  # keep undoing the rest
                errors.append(exc)
        if self.transform is not None:
            self.transform._handles = [h for h in self.transform._handles if h is not self]
        if errors:
            raise TransformError(f"{len(errors)} undo step(s) failed while removing a transform") from errors[0]

    def __enter__(self) -> TransformHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        name = self.transform.name if self.transform is not None else "?"
        return f"TransformHandle({name}, removed={self._removed})"


class GradientTransform:
    """Base class of gradient transforms.

    Subclasses set the class attribute ``name``, keep their hyperparameters in ``self.config``
    (a frozen :class:`gradkit.config.Config` dataclass) and implement :meth:`_attach`, which modifies
    ``module`` and records every undo step on the handle it is given. Construct with ``module=`` to
    use the transform as a context manager.
    """

    name: str = ""
    config: Any = None

    def __init__(self, module: torch.nn.Module | None = None, config: Any = None) -> None:
        self.module = module
        if config is not None:
            self.config = config
        self._handles: list[TransformHandle] = []
        self._ctx_handle: TransformHandle | None = None

    # -- to implement -------------------------------------------------------------------------
    def _attach(self, module: torch.nn.Module, handle: TransformHandle) -> None:
        """Modify ``module``; register undo steps on ``handle``. Default: nothing (loop-only transforms)."""

    # -- public -------------------------------------------------------------------------------
    def attach(self, module: torch.nn.Module) -> TransformHandle:
        """Apply the transform to ``module``; returns a handle whose ``remove()`` restores it exactly."""
        if not isinstance(module, torch.nn.Module):
            raise ConfigError(
                f"{type(self).__name__}.attach: `module` must be a torch.nn.Module, got {type(module).__name__}"
            )
        for h in self._handles:
            if h.module is module and not h.removed:
                raise TransformError(
                    f"{type(self).__name__} is already attached to this module; call handle.remove() first"
                )
        handle = TransformHandle(self, module)
        try:
            self._attach(module, handle)
        except BaseException:
            handle.remove()
            raise
        self._handles.append(handle)
        return handle

    def remove(self) -> None:
        """Remove this transform from every module it is attached to."""
        for h in list(self._handles):
            h.remove()

    @property
    def attached(self) -> bool:
        return any(not h.removed for h in self._handles)

    def __enter__(self) -> GradientTransform:
        if self.module is None:
            raise TransformError(
                f"{type(self).__name__} was built without a module; use `with t.attach(model):` or pass the model first"
            )
        self._ctx_handle = self.attach(self.module)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ctx_handle is not None:
            self._ctx_handle.remove()
            self._ctx_handle = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def available() -> dict[str, str]:
    """Registered transform names and their one-line summaries."""
    return {name: e.summary for name, e in sorted(transform_entries().items())}


def describe(name: str) -> dict[str, Any]:
    """Name, plugin, summary and config fields (with defaults) of a registered transform."""
    entry = _entry(name)
    fields: dict[str, Any] = {}
    if entry.config is not None and dataclasses.is_dataclass(entry.config):
        for f in dataclasses.fields(entry.config):
            default = f.default if f.default is not dataclasses.MISSING else None
            fields[f.name] = default
    return {"name": name, "plugin": entry.plugin, "summary": entry.summary, "config": fields}


def _entry(name: str) -> Any:
    entries = transform_entries()
    if name not in entries:
        known = ", ".join(sorted(entries)) or "(none installed)"
        raise UnknownNameError(f"unknown transform {name!r}; available transforms: {known}")
    return entries[name]


def create(name: str, **config: Any) -> GradientTransform:
    """Build the transform registered as ``name`` with keyword hyperparameters ``config``."""
    entry = _entry(name)
    if entry.config is not None and dataclasses.is_dataclass(entry.config):
        valid = {f.name for f in dataclasses.fields(entry.config)}
        unknown = sorted(set(config) - valid)
        if unknown:
            raise ConfigError(
                f"transform {name!r}: unknown config key(s) {unknown}; valid keys are {sorted(valid)}"
            )
    return entry.factory(**config)  # type: ignore[no-any-return]


def resolve(transforms: Any, *, argument: str = "transforms") -> dict[str, GradientTransform]:
    """Turn a loop's ``transforms=`` argument (names, ``(name, config)`` pairs or instances) into a dict."""
    from .errors import ArgumentTypeError

    if transforms is None:
        return {}
    if isinstance(transforms, (str, GradientTransform)):
        transforms = [transforms]
    if isinstance(transforms, dict):
        transforms = list(transforms.items())
    out: dict[str, GradientTransform] = {}
    for item in transforms:
        if isinstance(item, str):
            t = create(item)
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], dict):
            t = create(item[0], **item[1])
        elif isinstance(item, GradientTransform):
            t = item
        else:
            raise ArgumentTypeError(
                f"`{argument}` items must be a transform name, a (name, config_dict) pair or a GradientTransform; "
                f"got {type(item).__name__}"
            )
        key = t.name or type(t).__name__
        if key in out:
            raise ConfigError(f"`{argument}`: transform {key!r} given twice")
        out[key] = t
    return out
