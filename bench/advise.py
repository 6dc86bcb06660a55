"""Advisor speed: a full advice run against the same candidates trained one after another with Keras fit.

Task: the base is a 64-64-64-64-64-64-5 MLP (hidden1..hidden5, output) trained on digits 0-4 (train
split); the new task is digits 5-9 with 20 labelled images per class (100 samples), scored on the test
split's digits 5-9. Candidates: depths 0-3, each frozen and frozen-then-fine-tuned (7 candidates), over
3 seeds (21 runs); at most 200 epochs per phase, early stopping with patience 10 on the validation loss
(best weights kept), batch 32, Adam at 1e-2 (fine-tuning at 1e-3; at the default 1e-3 most runs would
use every epoch without converging).

``advise``: :func:`reuse.advise.advise` (compiled loop, frozen-feature cache shared between runs of the
same depth, the frozen phase shared by the fine-tuned candidate), timed from the call to its return.
``fit``: the same networks (built the same way, same initial weights) trained with ``model.compile`` and
``model.fit(..., validation_data=val, callbacks=[EarlyStopping(monitor="val_loss", patience=10,
restore_best_weights=True)])``; fine-tuning unfreezes the reused layers, recompiles at a tenth of the rate
and fits again; scored with ``model.evaluate`` on the validation data. Both paths run in this process
after a small warm-up of each; the recommendation of each comes from the same statistical rule.

``--ray`` (needs the ray extra) measures the engines instead of Keras fit: the same advice on
``--jobs`` local worker processes and on a local Ray instance with as many CPUs (``ray="local"``: the
instance is started and stopped inside the timed call, as ``reuse advise --ray local`` does), and the
runs per second with 1 and with ``--jobs`` workers on each engine: Ray with 1 and ``--jobs`` tasks in
flight (one CPU, one thread each), local processes with ``--jobs 1`` (which trains in the calling
process, with its threads, as ``reuse advise --jobs 1`` does) and ``--jobs`` worker processes (cores /
jobs threads each). Every timed advice with workers starts fresh ones on both engines (each imports
TensorFlow once). Last, the ``--jobs`` advice on a Ray instance that is already running (started before
the timed calls, its workers started by one untimed advice), as on a cluster. ``--repeat N`` times each
configuration N times (round-robin) and reports the median; every time and the 1-minute load before it
are in the JSON.

Usage: python bench/advise.py --out bench/out/advise.json [--jobs 2] [--seeds 3] [--epochs 200] [--lr 0.01]
       python bench/advise.py --ray --jobs 2 [--repeat 3] --out bench/out/advise-ray.json
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

import keras  # noqa: E402

from reuse.advise import AdviseConfig, CandidateResult, advise, recommend  # noqa: E402
from reuse.advise.plan import plan_candidates  # noqa: E402
from reuse.advise.runner import Job, Unit, UnitContext, build_candidate  # noqa: E402
from reuse.data import Dataset, load_data  # noqa: E402
from reuse.store import ModelStore  # noqa: E402
from reuse.train import TrainConfig, make_optimizer, train  # noqa: E402

BASE_DATA = "builtin:digits?classes=0-4"
NEW_DATA = "builtin:digits?classes=5-9&relabel=1&per_class=20"
NEW_VAL = "builtin:digits?classes=5-9&relabel=1&split=test"


def make_base(store: ModelStore) -> str:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((64,), name="features")]
    layers += [keras.layers.Dense(64, activation="relu", name=f"hidden{i}") for i in range(1, 6)]
    layers.append(keras.layers.Dense(5, activation="softmax", name="output"))
    model = keras.Sequential(layers, name="digits04")
    train(model, load_data(BASE_DATA), TrainConfig(epochs=60, seed=0))
    return store.register(model, "digits04", class_names=[str(i) for i in range(5)]).ref


def fit_candidates(store: ModelStore, base: str, data: Dataset, val: Dataset, depths: str,
                   config: AdviseConfig) -> tuple[float, list[CandidateResult]]:
    """The same candidates, one after another, with plain Keras compile + fit."""
    from reuse.advise import Candidate

    plan = plan_candidates(store, base, depths=depths)
    cfg = config.train_config()
    job = Job(plan.base, "", 5, False, "full", cfg, cfg.learning_rate / 10, "val_accuracy")
    ctx = UnitContext(store, data, val)
    scores: dict[Candidate, list[float]] = {}
    epochs: dict[Candidate, list[int]] = {}
    t0 = time.perf_counter()
    for seed in config.seed_list:
        for depth in plan.depths:
            model, lineage = build_candidate(ctx, job, Unit(depth, plan.plans[depth].scope, seed, False))
            keras.utils.set_random_seed(seed)
            score, n = _fit(model, data, val, cfg, cfg.learning_rate)
            scores.setdefault(Candidate(depth), []).append(score)
            epochs.setdefault(Candidate(depth), []).append(n)
            if depth and config.finetune:
                for layer in model.layers:
                    layer.trainable = True
                score, more = _fit(model, data, val, cfg, job.finetune_lr)
                scores.setdefault(Candidate(depth, True), []).append(score)
                epochs.setdefault(Candidate(depth, True), []).append(n + more)
    seconds = time.perf_counter() - t0
    rows = [CandidateResult(c, tuple(s), extra={"epochs_run": epochs[c]})
            for c, s in sorted(scores.items(), key=lambda kv: kv[0].complexity)]
    return seconds, rows


def _fit(model: keras.Model, data: Dataset, val: Dataset, cfg: TrainConfig, lr: float) -> tuple[float, int]:
    model.compile(optimizer=make_optimizer(cfg.with_(lr=lr)), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.early_stopping,
                                         restore_best_weights=True)
    hist = model.fit(data.x, data.y, batch_size=cfg.batch_size, epochs=cfg.epochs,
                     validation_data=(val.x, val.y), callbacks=[stop], verbose=0, shuffle=True)
    return float(model.evaluate(val.x, val.y, verbose=0, return_dict=True)["accuracy"]), len(
        hist.history["loss"]
    )


def _epochs(rows: list[CandidateResult]) -> int:
    # A fine-tuned candidate's count includes its frozen phase, which the frozen candidate already trained.
    return sum(sum(r.extra["epochs_run"]) for r in rows if not r.candidate.finetune) + sum(
        sum(r.extra["epochs_run"]) - sum(f.extra["epochs_run"]) for r in rows if r.candidate.finetune
        for f in rows if f.candidate == type(r.candidate)(r.candidate.depth))


def _load() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def table(rows: list[CandidateResult]) -> list[dict]:
    return [{"candidate": r.candidate.label, "mean": round(r.mean, 4), "std": round(r.std, 4),
             "scores": [round(s, 4) for s in r.scores], "epochs_run": list(r.extra.get("epochs_run", []))}
            for r in rows]


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def ray_main(args: argparse.Namespace, depths: str) -> None:
    """``--ray``: the same advice on local worker processes and on a local Ray instance, each with 1 and
    with ``--jobs`` workers; every configuration ``--repeat`` times, round-robin (so a change in the load of
    the machine falls on all of them), summarised by the median."""
    from reuse.advise.ray_schedule import connected
    from reuse.advise.schedule import cores

    jobs = max(2, args.jobs)
    configs = {"local_1": {"jobs": 1}, f"local_{jobs}": {"jobs": jobs},
               "ray_1": {"jobs": 1, "ray": "local"}, f"ray_{jobs}": {"jobs": jobs, "ray": "local"}}

    def timed(store: ModelStore, base: str, data: Dataset, val: Dataset, **kw: object) -> dict:
        config = AdviseConfig(seeds=args.seeds, epochs=args.epochs, patience=args.patience, lr=args.lr, **kw)
        load = _load()
        t0 = time.perf_counter()
        advice = advise(store, base, data, val=val, depths=depths, config=config)
        seconds = time.perf_counter() - t0
        runs = sum(len(r.scores) for r in advice.rows)
        rec = advice.recommendation
        return {"seconds": round(seconds, 2), "runs": runs, "runs_per_s": round(runs / seconds, 3),
                "recommendation": rec.choice.candidate.label if rec else None, "load_1min_before": load,
                "failed": [w for w in advice.warnings if " failed: " in w]}

    tries: dict[str, list[dict]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(Path(tmp) / "store")
        base = make_base(store)
        data, val = load_data(NEW_DATA), load_data(NEW_VAL)
        advise(store, base, data, val=val, depths="1", config=AdviseConfig(seeds=1, epochs=2, patience=2,
                                                                           finetune=False))
        for i in range(args.repeat):
            for name, kw in configs.items():
                tries[name].append(timed(store, base, data, val, **kw))
                print(f"[{i + 1}/{args.repeat}] {name}: {tries[name][-1]['seconds']:.1f} s "
                      f"(load {tries[name][-1]['load_1min_before']})", flush=True)
        # A Ray instance that is already running (as a cluster is): started once, outside the timed calls,
        # with one untimed advice first that starts its workers; the advice then uses it as it is.
        running = f"ray_{jobs}_running"
        tries[running] = []
        with connected("local", cores()):
            timed(store, base, data, val, jobs=jobs, ray="local")
            for i in range(args.repeat):
                tries[running].append(timed(store, base, data, val, jobs=jobs, ray="local"))
                print(f"[{i + 1}/{args.repeat}] {running}: {tries[running][-1]['seconds']:.1f} s "
                      f"(load {tries[running][-1]['load_1min_before']})", flush=True)
        configs[running] = {"jobs": jobs, "ray": "a running local instance"}

    def summary(name: str) -> dict:
        t = tries[name]
        seconds = _median([x["seconds"] for x in t])
        return {**configs[name], "seconds": round(seconds, 2), "runs": t[0]["runs"],
                "runs_per_s": round(t[0]["runs"] / seconds, 3), "recommendation": t[0]["recommendation"],
                "seconds_each": [x["seconds"] for x in t],
                "load_1min_before_each": [x["load_1min_before"] for x in t],
                "failed": sorted({w for x in t for w in x["failed"]})}

    s = {name: summary(name) for name in configs}
    local, local_one, on_ray, ray_one = s[f"local_{jobs}"], s["local_1"], s[f"ray_{jobs}"], s["ray_1"]

    def scaling(one: dict, many: dict) -> dict:
        return {"1": one["runs_per_s"], str(jobs): many["runs_per_s"],
                "ratio": round(many["runs_per_s"] / one["runs_per_s"], 2)}

    result = {
        "task": {"base": BASE_DATA, "data": NEW_DATA, "val": NEW_VAL, "depths": depths, "finetune": True,
                 "seeds": args.seeds, "epochs": args.epochs, "patience": args.patience, "lr": args.lr},
        "repeat": args.repeat,
        "local_processes": local, "ray_local": on_ray,
        "ray_overhead": round(on_ray["seconds"] / local["seconds"] - 1.0, 3),
        "ray_scaling_runs_per_s": scaling(ray_one, on_ray),
        "ray_one_task": ray_one,
        # The instance's start and stop and the workers' start-up (TensorFlow imports) left out.
        "ray_running_instance": s[running],
        "ray_running_overhead": round(s[running]["seconds"] / local["seconds"] - 1.0, 3),
        # --jobs 1 trains in the calling process (as `reuse advise --jobs 1` does): no worker start-up.
        "local_one_process": local_one,
        "local_scaling_runs_per_s": scaling(local_one, local),
        "machine": {"python": platform.python_version(), "keras": keras.__version__,
                    "backend": keras.backend.backend(), "cores": cores(), "cpus": os.cpu_count(),
                    "load_1min_after": _load()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{local['runs']} runs (median of {args.repeat}): local processes ({jobs}) "
          f"{local['seconds']:.1f} s; Ray ({jobs} CPUs, start and stop included) {on_ray['seconds']:.1f} s: "
          f"overhead {100 * result['ray_overhead']:+.1f}% (on a running instance "
          f"{s[running]['seconds']:.1f} s: {100 * result['ray_running_overhead']:+.1f}%); runs/s 1 -> {jobs} "
          f"workers: local {local_one['runs_per_s']:.3f} -> {local['runs_per_s']:.3f}, Ray "
          f"{ray_one['runs_per_s']:.3f} -> {on_ray['runs_per_s']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="Write the results as JSON here.")
    ap.add_argument("--jobs", type=int, default=1, help="Worker processes for the advice run.")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--ray", action="store_true", help="Local processes against a local Ray instance.")
    ap.add_argument("--repeat", type=int, default=1,
                    help="With --ray: time each configuration this many times.")
    args = ap.parse_args()
    depths = "0..3"
    if args.ray:
        return ray_main(args, depths)
    config = AdviseConfig(seeds=args.seeds, epochs=args.epochs, patience=args.patience, lr=args.lr,
                          jobs=args.jobs)
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(Path(tmp) / "store")
        base = make_base(store)
        data, val = load_data(NEW_DATA), load_data(NEW_VAL)
        # Warm-up: one tiny run of each path, so neither pays process-wide start-up costs.
        tiny = AdviseConfig(seeds=1, epochs=2, patience=2, finetune=False)
        advise(store, base, data, val=val, depths="1", config=tiny)
        fit_candidates(store, base, data, val, "1", tiny)

        load = [_load()]
        t0 = time.perf_counter()
        advice = advise(store, base, data, val=val, depths=depths, config=config)
        advise_s = time.perf_counter() - t0
        load.append(_load())
        fit_s, fit_rows = fit_candidates(store, base, data, val, depths, config)
        load.append(_load())
    fit_rec = recommend(fit_rows, min_margin=max(0.005, 1.0 / len(val)))
    rec = advice.recommendation
    result = {
        "task": {
            "base": BASE_DATA,
            "data": NEW_DATA,
            "val": NEW_VAL,
            "samples": len(data),
            "val_samples": len(val),
            "depths": depths,
            "finetune": True,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "patience": args.patience,
            "lr": args.lr,
            "batch_size": config.batch_size,
            "runs": sum(len(r.scores) for r in advice.rows),
        },
        "advise": {
            "seconds": round(advise_s, 2),
            "jobs": args.jobs,
            "recommendation": rec.choice.candidate.label,
            "reason": rec.reason,
            "table": table(advice.rows),
        },
        "fit": {
            "seconds": round(fit_s, 2),
            "recommendation": fit_rec.choice.candidate.label,
            "reason": fit_rec.reason,
            "table": table(fit_rows),
        },
        "speedup": round(fit_s / advise_s, 2),
        # Early stopping ends runs at different epochs on the two paths (different shuffles on a slowly
        # falling validation loss), so compare the time per epoch trained too.
        "epochs_trained": {"advise": _epochs(advice.rows), "fit": _epochs(fit_rows)},
        "speedup_per_epoch": round((fit_s / _epochs(fit_rows)) / (advise_s / _epochs(advice.rows)), 2),
        "machine": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "cpus": os.cpu_count(),
            "load_1min_before_advise_fit_end": load,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"advise: {advise_s:.1f} s ({rec.choice.candidate.label}); Keras fit one after another: "
          f"{fit_s:.1f} s ({fit_rec.choice.candidate.label}); {fit_s / advise_s:.1f}x "
          f"({result['speedup_per_epoch']}x per epoch)")


if __name__ == "__main__":
    main()
