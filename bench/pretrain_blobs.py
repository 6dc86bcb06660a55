"""Greedy layer-wise pretraining on the classic blobs problem, over seeds: what makes it stable.

The experiment: make_blobs (1000 samples, 3 centres, 2 features, std 2.0), 500/500 split, hidden
layers of 10 relu units (he_uniform), SGD lr 0.01 momentum 0.9, 100 epochs per phase, batch 32,
up to 6 hidden layers. Published figures: about 0.82-0.85 train and 0.82-0.84 test accuracy at every
depth. For each recipe and seed it records train/test accuracy per depth; a depth is "healthy" when
its test accuracy is at least --healthy (default 0.75; chance is 0.33) and nothing is NaN.

Recipes (unsupervised unless named supervised):
  published       raw inputs, no gradient clipping (the recipe as published)
  clip            raw inputs, autoencoder gradients clipped to norm 1
  scale           standardised inputs (a frozen Normalization layer), no clipping
  adam            standardised inputs, Adam (lr 0.001) for the autoencoders, no clipping
  adam_clip       standardised inputs, Adam (lr 0.001) and clipping for the autoencoders
  default         standardised inputs and clipping: reuse's defaults
  supervised      supervised greedy pretraining with reuse's defaults

Usage: python bench/pretrain_blobs.py --out bench/out/pretrain_blobs.json [--seeds 10] [--layers 6]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reuse.data import load_data  # noqa: E402
from reuse.train.pretrain import PretrainConfig, pretrain  # noqa: E402

RECIPES = {
    "published": {"mode": "unsupervised", "scale": False, "ae_clipnorm": None},
    "clip": {"mode": "unsupervised", "scale": False, "ae_clipnorm": 1.0},
    "scale": {"mode": "unsupervised", "scale": True, "ae_clipnorm": None},
    "adam": {"mode": "unsupervised", "ae_optimizer": "adam", "ae_lr": 0.001, "ae_clipnorm": None},
    "adam_clip": {"mode": "unsupervised", "ae_optimizer": "adam", "ae_lr": 0.001},
    "default": {"mode": "unsupervised"},
    "supervised": {"mode": "supervised"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--healthy", type=float, default=0.75)
    ap.add_argument("--recipes", default=",".join(RECIPES))
    args = ap.parse_args()
    train, test = load_data("builtin:blobs"), load_data("builtin:blobs?split=test")
    out: dict = {"settings": vars(args), "recipes": {}}
    for name in args.recipes.split(","):
        runs = []
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            cfg = PretrainConfig(layers=args.layers, units=10, epochs=args.epochs, seed=seed, **RECIPES[name])
            res = pretrain(train, cfg, test=test)
            rows = [r.to_dict() for r in res.table]
            runs.append({"seed": seed, "depths": rows})
        seconds = time.perf_counter() - t0
        summary = _summary(runs, args.layers, args.healthy)
        out["recipes"][name] = {"config": RECIPES[name], "seconds": seconds, "summary": summary, "runs": runs}
        print(f"{name:>10}: healthy {summary['healthy_runs']}/{args.seeds} runs at every depth; "
              f"test accuracy per depth (mean/min): "
              + " ".join(f"{d['depth']}:{d['test_mean']:.3f}/{d['test_min']:.3f}" for d in summary["depths"])
              + f"; NaN runs {summary['nan_runs']}; {seconds:.0f} s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


def _bad(v: float | None) -> bool:
    return v is None or not math.isfinite(v)


def _summary(runs: list[dict], layers: int, healthy: float) -> dict:
    depths = []
    for d in range(layers):
        tr = [r["depths"][d]["train_accuracy"] for r in runs]
        te = [r["depths"][d]["test_accuracy"] for r in runs]
        depths.append({"depth": d + 1, "train_mean": sum(tr) / len(tr), "train_min": min(tr),
                       "test_mean": sum(te) / len(te), "test_min": min(te),
                       "healthy": sum(1 for v in te if v >= healthy)})
    ok = [all(row["test_accuracy"] >= healthy and not _bad(row["train_loss"])
              and (row.get("reconstruction") is None or not _bad(row["reconstruction"]))
              for row in r["depths"]) for r in runs]
    nan = [
        any(
            _bad(row["train_loss"]) or (row.get("reconstruction") is not None and _bad(row["reconstruction"]))
            for row in r["depths"]
        )
        for r in runs
    ]
    return {"depths": depths, "healthy_runs": sum(ok), "nan_runs": sum(nan)}


if __name__ == "__main__":
    main()
