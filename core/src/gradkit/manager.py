"""The plugin manager: built-in defaults, entry-point plugins, user-registered hooks.

Nothing is loaded at import time. :func:`get_plugin_manager` builds one manager on first use and
caches it: built-in defaults (``trylast``) first, then every ``gradkit`` entry point, then
``check_pending()`` so a misspelled hook name fails at load, naming the plugin and the hook.

Environment variables (see ``docs/environment.md``):

- ``GRADKIT_PLUGINS``: comma-separated allowlist of entry-point names to load (default: all).
- ``GRADKIT_DISABLE_PLUGINS``: comma-separated entry-point names not to load.
- ``GRADKIT_TRACE_HOOKS``: when ``1``, every hook call is traced to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import DuplicateNameError, GradkitError, PluginError, UnknownNameError

__all__ = [
    "hookimpl",
    "get_plugin_manager",
    "reset_plugin_manager",
    "register",
    "unregister",
    "PluginInfo",
    "plugin_infos",
    "TransformEntry",
    "DemoEntry",
    "transform_entries",
    "demo_entries",
]

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)
ENTRY_POINT_GROUP = hookspecs.PROJECT
BUILTIN_PLUGINS = ("gradkit.defaults", "gradkit.demos")

_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_registry_cache: dict[str, Any] = {}


class PluginLoadWarning(UserWarning):
    """A plugin could not be imported and was skipped."""


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin: its name, distribution, version and the hooks it implements."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    builtin: bool


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _check(pm: pluggy.PluginManager, plugin: object | None = None) -> None:
    """``check_pending`` with an error naming the plugin and the unknown hook."""
    for name in dir(pm.hook):
        if not name.startswith("gradkit_"):
            continue
        caller = getattr(pm.hook, name)
        if caller.spec is not None:
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            if plugin is not None and impl.plugin is not plugin:
                continue
            known = sorted(n for n in dir(hookspecs) if n.startswith("gradkit_"))
            raise PluginError(
                f"plugin {impl.plugin_name!r} implements unknown hook {name!r}; "
                f"known hooks are: {', '.join(known)}"
            )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:  # signature mismatch etc.
        raise PluginError(f"plugin {exc.plugin!r} is invalid: {exc}") from exc


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allow = _env_list("GRADKIT_PLUGINS")
    deny = _env_list("GRADKIT_DISABLE_PLUGINS") or set()
    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen or (allow is not None and ep.name not in allow) or ep.name in deny:
            continue
        seen.add(ep.name)
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            warnings.warn(
                f"gradkit: skipping plugin {ep.name!r} from distribution {dist_name!r}: "
                f"importing {ep.value!r} failed with {type(exc).__name__}: {exc}",
                PluginLoadWarning,
                stacklevel=3,
            )
            continue
        if pm.is_registered(plugin) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            pm.register(plugin, name=ep.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {ep.name!r} from distribution {dist_name!r} is invalid: {exc}") from exc
        pm._gradkit_dists[ep.name] = dist  # type: ignore[attr-defined]


def _trace_writer(message: str) -> None:
    sys.stderr.write(message)


def _build() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm._gradkit_dists = {}  # type: ignore[attr-defined]
    for modname in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(modname), name=modname)
    _load_entry_points(pm)
    _check(pm)
    if os.environ.get("GRADKIT_TRACE_HOOKS", "") not in ("", "0"):
        pm.trace.root.setwriter(_trace_writer)
        pm.enable_tracing()
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first call and cached."""
    global _pm
    with _lock:
        if _pm is None:
            _pm = _build()
        return _pm


def reset_plugin_manager() -> None:
    """Drop the cached manager (the next :func:`get_plugin_manager` rebuilds it). For tests."""
    global _pm
    with _lock:
        _pm = None
        _registry_cache.clear()


def register(plugin: object, name: str | None = None) -> str:
    """Register a user plugin (a module, class or object with ``@gradkit.hookimpl`` methods).

    The plugin is validated at once: an unknown hook name raises :class:`PluginError`.
    Returns the name it was registered under.
    """
    pm = get_plugin_manager()
    with _lock:
        if name is not None and pm.get_plugin(name) is not None:
            raise DuplicateNameError(f"a plugin named {name!r} is already registered; pick another name")
        try:
            registered = pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name or plugin!r} is invalid: {exc}") from exc
        if registered is None:
            raise PluginError(f"plugin {plugin!r} is already registered")
        try:
            _check(pm, plugin)
        except PluginError:
            pm.unregister(plugin)
            raise
        _registry_cache.clear()
        return registered


def unregister(plugin: object | str) -> None:
    """Unregister a plugin by object or by name."""
    pm = get_plugin_manager()
    with _lock:
        obj = pm.get_plugin(plugin) if isinstance(plugin, str) else plugin
        if obj is None or not pm.is_registered(obj):
            raise UnknownNameError(f"no plugin {plugin!r} is registered; registered: {sorted(n for n, _ in pm.list_name_plugin())}")
        pm.unregister(obj)
        _registry_cache.clear()


def plugin_infos(pm: pluggy.PluginManager | None = None) -> list[PluginInfo]:
    """Describe every registered plugin (built-ins, entry points, user plugins)."""
    pm = pm or get_plugin_manager()
    dists = getattr(pm, "_gradkit_dists", {})
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        dist = dists.get(name)
        out.append(
            PluginInfo(
                name=name,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
                hooks=hooks,
                builtin=name in BUILTIN_PLUGINS,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# Registries filled by the registration hooks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformEntry:
    name: str
    factory: Callable[..., Any]
    config: type | None
    summary: str
    plugin: str


@dataclass(frozen=True)
class DemoEntry:
    name: str
    fn: Callable[..., Any]
    summary: str
    plugin: str


def _collect(hook_name: str, make: Callable[..., Any]) -> dict[str, Any]:
    pm = get_plugin_manager()
    with _lock:
        if hook_name in _registry_cache:
            return _registry_cache[hook_name]  # type: ignore[no-any-return]
        entries: dict[str, Any] = {}
        caller = getattr(pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # registration order, defaults first

            def _register(name: str, target: Callable[..., Any], *, _plugin: str = impl.plugin_name, **kw: Any) -> None:
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin {_plugin!r} registered a non-string or empty name {name!r}")
                if not callable(target):
                    raise PluginError(f"plugin {_plugin!r} registered {name!r} with a non-callable {target!r}")
                if name in entries:
                    raise DuplicateNameError(
                        f"{name!r} is registered twice: by plugin {entries[name].plugin!r} and by plugin {_plugin!r}"
                    )
                entries[name] = make(name, target, _plugin, **kw)

            before = dict(entries)
            try:
                impl.function(register=_register)
            except GradkitError:
                raise
            except Exception as exc:  # a broken plugin must not take the others down
                entries.clear()
                entries.update(before)
                warnings.warn(
                    f"gradkit: plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}; "
                    "its registrations are skipped",
                    PluginLoadWarning,
                    stacklevel=3,
                )
        _registry_cache[hook_name] = entries
        return entries


def transform_entries() -> dict[str, TransformEntry]:
    """All registered transforms by name."""

    def make(name: str, factory: Callable[..., Any], plugin: str, *, config: type | None = None, summary: str = "") -> TransformEntry:
        return TransformEntry(name, factory, config, summary, plugin)

    return _collect("gradkit_register_transforms", make)


def demo_entries() -> dict[str, DemoEntry]:
    """All registered demos by name."""

    def make(name: str, fn: Callable[..., Any], plugin: str, *, summary: str = "") -> DemoEntry:
        return DemoEntry(name, fn, summary, plugin)

    return _collect("gradkit_register_demos", make)
