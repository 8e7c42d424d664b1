"""StreamBP inside ``gradkit.train``: what the plugin's hooks do.

- ``gradkit_loop_start``: build the decoder adapter; an unsupported model or objective warns and
  falls back to plain autograd (or raises with ``fallback=False``).
- ``gradkit_forward_backward``: run :func:`stream_backward` on the micro-batch with the step's
  global normaliser and loss scale; gradients go to ``.grad`` without firing DDP hooks; after the
  step's last micro-batch, average gradients over processes once, in one flat buffer (one
  all-reduce per step, never per chunk).
- ``gradkit_step_report``: chunk counts and buffer sizes as ``streambp/*`` metrics.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from gradkit.context import StashKey
from gradkit.errors import ConfigError
from gradkit.loops.train import reduce_gradients

from gradkit_streambp.engine import StreamStats

__all__ = ["STATE", "LoopStreamState"]


@dataclass
class LoopStreamState:
    active: bool = True
    reason: str = ""
    stats: StreamStats = field(default_factory=StreamStats)
    reductions: int = 0


STATE: StashKey[LoopStreamState] = StashKey("streambp")


def loop_start(loop: Any, transform: Any) -> None:
    from gradkit_streambp.adapters import get_adapter
    from gradkit_streambp.objectives import as_stream_objective

    st = LoopStreamState()
    try:
        get_adapter(loop.model)
        as_stream_objective(loop.objective)
        if loop.config.mixed_precision != "no":
            raise ConfigError(f"StreamBP: mixed_precision={loop.config.mixed_precision!r} is not supported; "
                              "cast the model to bf16/fp16 instead (chunk gradients accumulate in float32)")
    except ConfigError as exc:
        if not transform.config.fallback:
            raise
        st.active = False
        st.reason = str(exc)
        warnings.warn(f"streambp: falling back to plain autograd: {exc}", UserWarning, stacklevel=2)
    loop.stash[STATE] = st


def forward_backward(step: Any, transform: Any) -> Any:
    loop = step.loop
    st = loop.stash.get(STATE)
    if st is None or not st.active:
        return None
    acc = step.accelerator
    stats = StreamStats()
    loss = transform.forward_backward(step.model, step.batch, step.objective, normalizer=step.normalizer,
                                      grad_scale=step.loss_scale, stats=stats)
    st.stats = stats
    if step.is_last_micro_batch and acc.num_processes > 1:
        params = [p for g in loop.optimizer.param_groups for p in g["params"]]
        reduce_gradients(acc, params)
        st.reductions += 1
    return loss


def step_report(step: Any, result: Any) -> None:
    st = step.loop.stash.get(STATE)
    if st is None:
        return
    result.metrics["streambp/active"] = float(st.active)
    if st.active:
        s = st.stats
        result.metrics["streambp/layer_chunks"] = float(s.layer_chunks)
        result.metrics["streambp/head_chunks"] = float(s.head_chunks)
        result.metrics["streambp/head_passes"] = float(s.head_passes)
        result.metrics["streambp/checkpoint_mb"] = s.checkpoint_bytes / 2**20
        result.metrics["streambp/logits_block_mb"] = s.logits_block_bytes / 2**20
        result.metrics["streambp/reductions"] = float(st.reductions)


def loop_finish(loop: Any, summary: dict[str, Any]) -> None:
    st = loop.stash.get(STATE)
    if st is None:
        return
    summary["streambp"] = {"active": st.active, "fallback_reason": st.reason, "reductions": st.reductions}
    del loop.stash[STATE]
