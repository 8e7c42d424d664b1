"""Frozen dataclass configs that round-trip to dict and JSON.

Plugins declare their hyperparameters as::

    @dataclass(frozen=True)
    class LinBPConfig(Config):
        start: int | str = 0
        renorm: bool = True

        def __post_init__(self) -> None:
            ...  # validate, raise ConfigError naming the field
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = ["Config", "check_positive", "check_in", "check_range"]

C = TypeVar("C", bound="Config")


class Config:
    """Mixin for ``@dataclass(frozen=True)`` configs: ``to_dict``/``from_dict``/``to_json``/``from_json``."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}.from_dict: expected a dict, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown field(s) {unknown}; valid fields are {cls.field_names()}"
            )
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def check_positive(owner: str, name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is > 0 (or >= 0 with ``allow_zero``)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{owner}: `{name}` must be {bound}, got {value!r}")


def check_in(owner: str, name: str, value: Any, choices: tuple[Any, ...] | list[Any]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{owner}: `{name}` must be one of {list(choices)}, got {value!r}")


def check_range(owner: str, name: str, value: float, lo: float, hi: float, *, lo_open: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``lo <= value <= hi`` (``lo < value`` with ``lo_open``)."""
    ok = (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        left = "(" if lo_open else "["
        raise ConfigError(f"{owner}: `{name}` must be in {left}{lo}, {hi}], got {value!r}")
