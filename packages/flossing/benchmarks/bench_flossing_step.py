"""Cost of a flossing update vs a plain BPTT task step at the same N and T (and kernels vs torch).

    OMP_NUM_THREADS=1 python packages/flossing/benchmarks/bench_flossing_step.py --out results/bench_step.jsonl
    # the Triton kernels through the CPU interpreter (correctness-speed only, not a speed claim):
    OMP_NUM_THREADS=1 TRITON_INTERPRET=1 python packages/flossing/benchmarks/bench_flossing_step.py --interpreter \
        --out results/bench_interp.jsonl
    # on a GPU: python .../bench_flossing_step.py --device cuda --out results/bench_gpu.jsonl

Baselines: ``nn.RNN`` forward over T steps + readout + backward (what one task step costs, without the
optimizer), and the same recurrence stepped from a Python loop (the estimator's per-step overhead). Method: one flossing update = forward of the QR estimator for k exponents over T steps +
backward through it (B=1 sequence, as the reference). Both in the same run; min over repeats;
ratios reported.
JSON lines out and a bar plot ``<out>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from gradkit.metrics import timeit
from gradkit_flossing import flossing_loss, lyapunov_spectrum, random_frame


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--horizon", type=int, default=55)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--interpreter", action="store_true", help="compare GRADKIT_KERNELS=triton vs reference")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default="bench_step.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dev = torch.device(args.device)
    N, T = args.hidden, args.horizon
    torch.manual_seed(0)
    rnn = torch.nn.RNN(1, N).to(dev)
    head = torch.nn.Linear(N, 1).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rows = []

    def bptt(B: int) -> None:
        x = torch.rand(T, B, 1, device=dev)
        hs, _ = rnn(x)
        head(hs).square().mean().backward()
        sync()

    dyn = None

    def bptt_loop(B: int) -> None:
        # the same recurrence stepped from Python (as the estimator does): isolates the per-step overhead
        nonlocal dyn
        from gradkit_flossing import as_dynamics

        dyn = dyn or as_dynamics(rnn)
        x = torch.rand(T, B, 1, device=dev)
        h = dyn.init_state(B, like=x)
        out = 0.0
        for t in range(T):
            h = dyn.step(h, x[t])
            out = out + head(h).square().mean()
        out.backward()
        sync()

    def floss(k: int) -> None:
        x = torch.rand(T, 1, 1, device=dev)
        q0 = random_frame(1, N, k, like=x)
        loss = flossing_loss(lyapunov_spectrum(rnn, x, k, q0=q0, transient=16))
        loss.backward()
        sync()

    if args.interpreter:
        assert os.environ.get("TRITON_INTERPRET") == "1", "set TRITON_INTERPRET=1 before starting"
        for k in args.ks:
            res = {}
            for mode in ("reference", "triton"):
                os.environ["GRADKIT_KERNELS"] = mode
                res[mode] = timeit(lambda: floss(k), repeat=args.repeat)["min_s"]
            rows.append({"bench": "floss_update_interpreter", "N": N, "T": T, "k": k, "torch_s": res["reference"],
                         "triton_interp_s": res["triton"], "ratio_triton_over_torch": res["triton"] / res["reference"]})
            print(json.dumps(rows[-1]), flush=True)
    else:
        os.environ["GRADKIT_KERNELS"] = "auto"
        for k in args.ks:
            if k > N:
                continue
            # baselines re-timed next to each method run (the shared CPU's load drifts)
            base1 = timeit(lambda: bptt(1), repeat=4 * args.repeat, warmup=3)["min_s"]
            base16 = timeit(lambda: bptt(16), repeat=4 * args.repeat, warmup=3)["min_s"]
            loop1 = timeit(lambda: bptt_loop(1), repeat=2 * args.repeat, warmup=2)["min_s"]
            t = timeit(lambda: floss(k), repeat=args.repeat, warmup=1)["min_s"]
            rows.append({"bench": "floss_update_vs_bptt", "device": args.device, "N": N, "T": T, "k": k,
                         "bptt_B1_s": base1, "bptt_B16_s": base16, "bptt_python_loop_B1_s": loop1, "floss_B1_s": t,
                         "ratio_vs_bptt_B1": t / base1, "ratio_vs_bptt_B16": t / base16,
                         "ratio_vs_python_loop_B1": t / loop1})
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.4))
        key = "ratio_triton_over_torch" if args.interpreter else "ratio_vs_bptt_B1"
        ax.bar([str(r["k"]) for r in rows], [r[key] for r in rows])
        ax.set(xlabel="k (exponents)", ylabel=key, yscale="log", title=f"N={N}, T={T}, {args.device}")
        fig.savefig(out.with_suffix(".png"), dpi=110, bbox_inches="tight")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
