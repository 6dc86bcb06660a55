"""``reuse rank`` against ``reuse advise`` on the same candidates: speed and agreement.

Task: the advisor benchmark's (bench/advise.py): new task digits 5-9 with 20 labelled images per class
(100 rows), scored on the test split's digits 5-9 (459 rows). Store: six bases of the advisor benchmark's
architecture (64 inputs -> hidden1..hidden5, 64 units, ReLU -> softmax), trained as bench/advise.py trains
its base (60 epochs of Adam, seed 0), on source tasks of graded relatedness:

- ``digits04``: digits 0-4 (the advisor benchmark's own base);
- ``digits10``: all ten digits (has seen the new classes);
- ``digits-odd``: the odd digits 1, 3, 5, 7, 9 (has seen three of the five new classes);
- ``digits04-perm``: digits 0-4 with the pixels in a fixed random order;
- ``digits-randlab``: all ten digits with random labels;
- ``untrained``: never trained.

Candidates: every cut of every base, depths 1-5 (30). ``rank``: :func:`reuse.rank.rank` over the store (the
default rule, LogME + k-NN by mean position; the baseline and all six feature passes included), timed after
one warm-up call, ``--repeat`` times before and as many after the advice, median of all. ``advise``:
:func:`reuse.advise.advise` on each base with the same depths 1-5 (frozen, and frozen then fine-tuned),
``--seeds`` seeds, early stopping, ``--lr``, as bench/advise.py runs it; timed from the first call to the
last return, after a warm-up.

Reported: (a) the seconds of each and their ratio (target >= 50x), also against the frozen runs alone
(what the scores predict: a head on frozen features); (b) Kendall's tau between the rank order and the
advisor's mean validation accuracy of each candidate, frozen (target >= 0.6) and fine-tuned, and the same
tau for each score alone and for each combination (the evidence behind the default rule); (c) whether the
top-ranked candidate's frozen accuracy is within the advisor's seed noise of the best frozen candidate
(the advisor's own rule: the larger of the two standard deviations, at least its minimum margin).

Usage: python bench/rank.py --out bench/out/rank.json [--seeds 3] [--repeat 3] [--lr 0.01]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

from reuse.advise import AdviseConfig, advise  # noqa: E402
from reuse.data import Dataset, load_data  # noqa: E402
from reuse.rank import rank  # noqa: E402
from reuse.rank.result import Scored, order  # noqa: E402
from reuse.store import ModelStore  # noqa: E402
from reuse.train import TrainConfig, train  # noqa: E402

NEW_DATA = "builtin:digits?classes=5-9&relabel=1&per_class=20"
NEW_VAL = "builtin:digits?classes=5-9&relabel=1&split=test"
DEPTHS = "1..5"


def _mlp(n_out: int, name: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((64,), name="features")]
    layers += [keras.layers.Dense(64, activation="relu", name=f"hidden{i}") for i in range(1, 6)]
    layers.append(keras.layers.Dense(n_out, activation="softmax", name="output"))
    return keras.Sequential(layers, name=name)


def make_store(store: ModelStore) -> dict[str, str]:
    """The six bases (module docstring); returns name -> what it was trained on."""
    first, every = load_data("builtin:digits?classes=0-4"), load_data("builtin:digits")
    odd = load_data("builtin:digits?classes=1,3,5,7,9&relabel=1")
    perm = np.random.default_rng(5).permutation(64)
    noise = np.random.default_rng(1).integers(0, 10, len(every.y))
    sources = {
        "digits04": (first.x, first.y, 5, "digits 0-4"),
        "digits10": (every.x, every.y, 10, "digits 0-9"),
        "digits-odd": (odd.x, odd.y, 5, "digits 1,3,5,7,9"),
        "digits04-perm": (first.x[:, perm], first.y, 5, "digits 0-4, pixels permuted"),
        "digits-randlab": (every.x, noise, 10, "digits 0-9 with random labels"),
    }
    what = {}
    for name, (x, y, k, text) in sources.items():
        model = _mlp(k, name)
        train(model, Dataset(x, y, text), TrainConfig(epochs=60, seed=0))
        store.register(model, name, description=text)
        what[name] = text
    store.register(_mlp(5, "untrained"), "untrained", description="never trained")
    what["untrained"] = "never trained"
    return what


def _load() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _tau(a: list[float], b: list[float]) -> float:
    return round(float(kendalltau(a, b).statistic), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="Write the results as JSON here.")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--repeat", type=int, default=3, help="Time rank this many times (median).")
    args = ap.parse_args()
    config = AdviseConfig(seeds=args.seeds, epochs=args.epochs, patience=args.patience, lr=args.lr)
    data, val = load_data(NEW_DATA), load_data(NEW_VAL)
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(Path(tmp) / "store")
        bases = make_store(store)
        names = list(bases)
        # Warm-up: one small call of each path, so neither pays process-wide start-up costs.
        rank(store, data, models="untrained")
        tiny = AdviseConfig(seeds=1, epochs=2, patience=2)
        advise(store, "untrained", data, val=val, depths="1", config=tiny)

        rank_times, loads = [], []

        def timed_rank():
            loads.append(_load())
            t0 = time.perf_counter()
            got = rank(store, data)
            rank_times.append(time.perf_counter() - t0)
            return got

        # rank is timed before and after the advice (the load of a shared machine drifts), median of all.
        for _ in range(args.repeat):
            ranking = timed_rank()
        loads.append(_load())
        t0 = time.perf_counter()
        advices = {n: advise(store, n, data, val=val, depths=DEPTHS, config=config) for n in names}
        advise_s = time.perf_counter() - t0
        for _ in range(args.repeat):
            timed_rank()
        loads.append(_load())

    rank_s = statistics.median(rank_times)
    frozen, tuned = {}, {}
    frozen_s = 0.0
    for n, a in advices.items():
        for r in a.rows:
            (tuned if r.candidate.finetune else frozen)[(n, r.candidate.depth)] = r
            if not r.candidate.finetune:
                frozen_s += r.seconds * len(r.scores)
    cands = ranking.candidates
    best_key = max(frozen, key=lambda k: frozen[k].mean)
    best = frozen[best_key]
    margin = max(0.005, 1.0 / len(val))

    def within(r) -> bool:
        """The advisor's noise rule: within the larger std of the two (at least its minimum margin)."""
        return bool(best.mean - r.mean <= max(best.std, r.std, margin))

    keys = [(c.model, c.depth) for c in cands]
    ours = [-c.rank for c in cands]
    acc_f = [frozen[k].mean for k in keys]
    acc_t = [tuned[k].mean for k in keys]
    per_rule = {}
    for size in (1, 2, 3):
        for rule in combinations(ranking.scores, size):
            entries = [Scored(c.model, c.version, c.depth, c.scope, c.layers, c.params, c.width, c.scores,
                              0.0) for c in [*cands, ranking.baseline]]
            ranked = {(e.model, e.depth): e.rank for e in order(entries, rule)}
            first = min((k for k in keys), key=lambda k: ranked[k])
            per_rule["+".join(rule)] = {"frozen": _tau([-ranked[k] for k in keys], acc_f),
                                        "fine_tuned": _tau([-ranked[k] for k in keys], acc_t),
                                        "top": f"{first[0]} depth {first[1]}",
                                        "top_within_noise": within(frozen[first])}
    top = frozen[keys[0]]
    noise = max(best.std, top.std, margin)
    runs = sum(len(r.scores) for a in advices.values() for r in a.rows)
    settings = {"seeds": args.seeds, "epochs": args.epochs, "patience": args.patience, "lr": args.lr,
                "finetune": True, "runs": runs}
    result = {
        "task": {"data": NEW_DATA, "val": NEW_VAL, "samples": len(data), "val_samples": len(val),
                 "depths": DEPTHS, "bases": bases, "candidates": len(cands), "advise": settings},
        "seconds": {"rank": round(rank_s, 3), "rank_each": [round(t, 3) for t in rank_times],
                    "advise": round(advise_s, 2), "advise_frozen_runs": round(frozen_s, 2)},
        "speedup": round(advise_s / rank_s, 1),
        "speedup_vs_frozen_runs": round(frozen_s / rank_s, 1),
        "kendall_tau": {"rule": list(ranking.metric), "frozen": _tau(ours, acc_f),
                        "fine_tuned": _tau(ours, acc_t), "by_rule": per_rule},
        "top": {"ranked_first": f"{keys[0][0]} depth {keys[0][1]}", "its_frozen_accuracy": round(top.mean, 4),
                "its_std": round(top.std, 4), "best_frozen": f"{best_key[0]} depth {best_key[1]}",
                "best_frozen_accuracy": round(best.mean, 4), "best_std": round(best.std, 4),
                "noise": round(noise, 4), "within_noise": within(top)},
        "baseline": {"rank": ranking.baseline.rank, "scores": ranking.baseline.scores},
        "candidates": [{"model": c.model, "depth": c.depth, "rank": c.rank, "scores": c.scores,
                        "frozen": round(frozen[(c.model, c.depth)].mean, 4),
                        "frozen_std": round(frozen[(c.model, c.depth)].std, 4),
                        "fine_tuned": round(tuned[(c.model, c.depth)].mean, 4)} for c in cands],
        "advice": {n: (a.recommendation.choice.candidate.label if a.recommendation else None)
                   for n, a in advices.items()},
        "machine": {"python": platform.python_version(), "keras": keras.__version__,
                    "backend": keras.backend.backend(), "cpus": os.cpu_count(),
                    "load_1min_before_each_rank_and_advise": loads},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    t, tau = result["top"], result["kendall_tau"]
    print(f"rank {rank_s:.2f} s vs advise {advise_s:.1f} s on the same {len(cands)} candidates: "
          f"{result['speedup']}x ({result['speedup_vs_frozen_runs']}x vs its frozen runs alone); Kendall tau "
          f"{tau['frozen']} (frozen), {tau['fine_tuned']} (fine-tuned); top-ranked {t['ranked_first']} "
          f"{t['its_frozen_accuracy']} vs best {t['best_frozen']} {t['best_frozen_accuracy']} "
          f"(noise {t['noise']}): within noise {t['within_noise']}; load {loads}")


if __name__ == "__main__":
    main()
