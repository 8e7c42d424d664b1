"""Gradient error of StreamBP vs plain autograd on tiny random models (a markdown table for the README).

    OMP_NUM_THREADS=1 python benchmarks/exactness_table.py > benchmarks/results/exactness.md

Each cell: max over parameters of ||g_streambp - g_autograd|| / ||g_autograd||, B=4, T=45, right+left
padding, prompt masking (10 tokens), layer chunk 7, head chunk 6 (neither divides T).
float64 uses RMSNorm in float64 (``use_exact_rmsnorm``); "f64 stock" keeps Hugging Face's float32 upcast.
"""

from __future__ import annotations

import copy

import gradkit.objectives as O
import torch
from gradkit_streambp import stream_backward
from gradkit_streambp.tiny import max_rel_error, oracle_loss_and_grads, random_batch, tiny_causal_lm, use_exact_rmsnorm


def batch_for(name, dtype):
    b = random_batch(4, 45, padding="both", pad=6, prompt=10, seed=1)
    g = torch.Generator().manual_seed(2)
    if name in ("grpo (beta=0.04)", "bnpo", "dr_grpo"):
        b["advantages"] = torch.randn(4, generator=g, dtype=dtype)
        b["old_logps"] = torch.randn(4, 45, generator=g, dtype=dtype) * 0.3 - 4.6
        b["ref_token_logps"] = torch.randn(4, 45, generator=g, dtype=dtype) * 0.3 - 4.6
    if name == "dpo":
        b["ref_logps"] = torch.tensor([-200.0, -190.0, -195.0, -205.0], dtype=dtype)
    return b


def main():
    torch.set_num_threads(1)
    objectives = {"sft": O.CausalLMSFT(), "grpo (beta=0.04)": O.GRPO(beta=0.04), "bnpo": O.GRPO(loss_type="bnpo"),
                  "dr_grpo": O.GRPO(loss_type="dr_grpo", max_length=64, beta=0.1), "dpo": O.DPO(beta=0.1)}
    modes = [("f64", torch.float64, True), ("f64 stock", torch.float64, False), ("f32", torch.float32, False)]
    print("| family | objective | " + " | ".join(m[0] for m in modes) + " |")
    print("|---|---|" + "---|" * len(modes))
    for fam in ("llama", "qwen2", "qwen3"):
        for name, obj in objectives.items():
            cells = []
            for _, dtype, exact in modes:
                m = tiny_causal_lm(fam, dtype=dtype, tied=fam == "qwen2")
                if exact:
                    use_exact_rmsnorm(m)
                s = copy.deepcopy(m)
                b = batch_for(name, dtype)
                lr = oracle_loss_and_grads(m, b, obj)
                ls = stream_backward(s, b, obj, layer_chunk=7, head_chunk=6)
                err, _ = max_rel_error(m, s)
                cells.append(f"{err:.1e} (loss Δ {abs(float(lr) - float(ls)):.0e})")
            print(f"| {fam}{' (tied)' if fam == 'qwen2' else ''} | {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
