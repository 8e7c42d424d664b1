from __future__ import annotations

from typing import Any

import torch

from ..errors import ArgumentTypeError, ConfigError


def need_module(fn: str, name: str, value: Any) -> None:
    if not isinstance(value, torch.nn.Module):
        raise ArgumentTypeError(f"{fn}: `{name}` must be a torch.nn.Module, got {type(value).__name__}")


def need_tensor(fn: str, name: str, value: Any) -> None:
    if not isinstance(value, torch.Tensor):
        raise ArgumentTypeError(f"{fn}: `{name}` must be a torch.Tensor, got {type(value).__name__}")


def need_int(fn: str, name: str, value: Any, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{fn}: `{name}` must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ConfigError(f"{fn}: `{name}` must be >= {minimum}, got {value}")


def need_number(fn: str, name: str, value: Any, *, minimum: float | None = None, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{fn}: `{name}` must be a number, got {type(value).__name__}")
    if minimum is not None and (value < minimum or (strict and value == minimum) or value != value):
        op = ">" if strict else ">="
        raise ConfigError(f"{fn}: `{name}` must be {op} {minimum}, got {value}")
