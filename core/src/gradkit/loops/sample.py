"""``gradkit.sample``: a thin diffusion sampling loop over a diffusers model and scheduler."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from ..context import SampleState
from ..errors import ArgumentTypeError, ConfigError
from ..manager import get_plugin_manager
from ..transforms import resolve
from ._checks import need_int

__all__ = ["sample", "default_sample_step"]


def sample(
    model: Any,
    scheduler: Any,
    *,
    shape: tuple[int, ...] | None = None,
    sample: torch.Tensor | None = None,
    num_inference_steps: int = 50,
    generator: torch.Generator | None = None,
    transforms: Any = None,
    model_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    return_trajectory: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the reverse diffusion chain and return the final sample.

    Args:
        model: a denoiser called as ``model(x, t, **model_kwargs)`` returning a tensor or an object
            with ``.sample`` (diffusers ``UNet2DModel``).
        scheduler: a diffusers scheduler (``set_timesteps``, ``step``, ``timesteps``).
        shape / sample: the shape of the initial Gaussian noise, or the initial sample itself.
        num_inference_steps: number of scheduler steps.
        generator: random generator for the initial noise and stochastic schedulers.
        transforms: active transforms (e.g. ``["fastsample"]``): their ``gradkit_sample_step`` runs.
        return_trajectory: also return the list of intermediate samples.
    """
    if not callable(model):
        raise ArgumentTypeError(f"sample: `model` must be callable (a diffusers UNet), got {type(model).__name__}")
    for attr in ("set_timesteps", "step"):
        if not hasattr(scheduler, attr):
            raise ArgumentTypeError(f"sample: `scheduler` must be a diffusers scheduler (missing `{attr}`), got {type(scheduler).__name__}")
    need_int("sample", "num_inference_steps", num_inference_steps)
    if (shape is None) == (sample is None):
        raise ConfigError("sample: pass exactly one of `shape` (for fresh noise) or `sample` (an initial tensor)")
    if sample is None:
        if not all(isinstance(s, int) and s > 0 for s in shape):  # type: ignore[union-attr]
            raise ConfigError(f"sample: `shape` must be positive ints, got {shape}")
        dev = next(model.parameters()).device if isinstance(model, torch.nn.Module) else torch.device("cpu")
        dt = next(model.parameters()).dtype if isinstance(model, torch.nn.Module) else torch.float32
        sample = torch.randn(shape, generator=generator, device="cpu", dtype=dt).to(dev)  # type: ignore[arg-type]
        sample = sample * float(getattr(scheduler, "init_noise_sigma", 1.0))
    elif not isinstance(sample, torch.Tensor):
        raise ArgumentTypeError(f"sample: `sample` must be a tensor, got {type(sample).__name__}")
    scheduler.set_timesteps(num_inference_steps)
    hook = get_plugin_manager().hook
    active = resolve(transforms)
    handles = [t.attach(model) for t in active.values()] if isinstance(model, torch.nn.Module) else []
    if not isinstance(model, torch.nn.Module) and active:
        raise ArgumentTypeError("sample: transforms need `model` to be a torch.nn.Module")
    try:
        state = SampleState(model=model, scheduler=scheduler, sample=sample, num_steps=num_inference_steps,
                            transforms=active, hook=hook, generator=generator, model_kwargs=dict(model_kwargs or {}),
                            trajectory=[] if return_trajectory else None)
        hook.gradkit_sample_start(state=state)
        timesteps = list(scheduler.timesteps)
        it: Any = enumerate(timesteps)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(timesteps), desc="gradkit.sample", leave=False)
        for i, t in it:
            state.index, state.timestep = i, t
            nxt = hook.gradkit_sample_step(state=state)
            if nxt is None:
                raise ConfigError("gradkit_sample_step returned None: no implementation advanced the sample")
            state.sample = nxt
            if state.trajectory is not None:
                state.trajectory.append(nxt.detach().clone())
        hook.gradkit_sample_finish(state=state, sample=state.sample)
    finally:
        for h in reversed(handles):
            h.remove()
    if return_trajectory:
        return state.sample, state.trajectory or []
    return state.sample


def scheduler_step(state: SampleState, model_output: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    """``scheduler.step(model_output, t, x).prev_sample``, passing the state's generator when accepted."""
    x = state.sample if x is None else x
    kwargs: dict[str, Any] = {}
    if state.generator is not None and "generator" in inspect.signature(state.scheduler.step).parameters:
        kwargs["generator"] = state.generator
    out = state.scheduler.step(model_output, state.timestep, x, **kwargs)
    return out.prev_sample if hasattr(out, "prev_sample") else out[0]


def default_sample_step(state: SampleState) -> torch.Tensor:
    with torch.no_grad():
        x_in = state.sample
        if hasattr(state.scheduler, "scale_model_input"):
            x_in = state.scheduler.scale_model_input(x_in, state.timestep)
        eps = state.predict_noise(x_in)
        return scheduler_step(state, eps)
