"""Autograd-saved bytes and step time vs T: spikingjelly BPTT, our BPTT, rate-BP (m/s), rate-BP + SD.

    OMP_NUM_THREADS=1 python packages/snn-sd/benchmarks/bench_memory_time.py --Ts 1 2 4 8 16 \
        --out /tmp/snn_sd_bench/memory_time.jsonl

Network: the 4-stage conv SNN (16/32/32/64 channels, conv-BN-LIF, GAP, FC), sklearn digits 8x8,
batch 64, LIF lam = 0.2 (tau = 1.25), soft detached reset. The spikingjelly 2.0 network is the same
architecture built from its layers (``layer.Conv2d/BatchNorm2d``, ``neuron.LIFNode(step_mode='m')``).
Memory = peak bytes autograd saves (``gradkit.metrics.SavedTensorMeter``, parameters excluded);
time = median of ``--repeats`` forward+backward steps after one warm-up, 1 thread.
"""

import argparse
from pathlib import Path

import gradkit_snn_sd as sd
import torch
from _common import JsonLines
from gradkit.data import load_digits
from gradkit.metrics import SavedTensorMeter
from gradkit_snn_sd.experiment import attach_method, forward_backward, make_net

WIDTHS = (16, 32, 32, 64)


class SJNet(torch.nn.Module):
    """The same 4-stage net from spikingjelly 2.0 layers (multi-step)."""

    def __init__(self, T):
        super().__init__()
        from spikingjelly.activation_based import layer, neuron, surrogate

        self.T = T
        self.input_shape = (1, 8, 8)
        mods, c = [], 1
        for i, w in enumerate(WIDTHS):
            mods += [layer.Conv2d(c, w, 3, 1 if i == 0 else 2, 1, bias=False, step_mode="m"),
                     layer.BatchNorm2d(w, step_mode="m"),
                     neuron.LIFNode(tau=1.25, decay_input=False, v_reset=None, detach_reset=True,
                                    surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m")]
            c = w
        self.body = torch.nn.Sequential(*mods)
        self.fc = torch.nn.Linear(c, 10)

    def to_time_major(self, x):
        return x.unsqueeze(0).expand(self.T, *x.shape) if x.dim() == 4 else x

    def forward(self, x):
        from spikingjelly.activation_based import functional

        functional.reset_net(self.body)
        return self.fc(self.body(self.to_time_major(x)).mean((3, 4))).mean(0)


def build(provider, T):
    if provider.startswith("sj"):
        torch.manual_seed(0)
        net = SJNet(T)
        handles = [sd.RateBackpropM(loss_scale=1.0).attach(net)] if provider == "sj+rate-bp-m" else []
        return net, handles, None
    net = make_net(T, 8, widths=WIDTHS)
    method = {"bptt": "bptt", "rate-bp-m": "rate-bp-m", "rate-bp-s": "rate-bp-s", "rate-bp-m+sd": "rate-bp-m+sd"}[provider]
    handles, esd = attach_method(net, method)
    return net, handles, esd


def step(net, esd, x, y):
    forward_backward(net, esd, x, y)
    net.zero_grad(set_to_none=True)


def main():
    import time

    ap = argparse.ArgumentParser()
    ap.add_argument("--Ts", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    ap.add_argument("--providers", nargs="+",
                    default=["sj-bptt", "bptt", "rate-bp-m", "rate-bp-s", "rate-bp-m+sd", "sj+rate-bp-m"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="/tmp/snn_sd_bench/memory_time.jsonl")
    args = ap.parse_args()
    x, y = load_digits()
    x, y = x[: args.batch] * 2.0, y[: args.batch]
    log = JsonLines(args.out)
    table = {}
    for T in args.Ts:
        for p in args.providers:
            net, handles, esd = build(p, T)
            try:
                with SavedTensorMeter(exclude=net) as meter:
                    step(net, esd, x, y)
                times = []
                for r in range(args.repeats + 1):
                    t0 = time.perf_counter()
                    step(net, esd, x, y)
                    if r:
                        times.append(time.perf_counter() - t0)
            finally:
                for h in reversed(handles):
                    h.remove()
            t = sorted(times)[len(times) // 2]
            table[(p, T)] = (meter.peak_bytes, t)
            log.write({"kind": "point", "provider": p, "T": T, "saved_MB": meter.peak_bytes / 2**20, "step_ms": 1e3 * t})
    base = "sj-bptt" if "sj-bptt" in args.providers else args.providers[0]
    for T in args.Ts:
        for p in args.providers:
            b, t = table[(p, T)]
            log.write({"kind": "ratio", "provider": p, "T": T, "vs": base,
                       "mem_ratio": b / table[(base, T)][0], "time_ratio": t / table[(base, T)][1]})
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    for p in args.providers:
        ax[0].plot(args.Ts, [table[(p, T)][0] / 2**20 for T in args.Ts], "o-", label=p)
        ax[1].plot(args.Ts, [1e3 * table[(p, T)][1] for T in args.Ts], "o-", label=p)
    ax[0].set_ylabel("autograd-saved MB")
    ax[1].set_ylabel("step time (ms, 1 thread)")
    for a in ax:
        a.set_xlabel("T")
        a.set_xscale("log", base=2)
    ax[0].legend(fontsize=7)
    out = Path(args.out).with_suffix(".png")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print("plot:", out)


if __name__ == "__main__":
    main()
