"""``gradkit demo fastsample``: inpaint held-out MNIST-16 digits with the shipped UNet."""

from __future__ import annotations

from typing import Any

import torch


def run_demo(ctx: Any) -> dict[str, float | int | str]:
    from .evaluation import heldout_batch, image_grid, make_mask, run_method
    from .models import load_pretrained

    torch.set_num_threads(1)
    unet, sched = load_pretrained()
    truth = heldout_batch(8, seed=ctx.seed)
    mask = make_mask("top_half")
    ctx.log("8 held-out digits, top half known; same noise for every method; budget 220 UNet forwards")
    results: dict[str, float | int | str] = {}
    rows = [("masked input", truth * mask + (1 - mask) * -0.4)]
    for name, key in ctx.progress([("fastsample (fd)", "ours"), ("dps", "dps"), ("x0_only", "x0_only")], desc="methods"):
        row, x0 = run_method(name, unet, sched, truth, mask, seed=ctx.seed)
        ctx.log(f"{name}: {row['s_per_image']:.2f} s/image, fwd {row['unet_fwd']}, bwd {row['unet_bwd']}, "
                f"known-pixel MSE {row['known_mse']:.2e}, hole MSE {row['hole_mse']:.3f}, PSNR {row['psnr']:.2f} dB")
        results[f"{key}_s_per_image"] = round(row["s_per_image"], 3)
        results[f"{key}_known_mse"] = float(f"{row['known_mse']:.3g}")
        results[f"{key}_psnr_db"] = round(row["psnr"], 2)
        results[f"{key}_unet_backward"] = row["unet_bwd"]
        rows.append((name, x0))
    rows.append(("ground truth", truth))
    path = ctx.out_dir / "fastsample_inpaint_grid.png"
    image_grid(rows, path)
    results["speedup_vs_dps"] = round(results["dps_s_per_image"] / max(results["ours_s_per_image"], 1e-9), 2)  # type: ignore[operator]
    results["grid"] = str(path)
    return results
