"""gradkit hook implementations of gradkit-snn-sd (imports nothing heavy at module level)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradkit import hookimpl


@hookimpl
def gradkit_register_transforms(register: Callable[..., None]) -> None:
    from .config import RateBPConfig, SDConfig
    from .transform import RateBackpropM, RateBackpropS, SelfDistillation

    register("rate-bp-m", lambda **cfg: RateBackpropM(config=RateBPConfig(**cfg)), config=RateBPConfig,
             summary="rate-based backprop for SNNs: graph-free multi-step spike pass + one rate pass (memory constant in T)")
    register("rate-bp-s", lambda **cfg: RateBackpropS(config=RateBPConfig(**cfg)), config=RateBPConfig,
             summary="rate-based backprop for SNNs, spike pass as T single steps (per-step BN statistics)")
    register("snn-sd", lambda **cfg: SelfDistillation(config=SDConfig(**cfg)), config=SDConfig,
             summary="enhanced self-distillation for SNNs: rate-fed ANN exit branches, reliable-exit teacher, masked KD")


@hookimpl
def gradkit_register_demos(register: Callable[..., None]) -> None:
    from .demo import run_demo

    register("snn-sd", run_demo, summary="BPTT vs rate-BP vs rate-BP + self-distillation on digits (T=4), memory vs T")


def _labels(batch: Any) -> Any:
    if isinstance(batch, dict):
        return batch.get("labels", batch.get("y"))
    if isinstance(batch, (tuple, list)) and len(batch) > 1:
        return batch[1]
    return None


@hookimpl
def gradkit_loss_terms(step: Any, outputs: Any) -> Any:
    sd = step.transform("snn-sd")
    if sd is None:
        return None
    from gradkit.context import LossTerm
    from gradkit.errors import ConfigError

    y = _labels(step.batch)
    if y is None:
        raise ConfigError("snn-sd: the batch must be (x, y) or a dict with 'labels' so the exits can be supervised")
    terms = sd.loss_terms(outputs, y)
    if terms:
        key = _stats_key()
        acc = step.stash.setdefault(key, [])
        acc.append(dict(sd.last_stats))
    return [LossTerm(name, value, weight) for name, value, weight in terms]


_KEY = None


def _stats_key() -> Any:
    global _KEY
    if _KEY is None:
        from gradkit.context import StashKey

        _KEY = StashKey("snn_sd.stats")
    return _KEY


@hookimpl
def gradkit_step_report(step: Any, result: Any) -> None:
    rb = step.transform("rate-bp-m") or step.transform("rate-bp-s")
    if rb is not None:
        result.metrics.update(rb.neuron_stats())
    if step.transform("snn-sd") is not None:
        stats = step.stash.get(_stats_key(), [])
        if stats:
            for k in stats[0]:
                result.metrics[k] = sum(s[k] for s in stats) / len(stats)
