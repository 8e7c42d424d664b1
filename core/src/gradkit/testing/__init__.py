"""Testing kit for gradkit plugins: contract tests to subclass, helpers, and a pytest plugin.

The pytest plugin (``gradkit.testing.pytest_plugin``, loaded automatically through the ``pytest11``
entry point) adds the markers ``kernel``, ``gpu`` and ``slow`` with auto-skip and the
``gradkit_pm`` fixture (a freshly built plugin manager).
"""

from .contracts import PluginContract, assert_same_outputs_and_grads, outputs_and_grads

__all__ = ["PluginContract", "outputs_and_grads", "assert_same_outputs_and_grads"]
