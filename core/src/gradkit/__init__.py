"""gradkit: one home for research methods that change how gradients are computed.

The core is thin: pluggy hook specifications (:mod:`gradkit.hookspecs`), the plugin manager,
hook-driven loops on ``accelerate`` (:func:`train`, :func:`sample`, :func:`attack`), gradient
transforms (:mod:`gradkit.transforms`), shared objectives, kernel dispatch, data loaders,
measuring tools and test contracts. Methods come as plugins (``gradkit-<name>`` distributions).

Nothing heavy is imported until used: ``import gradkit`` loads only pluggy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .manager import get_plugin_manager, hookimpl, register, reset_plugin_manager, unregister

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "hookimpl",
    "get_plugin_manager",
    "reset_plugin_manager",
    "register",
    "unregister",
    "train",
    "sample",
    "attack",
    "transforms",
    "objectives",
    "kernels",
    "data",
    "metrics",
    "errors",
    "config",
    "context",
    "testing",
]

_LAZY = {
    "train": ("gradkit.loops.train", "train"),
    "sample": ("gradkit.loops.sample", "sample"),
    "attack": ("gradkit.loops.attack", "attack"),
}
_SUBMODULES = {"transforms", "objectives", "kernels", "data", "metrics", "errors", "config", "context", "testing",
               "loops", "demos", "hookspecs"}

if TYPE_CHECKING:  # pragma: no cover
    from . import config, context, data, errors, kernels, metrics, objectives, testing, transforms
    from .loops.attack import attack
    from .loops.sample import sample
    from .loops.train import train


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"gradkit.{name}")
    raise AttributeError(f"module 'gradkit' has no attribute {name!r}")
