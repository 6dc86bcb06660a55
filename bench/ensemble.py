"""Ensembles against the prediction problem: seeds of the advisor's choice, their averaged-output ensemble
and their weight average (model soup), on a small labelled set; and what each costs at serving time.

Task (as bench/advise.py): the base is a 64-64-64-64-64-64-5 MLP trained on digits 0-4 (train split); the
new task is digits 5-9 with 20 labelled images per class (100 samples). The test split's digits 5-9 are
divided (stratified, seed 0) into a validation half, which the advisor uses for early stopping and for its
choice, and a test half, used only for the figures here. The advisor tries depths 0-3, frozen and
fine-tuned, over ``--seeds`` seeds (default 5), and keeps the weights of every seed of its recommendation
(``keep_weights="seeds"``). Main figures: depths 1-3 only, so the recommendation is the best *reuse*
candidate; for comparison, the same for training from scratch (depth 0). The seeds are registered, then:

- ``ensemble``: their averaged-output ensemble (``reuse ensemble``: one graph, members nested);
- ``soup``: their weight average (``reuse ensemble --average-weights``).

Accuracy: each member's, the mean ± std (population) over members, the ensemble's and the soup's, on the
test half. Serving cost: inferences per second of ``CompiledForward`` (the server's compiled forward pass)
in this process, at batch 1 and 32, for one member, the ensemble and the soup, and relative to one member.

Usage: python bench/ensemble.py --out bench/out/ensemble.json [--seeds 5] [--epochs 200] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from advise import BASE_DATA, NEW_DATA, NEW_VAL, make_base  # noqa: E402

from reuse.advise import AdviseConfig, advise  # noqa: E402
from reuse.advise.register import register_ensemble_choice  # noqa: E402
from reuse.backend.compiled import CompiledForward  # noqa: E402
from reuse.data import Dataset, load_data, split_stratified  # noqa: E402
from reuse.ensemble import build_ensemble  # noqa: E402
from reuse.store import ModelStore  # noqa: E402
from reuse.train import evaluate  # noqa: E402


def throughput(model: object, rows: int, seconds: float) -> float:
    """Inferences (rows) per second of the compiled forward pass on batches of ``rows``."""
    fwd = CompiledForward(model)
    x = np.random.default_rng(0).random((rows, 64), dtype=np.float32)
    for _ in range(20):
        fwd([x])
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fwd([x])
        n += 1
    return n * rows / (time.perf_counter() - t0)


def measure(store: ModelStore, base: str, data: Dataset, val: Dataset, test: Dataset, depths: str,
            config: AdviseConfig, name: str) -> dict:
    """Advise over ``depths`` keeping every seed of the choice; register the seeds, their ensemble and
    their soup; each one's test accuracy."""
    t0 = time.perf_counter()
    advice = advise(store, base, data, val=val, depths=depths, config=config, keep_weights="seeds")
    seconds = time.perf_counter() - t0
    rec = advice.recommendation
    assert rec is not None
    ens = register_ensemble_choice(store, advice, name, data=NEW_DATA, val=None,
                                   class_names=list(data.class_names or []) or None)
    members = [f"{m['name']}:{m['version']}" for m in ens.lineage["members"]]
    built = build_ensemble(store, members, average=True, name=f"{name}-soup")
    assert built is not None
    soup = store.register(built.model, f"{name}-soup", lineage=built.lineage, class_names=ens.class_names)
    acc = {r: evaluate(store.load(r), test)["accuracy"] for r in [*members, ens.ref, soup.ref]}
    member_acc = np.array([acc[r] for r in members])
    return {
        "depths": depths, "candidate": rec.choice.candidate.label, "reason": rec.reason,
        "advise_seconds": round(seconds, 1),
        "test_accuracy": {
            "members": {r: round(acc[r], 4) for r in members},
            "member_mean": round(float(member_acc.mean()), 4),
            "member_std": round(float(member_acc.std()), 4), "member_min": round(float(member_acc.min()), 4),
            "member_max": round(float(member_acc.max()), 4), "ensemble": round(acc[ens.ref], 4),
            "soup": round(acc[soup.ref], 4),
        },
        "val_check": ens.metrics.get("ensemble_check"),
        "_models": {"member": store.load(members[0]), "ensemble": store.load(ens.ref),
                    "soup": store.load(soup.ref)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="Write the results as JSON here.")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seconds", type=float, default=2.0, help="Timing window per serving measurement.")
    args = ap.parse_args()
    config = AdviseConfig(seeds=args.seeds, epochs=args.epochs, patience=args.patience, lr=args.lr)
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(Path(tmp) / "store")
        base = make_base(store)
        data = load_data(NEW_DATA)
        test, val = split_stratified(load_data(NEW_VAL), 0.5, seed=0)  # val: the held-out half
        runs = {"reuse": measure(store, base, data, val, test, "1..3", config, "pick"),
                "scratch": measure(store, base, data, val, test, "0", config, "scratch")}
        models = runs["reuse"].pop("_models")
        runs["scratch"].pop("_models")
        serving = {k: {f"batch{b}": round(throughput(m, b, args.seconds), 1) for b in (1, 32)}
                   for k, m in models.items()}
    for k in ("ensemble", "soup"):
        for b in ("batch1", "batch32"):
            serving[k][f"{b}_relative_to_member"] = round(serving[k][b] / serving["member"][b], 3)
    result = {
        "task": {"base": BASE_DATA, "data": NEW_DATA,
                 "val_and_test": f"{NEW_VAL}, split in halves (stratified, "
                 "seed 0)", "samples": len(data), "val_samples": len(val), "test_samples": len(test),
                 "seeds": args.seeds, "epochs": args.epochs, "patience": args.patience, "lr": args.lr},
        "best_reuse_candidate": runs["reuse"],
        "scratch": runs["scratch"],
        "serving_inferences_per_s": serving,
        "params": {k: int(m.count_params()) for k, m in models.items()},
        "machine": {"python": platform.python_version(), "keras": keras.__version__,
                    "backend": keras.backend.backend(), "cpus": os.cpu_count(),
                    "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    for key, r in runs.items():
        t = r["test_accuracy"]
        print(f"{key}: {r['candidate']} x {args.seeds} seeds: members {t['member_mean']:.4f} ± "
              f"{t['member_std']:.4f}; ensemble {t['ensemble']:.4f}; soup {t['soup']:.4f}")
    print("serving (inferences/s, batch 1 / 32): " + "; ".join(
        f"{k} {v['batch1']} / {v['batch32']}" for k, v in serving.items()))

if __name__ == "__main__":
    main()
