"""Side by side with the reference ``streambp`` package (PyPI 1.0): gradient error vs plain autograd on the
same kind of tiny model and batch (spec §3.5 setting: Llama, 2 layers, d 64, GQA 4/2, vocab 97, B 2, T 40,
right padding 6 on row 0, layer chunk 7, head chunk 5, float32), with and without prompt masking.

The reference needs transformers 4.51.3, so each implementation runs in its own environment:

    uv venv ref && uv pip install -p ref torch==2.13.0 transformers==4.51.3 numpy && uv pip install -p ref --no-deps streambp==1.0
    ref/bin/python benchmarks/compare_reference.py --impl reference
    python benchmarks/compare_reference.py --impl gradkit

Each prints one JSON line per case: max and median over parameters of ||g - g_autograd|| / ||g_autograd||,
and the ratio ||g|| / ||g_autograd|| of the LM head gradient (a pure scale error shows up there).

With ``--memory T`` it instead times one SFT step of the benchmark model of ``bench_memory.py`` (vocab 32000,
d 256, 4 layers, GQA 8/2, float32, B 1, no padding) with both chunk sizes 512, in a fresh subprocess, and
reports the peak-RSS growth of the step (after ``/proc/self/clear_refs``) and its wall time (second run):

    ref/bin/python benchmarks/compare_reference.py --impl reference --memory 4096
    python benchmarks/compare_reference.py --impl gradkit --memory 4096
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics


def build(dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, tie_word_embeddings=False, attn_implementation="sdpa")
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).to(dtype).train()


def batch(prompt: int):
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (2, 40), generator=g)
    am = torch.ones(2, 40, dtype=torch.long)
    am[0, -6:] = 0
    labels = ids.masked_fill(am == 0, -100)
    if prompt:
        labels[:, :prompt] = -100
    return {"input_ids": ids, "attention_mask": am, "labels": labels}


def oracle(model, b):
    import torch.nn.functional as F

    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()
    tgt = b["labels"][:, 1:]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
    loss.backward()
    return float(loss)


def run_reference(model, b):
    import importlib.util
    import sys

    # `import streambp` imports trl (its trainers); load only the model module, as a stand-alone file
    path = importlib.util.find_spec("streambp").submodule_search_locations[0] + "/stream_model.py"
    spec = importlib.util.spec_from_file_location("streambp_stream_model", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["streambp_stream_model"] = mod
    spec.loader.exec_module(mod)
    StreamModel = mod.StreamModel

    sm = StreamModel(model, gradient_accumulation_steps=1, logits_chunk_size=5, stream_checkpoint=True,
                     checkpoint_chunk_size=7)
    sm.gradient_checkpointing_enable()
    sm.train()
    out = sm(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
    loss = out.loss if hasattr(out, "loss") else out[0]
    return float(loss.detach())


def run_gradkit(model, b):
    import gradkit.objectives as O
    from gradkit_streambp import stream_backward

    return float(stream_backward(model, b, O.CausalLMSFT(), layer_chunk=7, head_chunk=5))


# Standalone on purpose: `--impl reference` runs in the reference package's own venv, where gradkit (and its
# gradkit.metrics.PeakRSSWindow) is not installed; this is the same measurement.
def _status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def memory(impl: str, T: int) -> None:
    import gc
    import time

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=2, head_dim=32, tie_word_embeddings=False,
                      attn_implementation="sdpa", max_position_embeddings=1 << 16)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).train()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 32000, (1, T), generator=g)
    b = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    if impl == "reference":
        import importlib.util
        import sys

        path = importlib.util.find_spec("streambp").submodule_search_locations[0] + "/stream_model.py"
        spec = importlib.util.spec_from_file_location("streambp_stream_model", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["streambp_stream_model"] = mod
        spec.loader.exec_module(mod)
        sm = mod.StreamModel(model, gradient_accumulation_steps=1, logits_chunk_size=512, stream_checkpoint=True,
                             checkpoint_chunk_size=512)
        sm.gradient_checkpointing_enable()
        sm.train()

        def step():
            out = sm(**b)
            return float((out.loss if hasattr(out, "loss") else out[0]).detach())
    else:
        import gradkit.objectives as O
        from gradkit_streambp import stream_backward

        def step():
            return float(stream_backward(model, b, O.CausalLMSFT(), layer_chunk=512, head_chunk=512))

    loss = step()
    model.zero_grad(set_to_none=True)
    gc.collect()
    rss0 = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    t0 = time.perf_counter()
    step()
    dt = time.perf_counter() - t0
    print(json.dumps({"impl": impl, "T": T, "loss": loss, "peak_rss_delta_mib": (_status_kib("VmHWM") - rss0) / 1024,
                      "step_s": dt}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["reference", "gradkit"], required=True)
    ap.add_argument("--memory", type=int, default=0, help="sequence length for the memory/time mode")
    args = ap.parse_args()
    if args.memory:
        memory(args.impl, args.memory)
        return
    import torch

    torch.set_num_threads(1)
    for prompt in (0, 9):
        for dtype in (torch.float32, torch.float64):
            base = build(dtype)
            a, s = copy.deepcopy(base), copy.deepcopy(base)
            b = batch(prompt)
            named = list(s.named_parameters())  # before the reference wraps (renames) layers
            la = oracle(a, b)
            ls = (run_reference if args.impl == "reference" else run_gradkit)(s, b)
            pa = dict(a.named_parameters())
            rels = []
            for n, p in named:
                ga, gs = pa[n].grad, p.grad
                if ga is None or gs is None:
                    continue
                rels.append(((gs.double() - ga.double()).norm() / ga.double().norm()).item())
            head = (dict(named)["lm_head.weight"].grad.double().norm() / a.lm_head.weight.grad.double().norm()).item()
            print(json.dumps({"impl": args.impl, "prompt_masked": prompt, "dtype": str(dtype).replace("torch.", ""),
                              "loss_autograd": la, "loss_impl": ls, "max_rel_err": max(rels),
                              "median_rel_err": statistics.median(rels), "lm_head_grad_norm_ratio": head}), flush=True)


if __name__ == "__main__":
    main()
