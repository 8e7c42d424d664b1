"""Exactness and alignment of rate-BP with BPTT (the numbers in the README's first table).

    OMP_NUM_THREADS=1 python packages/snn-sd/benchmarks/bench_exactness.py --out /tmp/snn_sd_bench/exactness.jsonl

1. One LIF layer, time-constant input, float64: max |e - d(mean rate)/d(input) summed over t| per reset
   mode over T in {1, 4, 16}, theta in {0.7, 1, 1.3}, lam in {0.2, 0.9}.
2. Whole network (4-stage conv SNN on digits, batch 64, float64) at T = 1: max |grad diff| vs BPTT.
3. Same net, float32, T in {2, 4, 8, 16}: per-parameter cosine and norm ratio of rate-BP vs BPTT.
"""

import argparse
import copy
import itertools

import gradkit_snn_sd as sd
import torch
import torch.nn.functional as F
from _common import JsonLines
from gradkit.data import load_digits
from gradkit_snn_sd.reference import lif_bptt_reference, lif_spike_pass_reference

MODES = {"soft,detached": (None, True), "soft": (None, False), "hard,detached": (0.0, True), "hard": (0.0, False),
         "hard(V_r=-0.3)": (-0.3, False)}


def grads(net, x, y, t=None):
    h = t.attach(net) if t is not None else None
    try:
        F.cross_entropy(net(x), y).backward()
    finally:
        if h is not None:
            h.remove()
    g = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    return g


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/snn_sd_bench/exactness.jsonl")
    args = ap.parse_args()
    log = JsonLines(args.out)
    for name, (vr, det) in MODES.items():
        worst = 0.0
        for T, theta, lam in itertools.product([1, 4, 16], [0.7, 1.0, 1.3], [0.2, 0.9]):
            i = (torch.rand(1000, dtype=torch.float64) * 3 - 0.5).requires_grad_()
            kw = dict(lam=lam, theta=theta, v_reset=vr, detach_reset=det, alpha=4.0, input_scale=1.0)
            (g,) = torch.autograd.grad(lif_bptt_reference(i.unsqueeze(0).expand(T, -1), **kw).mean(0).sum(), i)
            e = lif_spike_pass_reference(i.detach().unsqueeze(0).expand(T, -1).contiguous(), **kw)[2] / T
            worst = max(worst, float((e - g).abs().max()))
        log.write({"kind": "layer", "mode": name, "max_abs_diff": worst})
    x, y = load_digits()
    x, y = x[:64] * 2.0, y[:64]
    for cls in (sd.RateBackpropM, sd.RateBackpropS):
        torch.manual_seed(0)
        net = sd.SpikingConvNet(widths=(16, 32, 32, 64), T=1).double()
        gb = grads(copy.deepcopy(net), x.double(), y)
        gr = grads(net, x.double(), y, cls(loss_scale=1.0))
        log.write({"kind": "T1", "transform": cls.name, "max_abs_diff": max(float((gr[k] - gb[k]).abs().max()) for k in gb),
                   "max_grad": max(float(gb[k].abs().max()) for k in gb)})
    for T in (2, 4, 8, 16):
        torch.manual_seed(0)
        net = sd.SpikingConvNet(widths=(16, 32, 32, 64), T=T)
        gb = grads(copy.deepcopy(net), x, y)
        gr = grads(net, x, y, sd.RateBackpropM(loss_scale=1.0))
        cos = {k: float(F.cosine_similarity(gr[k].flatten(), gb[k].flatten(), dim=0)) for k in gb}
        ratio = {k: float(gr[k].norm() / gb[k].norm()) for k in gb}
        convs = [k for k in gb if k.endswith("body.0.weight")]
        log.write({"kind": "alignment", "T": T, "min_cos": min(cos.values()), "conv_cos": [round(cos[k], 4) for k in convs],
                   "min_ratio": min(ratio.values()), "max_ratio": max(ratio.values())})


if __name__ == "__main__":
    main()
