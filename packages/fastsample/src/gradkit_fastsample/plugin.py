"""gradkit hook implementations of gradkit-fastsample (nothing heavy is imported at module level)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gradkit import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from gradkit.context import SampleState

NAME = "fastsample"


@hookimpl
def gradkit_register_transforms(register: Callable[..., None]) -> None:
    from .config import FastSampleConfig
    from .transform import make_fastsample

    register(NAME, make_fastsample, config=FastSampleConfig,
             summary="Fast constrained diffusion sampling: inexact-Newton J*g corrections by finite differences (no UNet backprop)")


@hookimpl
def gradkit_register_demos(register: Callable[..., None]) -> None:
    from .demo import run_demo

    register(NAME, run_demo, summary="MNIST-16 inpainting with the shipped UNet: fastsample vs DPS vs x0-only, image grid")


@hookimpl
def gradkit_sample_start(state: SampleState) -> None:
    t = state.transform(NAME)
    if t is not None:
        t.start(state)  # type: ignore[attr-defined]


@hookimpl
def gradkit_sample_step(state: SampleState) -> torch.Tensor | None:
    """One outer step (K corrections + DDIM transition) while the ``fastsample`` transform is active."""
    t = state.transform(NAME)
    if t is None:
        return None
    return t.step(state)  # type: ignore[attr-defined,no-any-return]


@hookimpl
def gradkit_sample_finish(state: SampleState, sample: torch.Tensor) -> None:
    t = state.transform(NAME)
    if t is not None:
        t.finish(state, sample)  # type: ignore[attr-defined]
