"""Zero-fork diffusers integration: a ``callback_on_step_end`` that applies the corrections.

Usage with any diffusers pipeline that supports step-end callbacks (Stable Diffusion & co.)::

    cb = FastSampleCallback(LatentInpaint.from_image(pipe.vae, image, mask))
    out = pipe(prompt_embeds=emb, num_inference_steps=20, eta=0.15, guidance_scale=1.0,
               callback_on_step_end=cb, callback_on_step_end_tensor_inputs=cb.tensor_inputs)

After the pipeline's scheduler step ``i`` produced the latents for timestep ``t_{i+1}``, the callback
runs the K finite-difference corrections at ``t_{i+1}`` and hands the corrected latents back; the
pipeline's next step then denoises them and its scheduler does the transition (use
``DDIMScheduler`` with ``eta`` ~0.15 for the paper's step). Compared with
:class:`~gradkit_fastsample.ConstrainedSampler` the first step is uncorrected and each step costs one
redundant forward (``N(2 + 2K) - 1 - 2K`` forwards instead of ``N(1 + 2K)``).
"""

from __future__ import annotations

from typing import Any

from gradkit.errors import ArgumentTypeError

from .config import FastSampleConfig
from .constraints import Constraint
from .denoiser import UNetDenoiser
from .sampler import Trace, correct

__all__ = ["FastSampleCallback"]


class FastSampleCallback:
    """A diffusers ``callback_on_step_end`` running fastsample's inner corrections.

    Args:
        constraint: the :class:`~gradkit_fastsample.constraints.Constraint` (latent space, or with a decoder).
        config / keyword hyperparameters: see :class:`FastSampleConfig` (``num_inference_steps`` and
            ``eta`` are the pipeline's own arguments here).

    Attributes:
        trace: residuals per corrected step and the network evaluations the callback added.
        tensor_inputs: pass as ``callback_on_step_end_tensor_inputs``.
    """

    tensor_inputs = ["latents", "prompt_embeds"]

    def __init__(self, constraint: Constraint, *, config: FastSampleConfig | None = None, **kwargs: Any) -> None:
        if not isinstance(constraint, Constraint):
            raise ArgumentTypeError(f"FastSampleCallback: `constraint` must be a Constraint, got {type(constraint).__name__}")
        self.constraint = constraint
        self.config = config if config is not None else FastSampleConfig(**kwargs)
        self.trace = Trace()

    def __call__(self, pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        sched = pipe.scheduler
        ts = [int(t) for t in sched.timesteps]
        if step_index + 1 >= len(ts):
            return {}
        t_next = ts[step_index + 1]
        latents = callback_kwargs["latents"]
        model_kwargs: dict[str, Any] = {}
        negative: dict[str, Any] | None = None
        scale = 1.0
        emb = callback_kwargs.get("prompt_embeds")
        if emb is not None:
            if getattr(pipe, "do_classifier_free_guidance", False):
                neg, pos = emb.chunk(2)
                model_kwargs["encoder_hidden_states"] = pos
                negative = {"encoder_hidden_states": neg}
                scale = float(pipe.guidance_scale)
            else:
                model_kwargs["encoder_hidden_states"] = emb
        den = UNetDenoiser(pipe.unet, sched, model_kwargs=model_kwargs, guidance_scale=scale,
                           negative_model_kwargs=negative)
        if step_index == 0:
            self.trace = Trace()
            self.constraint.to(device=latents.device)
        res: list[float] = []
        x, _, _ = correct(den, latents.float(), t_next, self.constraint, self.config, res)
        self.trace.timesteps.append(t_next)
        self.trace.residuals.append(res)
        self.trace.nfe_forward += den.nfe_forward
        self.trace.nfe_backward += den.nfe_backward
        return {"latents": x.to(latents.dtype)}
