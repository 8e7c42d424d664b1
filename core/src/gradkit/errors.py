"""Exception types raised by gradkit and its plugins.

Every error a user can trigger with bad input derives from :class:`GradkitError`, and also from the
builtin type a Python user would expect (``ValueError``, ``KeyError``, ``TypeError``), so both
``except gradkit.errors.ConfigError`` and ``except ValueError`` work.
"""

from __future__ import annotations

__all__ = [
    "GradkitError",
    "ConfigError",
    "ArgumentTypeError",
    "UnknownNameError",
    "DuplicateNameError",
    "PluginError",
    "TransformError",
]


class GradkitError(Exception):
    """Base class of every gradkit error."""


class ConfigError(GradkitError, ValueError):
    """A parameter has a bad value. The message names the parameter and the fix."""


class ArgumentTypeError(GradkitError, TypeError):
    """A parameter has the wrong type. The message names the parameter and what it accepts."""


class UnknownNameError(GradkitError, KeyError):
    """A transform, demo or plugin name is not registered. The message lists what is available."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(GradkitError, ValueError):
    """Two plugins registered the same transform or demo name."""


class PluginError(GradkitError, RuntimeError):
    """A plugin is malformed (e.g. implements a hook name that does not exist)."""


class TransformError(GradkitError, RuntimeError):
    """A gradient transform was misused (attached twice, removed from the wrong module, ...)."""
