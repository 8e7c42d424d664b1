import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def tiny_unet(seed: int = 0, attention: bool = False, size: int = 8):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(sample_size=size, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=8,
                       add_attention=attention).eval().requires_grad_(False)


def ddim(**kw):
    from diffusers import DDIMScheduler

    cfg = dict(num_train_timesteps=1000, beta_schedule="linear", timestep_spacing="trailing", clip_sample=False)
    cfg.update(kw)
    return DDIMScheduler(**cfg)


@pytest.fixture
def unet():
    return tiny_unet()


@pytest.fixture
def sched():
    return ddim()
