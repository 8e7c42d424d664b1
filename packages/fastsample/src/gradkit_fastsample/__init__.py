"""gradkit-fastsample: fast constrained sampling in pre-trained diffusion models.

Graikos, Jojic & Samaras, "Fast constrained sampling in pre-trained diffusion models",
arXiv:2410.18804 (NeurIPS 2025). The noisy sample is corrected along ``J_t g`` (denoiser Jacobian
times the clean-space constraint error), computed by a finite difference of two forward passes:
no backpropagation through the diffusion model.
"""

from __future__ import annotations

from .config import ESTIMATORS, STEP_TRANSFORMS, FastSampleConfig
from .constraints import (
    Constraint,
    Deblur,
    FeatureLoss,
    Inpaint,
    LatentInpaint,
    SuperResolution,
    gaussian_kernel,
    vae_decoder,
)
from .denoiser import CallableDenoiser, Denoiser, UNetDenoiser
from .models import load_mnist16, load_pretrained, make_mnist16_unet
from .sampler import ConstrainedSampler, DPSSampler, SampleOutput, Trace
from .transform import FastSample

__all__ = [
    "ConstrainedSampler",
    "DPSSampler",
    "FastSample",
    "FastSampleConfig",
    "SampleOutput",
    "Trace",
    "ESTIMATORS",
    "STEP_TRANSFORMS",
    "Constraint",
    "Inpaint",
    "LatentInpaint",
    "SuperResolution",
    "Deblur",
    "FeatureLoss",
    "gaussian_kernel",
    "vae_decoder",
    "Denoiser",
    "UNetDenoiser",
    "CallableDenoiser",
    "load_pretrained",
    "load_mnist16",
    "make_mnist16_unet",
    "FastSampleCallback",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    if name == "FastSampleCallback":
        from .diffusers_callback import FastSampleCallback

        return FastSampleCallback
    raise AttributeError(name)
