"""Benchmark skeleton: the method and its baseline in one run, ratios, JSON lines out.

    OMP_NUM_THREADS=1 python packages/_template/benchmarks/bench_scale.py
"""

import json

import torch
from gradkit.metrics import timeit
from gradkit_template import GradScale


def main() -> None:
    torch.set_num_threads(1)
    model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(4)])
    x = torch.randn(64, 256)

    def step() -> None:
        model(x).sum().backward()

    base = timeit(step)
    with GradScale(model, factor=0.5):
        ours = timeit(step)
    print(json.dumps({"bench": "template-scale", "plain_s": base["median_s"], "scaled_s": ours["median_s"],
                      "ratio": ours["median_s"] / base["median_s"]}))


if __name__ == "__main__":
    main()
