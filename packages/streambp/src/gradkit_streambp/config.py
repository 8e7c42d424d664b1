"""StreamBP configuration."""

from __future__ import annotations

from dataclasses import dataclass

from gradkit.config import Config
from gradkit.errors import ConfigError

__all__ = ["StreamBPConfig"]


def _chunk(name: str, value: object, allow_auto: bool) -> None:
    if allow_auto and value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        extra = " or 'auto'" if allow_auto else ""
        raise ConfigError(f"StreamBP: `{name}` must be a positive int (tokens per chunk){extra}, got {value!r}")


@dataclass(frozen=True)
class StreamBPConfig(Config):
    """Hyperparameters of StreamBP.

    Attributes:
        layer_chunk: query positions per chunk in the decoder layers' backward (and no-graph
            forward); ``"auto"`` = ``max(1024, ceil(T / 3))`` (the paper's timing setting).
        head_chunk: positions per chunk of LM head + objective: one ``B x head_chunk x vocab``
            logits block is live at a time.
        grad_accum_dtype: ``"float32"`` (accumulate half-precision parameters' chunk gradients in
            float32, cast once per layer) or ``"param"`` (the parameter's dtype).
        fallback: when used through ``gradkit.train`` with a model or objective StreamBP cannot
            stream, warn and use plain autograd (``True``) or raise (``False``).
    """

    layer_chunk: int | str = "auto"
    head_chunk: int = 512
    grad_accum_dtype: str = "float32"
    fallback: bool = True

    def __post_init__(self) -> None:
        _chunk("layer_chunk", self.layer_chunk, True)
        _chunk("head_chunk", self.head_chunk, False)
        if self.grad_accum_dtype not in ("float32", "param"):
            raise ConfigError(f"StreamBP: `grad_accum_dtype` must be 'float32' or 'param', got {self.grad_accum_dtype!r}")
        if not isinstance(self.fallback, bool):
            raise ConfigError(f"StreamBP: `fallback` must be a bool, got {self.fallback!r}")
