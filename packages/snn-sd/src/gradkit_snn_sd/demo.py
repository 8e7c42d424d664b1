"""``gradkit demo snn-sd``: BPTT vs rate-BP vs rate-BP + self-distillation on scikit-learn digits."""

from __future__ import annotations

from typing import Any


def run_demo(ctx: Any) -> dict[str, Any]:
    import torch
    from gradkit.data import load_digits, split

    from .experiment import saved_bytes, train_and_eval

    torch.set_num_threads(1)
    x, y = load_digits()
    x = x * 2.0  # input currents in [0, 2]
    data = split(x, y, 0.2, seed=ctx.seed)
    T, epochs = 4, 3
    results: dict[str, Any] = {}
    accs = {}
    for method in ctx.progress(["bptt", "rate-bp-m", "rate-bp-m+sd"], desc="train"):
        r = train_and_eval(method, data, T=T, epochs=epochs, seed=ctx.seed)
        ctx.log(f"{method}: test acc {100 * r['acc']:.2f} %, {r['s_per_epoch']:.1f} s/epoch (T={T}, {epochs} epochs)")
        accs[method] = r["acc"]
        results[f"acc_{method}"] = round(100 * r["acc"], 2)
        results[f"s_per_epoch_{method}"] = round(r["s_per_epoch"], 2)
    xb, yb = data[0][:64], data[1][:64]
    mem = {m: {} for m in ("bptt", "rate-bp-m")}
    Ts = (1, 2, 4, 8)
    for m in mem:
        for t in Ts:
            mem[m][t] = saved_bytes(m, t, xb, yb) / 2**20
    results["saved_MB_bptt_T1"] = round(mem["bptt"][1], 3)
    results["saved_MB_bptt_T8"] = round(mem["bptt"][8], 3)
    results["saved_MB_ratebp_T1"] = round(mem["rate-bp-m"][1], 3)
    results["saved_MB_ratebp_T8"] = round(mem["rate-bp-m"][8], 3)
    ctx.log("autograd-saved MB, batch 64: " + ", ".join(f"{m} " + "/".join(f"{mem[m][t]:.2f}" for t in Ts) for m in mem)
            + f" for T={Ts}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return results
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    names = list(accs)
    axes[0].bar(names, [100 * accs[n] for n in names], color=["tab:gray", "tab:blue", "tab:green"])
    axes[0].set_ylim(80, 100)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title(f"digits, T={T}, {epochs} epochs")
    for m, c in zip(mem, ["tab:gray", "tab:blue"]):
        axes[1].plot(Ts, [mem[m][t] for t in Ts], "o-", color=c, label=m)
    axes[1].set_xlabel("T")
    axes[1].set_ylabel("autograd-saved MB (batch 64)")
    axes[1].legend()
    ctx.save_figure(fig, "snn_sd_demo.png")
    return results
