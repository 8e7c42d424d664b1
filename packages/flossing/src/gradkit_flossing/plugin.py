"""gradkit hook implementations of gradient flossing (hookimpls only; nothing heavy at import)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradkit import hookimpl

NAME = "flossing"


def _factory(**config: Any) -> Any:
    from .config import FlossingConfig
    from .transform import FlossingTransform

    return FlossingTransform(config=FlossingConfig(**config))


@hookimpl
def gradkit_register_transforms(register: Callable[..., None]) -> None:
    from .config import FlossingConfig

    register(NAME, _factory, config=FlossingConfig,
             summary="Gradient flossing (Engelken 2023): push an RNN's top-k Lyapunov exponents to 0 "
                     "in own-optimiser phases (or as a loss term) so gradients neither explode nor vanish")


@hookimpl
def gradkit_register_demos(register: Callable[..., None]) -> None:
    from .demo import run_demo

    register(NAME, run_demo, summary="Lyapunov exponents before/after flossing, and delayed copy with vs without pre-flossing")


@hookimpl
def gradkit_loop_start(loop: Any) -> None:
    t = loop.transform(NAME)
    if t is not None:
        t.loop_start(loop.step)


@hookimpl(wrapper=True)
def gradkit_forward_backward(step: Any) -> Any:
    # Runs the scheduled flossing phases before the first micro-batch; never produces the result itself.
    t = step.transform(NAME)
    if t is not None:
        t.before_micro_batch(step)
    return (yield)


@hookimpl
def gradkit_loss_terms(step: Any, outputs: Any) -> Any:
    t = step.transform(NAME)
    return None if t is None else t.loss_term(step)


@hookimpl
def gradkit_step_report(step: Any, result: Any) -> None:
    t = step.transform(NAME)
    if t is not None:
        t.report(step, result)


@hookimpl
def gradkit_loop_finish(loop: Any, summary: dict[str, Any]) -> None:
    t = loop.transform(NAME)
    if t is not None:
        summary[NAME] = t.summary()
