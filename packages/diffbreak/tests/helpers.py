"""Tiny models shared by the tests (kept small: the CPU lane must stay fast).

Most tests use :class:`TinyEpsNet` (a time-conditioned two-layer conv net) and :func:`tiny_scheduler`
(a stand-in exposing what a diffusers ``DDPMScheduler`` exposes to the purifiers) so that they do
not import diffusers, whose import alone takes tens of seconds on a loaded CPU. The tests that
check the diffusers integration use the real ``UNet2DModel``/``DDPMScheduler`` (``tiny_unet``).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch


class TinyEpsNet(torch.nn.Module):
    """``eps(x, t)``: conv -> tanh -> conv, modulated by the timestep (so the index matters)."""

    def __init__(self, channels: int = 1, hidden: int = 6, T: int = 100) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(channels, hidden, 3, padding=1)
        self.c2 = torch.nn.Conv2d(hidden, channels, 3, padding=1)
        self.T = T

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = (1.0 + t.to(x.dtype) / self.T).view(-1, 1, 1, 1)
        return self.c2(torch.tanh(self.c1(x) * s))


def tiny_eps_net(dtype: torch.dtype = torch.float64, seed: int = 0, T: int = 100) -> TinyEpsNet:
    torch.manual_seed(seed)
    net = TinyEpsNet(T=T).to(dtype).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def tiny_scheduler(T: int = 100, *, clip_sample: bool = True, variance_type: str = "fixed_small") -> SimpleNamespace:
    """Linear-beta DDPM schedule with the attributes the purifiers read from a diffusers scheduler."""
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float32)
    return SimpleNamespace(
        alphas_cumprod=torch.cumprod(1.0 - betas, 0),
        config=SimpleNamespace(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                               clip_sample=clip_sample, variance_type=variance_type),
    )


def tiny_unet(size: int = 8, dtype: torch.dtype = torch.float64, seed: int = 0):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=size, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    ).to(dtype).eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    return unet


def tiny_classifier(size: int = 8, dtype: torch.dtype = torch.float64, seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(4 * size * size, 5)
    ).to(dtype)
