"""Hook implementations of gradkit-streambp (nothing heavy imported at module level)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradkit import hookimpl

_NAME = "streambp"


def _factory(**config: Any) -> Any:
    from gradkit_streambp.transform import StreamBP

    return StreamBP(**config)


@hookimpl
def gradkit_register_transforms(register: Callable[..., None]) -> None:
    from gradkit_streambp.config import StreamBPConfig

    register(_NAME, _factory, config=StreamBPConfig,
             summary="StreamBP: exact sequence-chunked backprop for long-context causal-LM training (SFT/GRPO/DPO)")


@hookimpl
def gradkit_register_demos(register: Callable[..., None]) -> None:
    from gradkit_streambp.demo import run_demo

    register(_NAME, run_demo, summary="StreamBP vs autograd: gradient error and saved-activation memory on a tiny Llama")


@hookimpl
def gradkit_loop_start(loop: Any) -> None:
    t = loop.transform(_NAME)
    if t is None:
        return
    from gradkit_streambp.loop import loop_start

    loop_start(loop, t)


@hookimpl
def gradkit_forward_backward(step: Any) -> Any:
    t = step.transform(_NAME)
    if t is None:
        return None
    from gradkit_streambp.loop import forward_backward

    return forward_backward(step, t)


@hookimpl
def gradkit_step_report(step: Any, result: Any) -> None:
    if step.transform(_NAME) is None:
        return
    from gradkit_streambp.loop import step_report

    step_report(step, result)


@hookimpl
def gradkit_loop_finish(loop: Any, summary: dict[str, Any]) -> None:
    if loop.transform(_NAME) is None:
        return
    from gradkit_streambp.loop import loop_finish

    loop_finish(loop, summary)
