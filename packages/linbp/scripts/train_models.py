"""Train the MNIST-5k source and victim models shipped in ``gradkit_linbp/assets`` (CPU, minutes).

    OMP_NUM_THREADS=1 python packages/linbp/scripts/train_models.py [--epochs 4] [--only vgg,res]

Data: ``gradkit.data.load_mnist5k()`` split 80/20 with ``gradkit.data.split(seed=0)`` (4000 train,
1000 test). Adam (lr 2e-3), batch 128, each model with its own seed (``models.SEEDS``). Writes
``<name>.pt`` (float32 state dict) and ``metrics.json`` (test accuracy, train seconds).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from gradkit.data import load_mnist5k, split
from gradkit_linbp.models import ASSETS, MODELS, SEEDS, build


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--only", default=",".join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    x, y = load_mnist5k()
    xtr, ytr, xte, yte = split(x, y, 0.2, seed=0)
    ASSETS.mkdir(exist_ok=True)
    mpath = ASSETS / "metrics.json"
    metrics = json.loads(mpath.read_text()) if mpath.exists() else {}
    for name in args.only.split(","):
        torch.manual_seed(SEEDS[name])
        model = build(name)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        t0 = time.time()
        g = torch.Generator().manual_seed(SEEDS[name])
        for _ in range(args.epochs):
            model.train()
            perm = torch.randperm(len(xtr), generator=g)
            for i in range(0, len(xtr), 128):
                idx = perm[i : i + 128]
                loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        secs = time.time() - t0
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        torch.save(model.state_dict(), ASSETS / f"{name}.pt")
        metrics[name] = {"test_acc": round(acc, 4), "train_s": round(secs, 1), "epochs": args.epochs,
                         "params": sum(p.numel() for p in model.parameters())}
        print(name, metrics[name], flush=True)
        mpath.write_text(json.dumps(metrics, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
