"""``gradkit demo streambp``: exactness and memory on tiny Llama-style models (CPU, < 1 min)."""

from __future__ import annotations

import copy
import json
from typing import Any


def run_demo(ctx: Any) -> dict[str, Any]:
    import gradkit.objectives as O
    import torch
    from gradkit.metrics import SavedTensorMeter

    from gradkit_streambp import StreamStats, stream_backward
    from gradkit_streambp.tiny import (
        enable_checkpointing,
        max_rel_error,
        oracle_loss_and_grads,
        random_batch,
        tiny_causal_lm,
        use_exact_rmsnorm,
    )

    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    # 1) exactness: float64 with float64 norms, three objectives, prompt masking and padding
    cases = [("sft", O.CausalLMSFT()), ("grpo", O.GRPO(beta=0.04)), ("dpo", O.DPO(beta=0.1))]
    for name, obj in ctx.progress(cases, desc="exactness", total=len(cases)):
        m = use_exact_rmsnorm(tiny_causal_lm("qwen3", dtype=torch.float64, seed=ctx.seed))
        s = copy.deepcopy(m)
        b = random_batch(4, 45, padding="both", pad=6, prompt=10, seed=ctx.seed + 1)
        if name == "grpo":
            g = torch.Generator().manual_seed(ctx.seed)
            b["advantages"] = torch.randn(4, generator=g, dtype=torch.float64)
            b["ref_token_logps"] = torch.randn(4, 45, generator=g, dtype=torch.float64) * 0.3 - 4.6
        if name == "dpo":
            b["ref_logps"] = torch.tensor([-200.0, -190.0, -195.0, -205.0], dtype=torch.float64)
        lr = oracle_loss_and_grads(m, b, obj)
        ls = stream_backward(s, b, obj, layer_chunk=7, head_chunk=6)
        err, _ = max_rel_error(m, s)
        out[f"{name}_f64_max_rel_grad_err"] = float(f"{err:.3g}")
        out[f"{name}_loss_abs_diff"] = float(f"{abs(float(lr) - float(ls)):.3g}")
        ctx.log(f"{name}: loss {float(lr):.6f} (autograd) vs {float(ls):.6f} (StreamBP), max rel grad err {err:.2e}")

    # 2) memory: bytes saved by autograd for one step, T=2048, vocab 8000 (float32)
    T, V = 2048, 8000
    base = tiny_causal_lm("llama", vocab=V, hidden=128, intermediate=352, layers=2, heads=8, kv_heads=2, head_dim=16,
                          dtype=torch.float32, seed=ctx.seed)
    b = random_batch(1, T, vocab=V, padding="none", seed=ctx.seed)
    peaks = {}
    for method in ctx.progress(["plain", "checkpointing", "streambp"], desc="memory", total=3):
        m = copy.deepcopy(base)
        if method == "checkpointing":
            enable_checkpointing(m)
        with SavedTensorMeter(exclude=m) as meter:
            if method == "streambp":
                st = StreamStats()
                stream_backward(m, b, O.CausalLMSFT(), layer_chunk=256, head_chunk=256, stats=st)
            else:
                oracle_loss_and_grads(m, b, O.CausalLMSFT())
        peaks[method] = meter.peak_bytes / 2**20
        ctx.log(f"{method}: saved-activation peak {peaks[method]:.1f} MiB")
    out["saved_peak_mib_plain"] = round(peaks["plain"], 1)
    out["saved_peak_mib_checkpointing"] = round(peaks["checkpointing"], 1)
    out["saved_peak_mib_streambp"] = round(peaks["streambp"], 1)
    out["saved_peak_ratio_streambp_vs_ckpt"] = round(peaks["streambp"] / peaks["checkpointing"], 4)
    out["streambp_checkpoints_mib"] = round(st.checkpoint_bytes / 2**20, 1)
    out["note"] = "saved peak counts the autograd graph only; StreamBP's checkpoints/K,V buffers are outside it (checkpoints listed; see README for peak RSS)"
    (ctx.out_dir / "streambp_demo.json").write_text(json.dumps(out, indent=1))
    return out
