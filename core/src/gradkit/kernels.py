"""Kernel dispatch: Triton on CUDA, the plain-PyTorch reference on CPU.

``use_triton(*tensors)`` decides per call, never at import time, and never imports triton itself:

- ``GRADKIT_KERNELS=reference``: always the reference.
- ``GRADKIT_KERNELS=triton``: always the kernel (CPU tensors need ``TRITON_INTERPRET=1``).
- ``GRADKIT_KERNELS=auto`` (default): the kernel when every tensor is on CUDA, or when
  ``TRITON_INTERPRET=1`` is set (then Triton's interpreter runs the kernel on CPU, which is how
  CI checks the kernels' maths); the reference otherwise.
"""

from __future__ import annotations

import os
from types import ModuleType

import torch

from .errors import ConfigError

__all__ = ["mode", "use_triton", "require_triton", "interpreting", "MODES"]

MODES = ("auto", "reference", "triton")


def mode() -> str:
    """The dispatch mode from ``GRADKIT_KERNELS`` (default ``auto``)."""
    m = os.environ.get("GRADKIT_KERNELS", "auto").strip().lower() or "auto"
    if m not in MODES:
        raise ConfigError(f"environment variable GRADKIT_KERNELS={m!r} is invalid; use one of {list(MODES)}")
    return m


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1`` (Triton kernels run on CPU through the interpreter)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def require_triton() -> ModuleType:
    """Import and return ``triton``, or raise an ImportError naming the extra to install."""
    try:
        import triton
    except ImportError as exc:
        raise ImportError(
            "this gradkit kernel needs Triton: `pip install 'gradkit[triton]'` (triton>=3.7.1 and numpy), "
            "or set GRADKIT_KERNELS=reference to use the plain-PyTorch path"
        ) from exc
    return triton


def use_triton(*tensors: torch.Tensor) -> bool:
    """Whether a kernel should run for these tensors (see module docstring)."""
    m = mode()
    if m == "reference":
        return False
    on_cuda = bool(tensors) and all(t.is_cuda for t in tensors if isinstance(t, torch.Tensor))
    if m == "triton":
        if not on_cuda and not interpreting():
            raise ConfigError(
                "GRADKIT_KERNELS=triton with CPU tensors needs TRITON_INTERPRET=1 (set before triton is imported), "
                "or use GRADKIT_KERNELS=auto"
            )
        require_triton()
        return True
    if on_cuda:
        require_triton()
        return True
    return interpreting()
