"""pytest plugin of gradkit: markers ``kernel``, ``gpu``, ``slow`` with auto-skip, fixture ``gradkit_pm``.

- ``kernel``: runs a Triton kernel; skipped unless CUDA is available or ``TRITON_INTERPRET=1``.
- ``gpu``: needs CUDA; skipped otherwise.
- ``slow``: long experiment; skipped unless ``--run-slow``, ``GRADKIT_RUN_SLOW=1`` or ``-m slow``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradkit")
    group.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernel: runs a Triton kernel (GPU, or CPU with TRITON_INTERPRET=1)")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU")
    config.addinivalue_line("markers", "slow: long experiment, not part of CI (--run-slow)")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    markexpr = config.getoption("-m") or ""
    run_slow = (config.getoption("--run-slow") or os.environ.get("GRADKIT_RUN_SLOW") == "1"
                or ("slow" in markexpr and "not slow" not in markexpr))
    interp = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    cuda: bool | None = None
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --run-slow or GRADKIT_RUN_SLOW=1"))
        if "gpu" in item.keywords or "kernel" in item.keywords:
            if cuda is None:
                cuda = _cuda()
            if "gpu" in item.keywords and not cuda:
                item.add_marker(pytest.mark.skip(reason="gpu: no CUDA device"))
            elif "kernel" in item.keywords and not (cuda or interp):
                item.add_marker(pytest.mark.skip(reason="kernel: needs CUDA or TRITON_INTERPRET=1"))


@pytest.fixture
def gradkit_pm() -> Iterator[Any]:
    """A freshly built gradkit plugin manager (dropped again after the test)."""
    from gradkit.manager import get_plugin_manager, reset_plugin_manager

    reset_plugin_manager()
    yield get_plugin_manager()
    reset_plugin_manager()
