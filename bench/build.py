"""Benchmark: build a network from ~10% of a big base's weights, against loading the whole base.

A base of about ``--mb`` megabytes (ten square Dense layers) is registered in a temporary store; then
``build_network(..., reuse="hidden1")`` (one layer of ten: ~10% of the weights, with a one-unit linear
head) and ``ModelStore.load`` are each timed

- cold: the base file evicted from the page cache first (``posix_fadvise(DONTNEED)``, where available);
- warm: the file in the page cache (after a warm-up run of each).

Reported figures are the best of ``--repeats`` runs; the ratio build/load is the figure the issue asks
for (target: at most about 0.2).

    python bench/build.py --out bench/out/build.json            # 500 MB base
    python bench/build.py --mb 50 --repeats 2 --out /tmp/b.json  # quick run
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _pagecache import evict  # noqa: E402  (bench/ is on sys.path when run as a script)

from reuse.build import build_network  # noqa: E402
from reuse.store import ModelStore  # noqa: E402

N_LAYERS = 10
TARGET_RATIO = 0.2


def make_base(mb: float) -> tuple[keras.Model, int]:
    width = int(math.sqrt(mb * 2**20 / 4 / N_LAYERS))
    layers = [keras.Input((width,), name="features")]
    layers += [
        keras.layers.Dense(width, activation="relu", name=f"hidden{i}") for i in range(1, N_LAYERS + 1)
    ]
    model = keras.Sequential(layers, name="big")
    # cheaper than Keras' initialisers at this size, and just as incompressible
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.standard_normal(w.shape, dtype=np.float32) for w in layer.get_weights()])
    return model, width


def timed(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    keras.backend.clear_session()
    gc.collect()
    return elapsed


def summary(runs: list[float]) -> dict[str, object]:
    return {"best": min(runs), "median": statistics.median(runs), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write.")
    ap.add_argument("--mb", type=float, default=500.0, help="Size of the base's weights in MB (default 500).")
    ap.add_argument("--repeats", type=int, default=3, help="Timed runs per case (best is reported).")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="reuse-bench-") as tmp:
        store = ModelStore(Path(tmp) / "store")
        t0 = time.perf_counter()
        model, width = make_base(args.mb)
        info = store.register(model, "base")
        setup_s = time.perf_counter() - t0
        total_params = model.count_params()
        selected_params = width * width + width
        del model
        keras.backend.clear_session()
        gc.collect()
        path = info.path
        file_bytes = path.stat().st_size

        def build():
            return build_network(store, "base", "hidden1", regression=True, seed=0).model

        def load():
            return store.load("base")

        cases = {"build": build, "load": load}
        cold: dict[str, list[float]] = {k: [] for k in cases}
        warm: dict[str, list[float]] = {k: [] for k in cases}
        can_evict = evict(path)
        for fn in cases.values():  # warm-up (also imports and traces whatever runs once)
            timed(fn)
        for _ in range(args.repeats):
            for name, fn in cases.items():
                if can_evict:
                    evict(path)
                    cold[name].append(timed(fn))
                warm[name].append(timed(fn))

    result = {
        "benchmark": "build from ~10% of a base vs full load",
        "mb_requested": args.mb,
        "file_bytes": file_bytes,
        "layers": N_LAYERS,
        "width": width,
        "params_total": int(total_params),
        "params_selected": int(selected_params),
        "selected_fraction": selected_params / total_params,
        "setup_s": setup_s,
        "repeats": args.repeats,
        "warm": {"build_s": summary(warm["build"]), "load_s": summary(warm["load"]),
                 "ratio": min(warm["build"]) / min(warm["load"])},
        "cold": ({"build_s": summary(cold["build"]), "load_s": summary(cold["load"]),
                  "ratio": min(cold["build"]) / min(cold["load"])} if can_evict else None),
        "target_ratio": TARGET_RATIO,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    ratios = [result["warm"]["ratio"]] + ([result["cold"]["ratio"]] if result["cold"] else [])
    result["meets_target"] = all(r <= TARGET_RATIO for r in ratios)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for mode in ("cold", "warm"):
        r = result[mode]
        if r:
            print(f"{mode}: build {r['build_s']['best']:.3f} s, full load {r['load_s']['best']:.3f} s, "
                  f"ratio {r['ratio']:.3f} (target <= {TARGET_RATIO})")
    print(f"base {result['file_bytes'] / 2**20:.0f} MiB file, {result['selected_fraction']:.1%} of weights "
          f"selected; wrote {args.out}")


if __name__ == "__main__":
    main()
