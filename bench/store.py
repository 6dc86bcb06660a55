"""Benchmark the model store: register and load a ~100 MB model, and read one layer's weights alone.

    python bench/store.py --out bench/out/store.json [--mb 100] [--repeat 3] [--store DIR]
    python bench/store.py --backend s3 --out bench/out/store-s3.json [--mb 100] [--repeat 3]

Reports median seconds and MB/s for: register (write, checksums, fsync, rename, index), a full verified
load (``ModelStore.load``) next to plain ``keras.models.load_model`` on the same file, and
``read_layer_weights`` for a small and a large layer, each both with the file's pages evicted from the
OS cache first ("cold", via posix_fadvise DONTNEED, which needs no privileges for clean pages) and
straight after another read ("warm"). Reading one layer should cost in proportion to its bytes:
``proportionality`` times every layer alone (cold) and fits seconds = overhead + bytes / rate.

``--backend s3`` starts a moto S3 server on 127.0.0.1 (tests/s3_server.py; needs boto3 and moto[server])
and times the ``s3://`` store on a model of ten equal Dense layers: register (upload), list (sidecars),
load cold (download into an empty read cache) and warm (from the cache), and a build reusing one of the
ten layers, with the bytes the server sent for it as a fraction of the base object (target <= 0.2).
"""

from __future__ import annotations

import argparse
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

from reuse.store import ModelStore  # noqa: E402

MB = 1e6


def build_model(mb: float) -> keras.Model:
    """Dense layers sized so the weights total about ``mb`` megabytes (float32); one tiny head layer."""
    width = max(64, int(round(8192 * math.sqrt(mb / 100) / 64)) * 64)
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((1024,)),
            keras.layers.Dense(width // 4, name="hidden1"),
            keras.layers.Dense(width, name="hidden2"),
            keras.layers.Dense(768, name="hidden3"),
            keras.layers.Dense(10, name="head"),
        ],
        name="bench",
    )


def timed(fn, repeat: int, before=None) -> float:
    times = []
    for _ in range(repeat):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def layer_bytes(model: keras.Model, name: str) -> int:
    return int(sum(np.prod(w.shape) * 4 for w in model.get_layer(name).weights))


def rate(nbytes: int, seconds: float) -> dict[str, float]:
    return {"bytes": nbytes, "seconds": round(seconds, 5), "mb_per_s": round(nbytes / MB / seconds, 1)}


def deep_model(mb: float, layers: int = 10) -> keras.Model:
    """``layers`` equal square Dense layers totalling about ``mb`` megabytes, and a small head."""
    width = max(64, int(round(math.sqrt(mb * MB / 4 / layers) / 64)) * 64)
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((width,)),
                             *[keras.layers.Dense(width, name=f"d{i}") for i in range(layers)],
                             keras.layers.Dense(10, name="head")], name="deep")


def bench_s3(args: argparse.Namespace) -> dict:
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from s3_server import S3Server

    from reuse.service import Service

    work = Path(tempfile.mkdtemp(prefix="reuse-bench-s3-"))
    with S3Server(work / "state") as s3:
        os.environ.update(s3.env)
        url = s3.url("bench")
        service = Service(url)
        store = service.store
        model = deep_model(args.mb)
        total = int(sum(np.prod(w.shape) * 4 for w in model.weights))
        infos = []
        register_s = timed(lambda: infos.append(store.register(model, "deep")), args.repeat)
        ref, size = infos[-1].ref, infos[-1].size_bytes
        cache = store.state_dir / "cache"
        load_cold = timed(lambda: store.load(ref), args.repeat,
                          lambda: shutil.rmtree(cache, ignore_errors=True))
        load_warm = timed(lambda: store.load(ref), args.repeat)
        moved = []

        def build() -> None:
            before = store.bucket.bytes_read
            service.build("child", ref, "d0", classes=10, seed=0)
            moved.append(store.bucket.bytes_read - before)

        build_s = timed(build, args.repeat)
        reused = layer_bytes(model, "d0")
        return {
            "model": {"weights_bytes": total, "object_bytes": size, "params": model.count_params(),
                      "layers": {la.name: layer_bytes(model, la.name) for la in model.layers}},
            "register": rate(size, register_s),
            "list_seconds": round(timed(store.list, args.repeat), 5),
            "load_full": {"cold_download": rate(size, load_cold), "warm_cache": rate(size, load_warm)},
            "build_10pct": {"reuse": "d0", "reused_weight_bytes": reused, "seconds": round(build_s, 5),
                            "bytes_moved": moved[-1], "fraction_of_object": round(moved[-1] / size, 4),
                            "reused_fraction_of_object": round(reused / size, 4), "target_fraction": 0.2},
            "env": {"python": platform.python_version(), "keras": keras.__version__,
                    "backend": keras.backend.backend(), "machine": platform.machine(), "cpus": os.cpu_count(),
                    "store": url, "server": "moto (server mode, 127.0.0.1)", "repeat": args.repeat},
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--mb", type=float, default=100.0, help="model size in MB (default 100)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats per measurement; medians are reported")
    ap.add_argument("--store", type=Path, default=None, help="store folder (default: a temporary one)")
    ap.add_argument("--backend", choices=("folder", "s3"), default="folder",
                    help="folder (default), or s3: a local moto S3 server")
    args = ap.parse_args()
    if args.backend == "s3":
        write(args.out, bench_s3(args))
        return

    root = args.store or Path(tempfile.mkdtemp(prefix="reuse-bench-")) / "store"
    store = ModelStore(root)
    model = build_model(args.mb)
    total = int(sum(np.prod(w.shape) * 4 for w in model.weights))

    infos = []
    register_s = timed(lambda: infos.append(store.register(model, "bench")), args.repeat)
    ref = infos[-1].ref
    path = infos[-1].path
    evict_file = lambda: evict(path)  # noqa: E731

    result: dict = {
        "model": {"weights_bytes": total, "file_bytes": path.stat().st_size, "params": model.count_params(),
                  "layers": {la.name: layer_bytes(model, la.name) for la in model.layers}},
        "register": rate(total, register_s),
        "load_full": {
            "cold": rate(total, timed(lambda: store.load(ref), args.repeat, evict_file)),
            "warm": rate(total, timed(lambda: store.load(ref), args.repeat)),
            "plain_keras_warm": rate(total, timed(
                lambda: keras.models.load_model(path, compile=False), args.repeat)),
        },
        "read_layer": {},
    }
    for label, name in (("small", "head"), ("large", "hidden2")):
        nbytes = layer_bytes(model, name)
        result["read_layer"][label] = {
            "layer": name,
            "cold": rate(nbytes,
                         timed(lambda n=name: store.read_layer_weights(ref, [n]), args.repeat, evict_file)),
            "warm": rate(nbytes, timed(lambda n=name: store.read_layer_weights(ref, [n]), args.repeat)),
        }
    # Every layer, cold: fit seconds = overhead + bytes / rate to show the cost follows the bytes.
    points = []
    for la in model.layers:
        secs = timed(lambda n=la.name: store.read_layer_weights(ref, [n]), args.repeat, evict_file)
        points.append((layer_bytes(model, la.name), secs))
    slope, intercept = np.polyfit([b for b, _ in points], [t for _, t in points], 1)
    large, full = result["read_layer"]["large"], result["load_full"]
    result["proportionality"] = {
        "per_layer_cold": [{"bytes": b, "seconds": round(t, 5)} for b, t in points],
        "fit_overhead_seconds": round(float(intercept), 5),
        "fit_mb_per_s": round(1 / float(slope) / MB, 1),
        "large_layer_bytes_share": round(large["cold"]["bytes"] / total, 3),
        "large_layer_time_share_of_full_load_cold": round(large["cold"]["seconds"] / full["cold"]["seconds"],
                                                          3),
    }
    result["list_seconds"] = round(timed(store.list, args.repeat), 5)
    result["env"] = {"python": platform.python_version(), "keras": keras.__version__,
                     "backend": keras.backend.backend(), "machine": platform.machine(),
                     "cpus": os.cpu_count(), "store": str(root), "repeat": args.repeat}

    write(args.out, result)


def write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
