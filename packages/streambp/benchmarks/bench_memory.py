"""Memory and time of one SFT training step: plain autograd vs Hugging Face activation checkpointing vs StreamBP.

Llama-style model (vocab 32000, d 256, intermediate 704, 4 layers, 8 query / 2 KV heads, float32), B = 1,
random tokens, no padding. Every (method, T) runs in a fresh subprocess (so peak RSS is its own) that
1. builds the model, runs the step once under ``gradkit.metrics.SavedTensorMeter`` (bytes the autograd
   graph saves, parameters excluded),
2. resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), runs the step again (timed) and
   reports ``VmHWM - VmRSS before the step`` (everything: activations, logits, StreamBP's non-graph
   buffers, gradients).
All methods compute the same gradients (checked by the tests, not re-checked here). A method is not
run at larger T once its peak RSS exceeded ``--budget-gib`` (it cannot fit there either).

    OMP_NUM_THREADS=1 python benchmarks/bench_memory.py --T 1024 2048 4096 8192 16384 --out benchmarks/results

Outputs ``memory.jsonl`` (one JSON line per run) and ``memory.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("plain", "checkpointing", "streambp")


def worker(method: str, T: int, layer_chunk: int, head_chunk: int) -> dict:
    import gradkit.objectives as O
    import torch
    from gradkit.metrics import PeakRSSWindow, SavedTensorMeter
    from gradkit_streambp import StreamStats, stream_backward
    from gradkit_streambp.tiny import enable_checkpointing, oracle_loss_and_grads, random_batch, tiny_causal_lm

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model = tiny_causal_lm("llama", vocab=32000, hidden=256, intermediate=704, layers=4, heads=8, kv_heads=2,
                           head_dim=32, dtype=torch.float32, seed=0)
    if method == "checkpointing":
        enable_checkpointing(model)
    batch = random_batch(1, T, vocab=32000, padding="none", seed=1)
    obj = O.CausalLMSFT()
    stats = StreamStats()

    def step():
        if method == "streambp":
            return stream_backward(model, batch, obj, layer_chunk=layer_chunk, head_chunk=head_chunk, stats=stats)
        return oracle_loss_and_grads(model, batch, obj)

    with SavedTensorMeter(exclude=model) as meter:
        loss = step()
    saved = meter.peak_bytes
    model.zero_grad(set_to_none=True)
    with PeakRSSWindow() as rss:
        t0 = time.perf_counter()
        step()
        dt = time.perf_counter() - t0
    return {
        "method": method, "T": T, "loss": float(loss), "saved_peak_mib": saved / 2**20,
        "peak_rss_delta_mib": rss.peak_delta_mib, "step_s": dt,
        "layer_chunk": layer_chunk if method == "streambp" else None,
        "head_chunk": head_chunk if method == "streambp" else None,
        "streambp_checkpoints_mib": stats.checkpoint_bytes / 2**20 if method == "streambp" else None,
        "threads": torch.get_num_threads(),
    }


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for key, ax, title in (("saved_peak_mib", axes[0], "autograd saved peak (MiB)"),
                           ("peak_rss_delta_mib", axes[1], "peak RSS delta (MiB)"), ("step_s", axes[2], "step time (s)")):
        for m in METHODS:
            pts = sorted((r["T"], r[key]) for r in rows if r["method"] == m and r.get(key) is not None)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_title(title)
        ax.legend()
    fig.suptitle("SFT step, Llama-style d=256, 4 layers, vocab 32000, fp32, CPU")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--layer-chunk", type=int, default=512)
    ap.add_argument("--head-chunk", type=int, default=512)
    ap.add_argument("--budget-gib", type=float, default=4.0, help="skip a method at larger T once its peak RSS exceeded this")
    ap.add_argument("--report-budgets", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.layer_chunk, args.head_chunk)))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "memory.jsonl"
    rows: list[dict] = []
    over: set[str] = set()
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "HF_HUB_OFFLINE": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    with path.open("w") as fh:
        for T in args.T:
            for m in args.methods:
                if m in over:
                    row = {"method": m, "T": T, "skipped": f"peak RSS over {args.budget_gib} GiB at a smaller T"}
                else:
                    cmd = [sys.executable, __file__, "--worker", m, str(T), "--layer-chunk", str(args.layer_chunk),
                           "--head-chunk", str(args.head_chunk)]
                    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    if res.returncode != 0:
                        row = {"method": m, "T": T, "error": res.stderr.strip().splitlines()[-1:]}
                    else:
                        row = json.loads(res.stdout.strip().splitlines()[-1])
                        if row["peak_rss_delta_mib"] > args.budget_gib * 1024:
                            over.add(m)
                rows.append(row)
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                print(json.dumps(row), flush=True)
    done = [r for r in rows if "step_s" in r]
    by = {(r["method"], r["T"]): r for r in done}
    for T in args.T:
        c, s = by.get(("checkpointing", T)), by.get(("streambp", T))
        if c and s:
            print(f"T={T}: StreamBP/ckpt saved {s['saved_peak_mib'] / c['saved_peak_mib']:.3f}, "
                  f"RSS {s['peak_rss_delta_mib'] / c['peak_rss_delta_mib']:.3f}, time {s['step_s'] / c['step_s']:.2f}x")
    for gib in args.report_budgets:
        for m in args.methods:
            fit = [r["T"] for r in done if r["method"] == m and r["peak_rss_delta_mib"] <= gib * 1024]
            print(f"{m}: largest measured T within {gib} GiB peak RSS: {max(fit) if fit else None}")
    if done:
        plot(done, out / "memory.png")


if __name__ == "__main__":
    main()
