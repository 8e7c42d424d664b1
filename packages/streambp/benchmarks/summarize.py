"""Markdown tables for the README from ``results/memory.jsonl`` (and ``results/smollm2.jsonl`` if present).

    python benchmarks/summarize.py benchmarks/results
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results")
    rows = [json.loads(line) for line in (root / "memory.jsonl").read_text().splitlines() if line.strip()]
    by = {(r["method"], r["T"]): r for r in rows}
    Ts = sorted({r["T"] for r in rows})
    methods = ("plain", "checkpointing", "streambp")

    def cell(m, T, key, fmt):
        r = by.get((m, T))
        if r is None or key not in r:
            return "skipped (over budget)" if r is not None and "skipped" in r else ("error" if r else "-")
        return fmt.format(r[key])

    print("| T | " + " | ".join(f"{m} saved MiB" for m in methods) + " | " + " | ".join(f"{m} peak RSS MiB" for m in methods)
          + " | " + " | ".join(f"{m} step s" for m in methods) + " |")
    print("|---" * (1 + 3 * len(methods)) + "|")
    for T in Ts:
        print(f"| {T} | " + " | ".join(cell(m, T, "saved_peak_mib", "{:.1f}") for m in methods) + " | "
              + " | ".join(cell(m, T, "peak_rss_delta_mib", "{:.0f}") for m in methods) + " | "
              + " | ".join(cell(m, T, "step_s", "{:.1f}") for m in methods) + " |")
    print()
    print("| T | StreamBP / ckpt saved peak | StreamBP / ckpt peak RSS | StreamBP / ckpt step time |")
    print("|---|---|---|---|")
    for T in Ts:
        c, s = by.get(("checkpointing", T)), by.get(("streambp", T))
        if c and s and "step_s" in c and "step_s" in s:
            print(f"| {T} | {s['saved_peak_mib'] / c['saved_peak_mib']:.3f} | {s['peak_rss_delta_mib'] / c['peak_rss_delta_mib']:.3f} "
                  f"| {s['step_s'] / c['step_s']:.2f} |")
    print()
    print("| budget (peak RSS delta) | " + " | ".join(methods) + " |")
    print("|---" * (1 + len(methods)) + "|")
    for gib in (0.5, 1.0, 2.0, 4.0):
        fits = []
        for m in methods:
            ok = [r["T"] for r in rows if r["method"] == m and "peak_rss_delta_mib" in r and r["peak_rss_delta_mib"] <= gib * 1024]
            tried = [r["T"] for r in rows if r["method"] == m and "peak_rss_delta_mib" in r]
            if not ok:
                fits.append(f"< {min(Ts)}")
            else:
                fits.append(f">= {max(ok)} (largest run)" if max(ok) == max(tried) and max(ok) == max(Ts) else str(max(ok)))
        print(f"| {gib} GiB | " + " | ".join(fits) + " |")
    smol = root / "smollm2.jsonl"
    if smol.exists():
        srows = [json.loads(line) for line in smol.read_text().splitlines() if line.strip()]
        print()
        print("| step | loss (ckpt) | loss (StreamBP) | saved MiB ckpt / StreamBP | peak RSS MiB ckpt / StreamBP | step s ckpt / StreamBP |")
        print("|---|---|---|---|---|---|")
        c = [r for r in srows if r["method"] == "checkpointing"]
        s = [r for r in srows if r["method"] == "streambp"]
        for a, b in zip(c, s):
            print(f"| {a['step']} | {a['loss']:.6f} | {b['loss']:.6f} | {a['saved_peak_mib']:.0f} / {b['saved_peak_mib']:.0f} | "
                  f"{a['peak_rss_delta_mib']:.0f} / {b['peak_rss_delta_mib']:.0f} | {a['step_s']:.0f} / {b['step_s']:.0f} |")


if __name__ == "__main__":
    main()
