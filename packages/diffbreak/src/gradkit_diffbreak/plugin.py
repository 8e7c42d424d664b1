"""Hook implementations of gradkit-diffbreak (nothing heavy imported at module level).

Every attack hook acts only when the ``"diffbreak"`` transform is active in the loop
(``state.transform("diffbreak") is not None``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradkit import hookimpl


def _factory(**config: Any) -> Any:
    from .transform import DiffBreak

    return DiffBreak(**config)


@hookimpl
def gradkit_register_transforms(register: Callable[..., None]) -> None:
    from .config import DiffBreakConfig

    register(
        "diffbreak",
        _factory,
        config=DiffBreakConfig,
        summary="exact per-step-recompute gradients + EOT through diffusion purification (DiffBreak); attack-loop policy",
    )


def _demo(ctx: Any) -> dict[str, Any]:
    from .demo import run_demo

    return run_demo(ctx)


@hookimpl
def gradkit_register_demos(register: Callable[..., None]) -> None:
    register("diffbreak", _demo, summary="PGD-EOT with exact gradients vs BPDA through DDPM purification on MNIST-5k 16x16; single vs majority vote")


@hookimpl
def gradkit_attack_start(state: Any) -> None:
    t = state.transform("diffbreak")
    if t is not None:
        t.attack_start(state)


@hookimpl
def gradkit_input_grad(state: Any) -> Any:
    t = state.transform("diffbreak")
    if t is None:
        return None
    return t.input_grad(state)


@hookimpl
def gradkit_attack_step(state: Any) -> Any:
    t = state.transform("diffbreak")
    if t is None:
        return None
    return t.attack_step(state)
