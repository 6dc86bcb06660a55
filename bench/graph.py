"""Graph reuse: a keras.applications backbone reused through a residual block, trained three ways.

Case ``train``: MobileNetV2 (32x32x3, random weights; batch-normalisation statistics measured on other
synthetic images, as training would have left them) reused through block 6 (frozen) with a
``gap,dense:64:relu`` head and a 10-class softmax output, on 2,000 synthetic images (ten classes of
colour and stripe frequency plus noise, seed 0), 20 epochs, batch 32, SGD(0.01, momentum 0.9). Same
initial weights for all three paths:

- reuse: ``reuse.train.train`` (compiled loop; the frozen part is computed once through the cut);
- keras_fit: ``model.compile`` + ``model.fit`` with the frozen backbone inside the model;
- keras_cache: the Keras guide's hand-made cache: ``predict`` the frozen part's output once, then
  ``fit`` a head model on those features (the predict is timed too).

Times run from the start of training to the trained model (compilation, tracing and the feature cache
included); each path runs --repeats times on fresh copies and the fastest counts. Targets: >= 10x
keras_fit and >= 2x keras_cache at the same final loss.

Case ``read``: a ResNet50 (32x32x3, random weights, ~95 MB file) reused through its first two stages
(``conv1_.*|pool1_.*|conv2_.*``); the bytes the build reads from the base file (``rchar`` of
/proc/self/io around the build, with the file evicted from the page cache first) against the file's
size. Target: at most 30%.

Case ``ops``: bases whose graphs hold operation nodes (ConvNeXtTiny, MobileNetV3Small) and one without
(EfficientNetV2B0), 32x32x3, random weights. For each: what keeping the Keras 3 config costs in the file
(``reuse/keras_config`` bytes against the file), the register and whole-load times, and a build through
the first blocks (the scope the gap error suggests for ``FIRST``): bytes read from the base file (page
cache evicted) against its size, and the build time.

    python bench/graph.py --out bench/out/graph.json
    python bench/graph.py --cases read --out /tmp/g.json
    python bench/graph.py --cases ops --out /tmp/ops.json
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
import numpy as np  # noqa: E402
from _pagecache import evict  # noqa: E402

from reuse.build import build_network  # noqa: E402
from reuse.data import Dataset  # noqa: E402
from reuse.store import ModelStore  # noqa: E402
from reuse.train import TrainConfig, copy_model, train  # noqa: E402
from reuse.train.infer import evaluate  # noqa: E402

SCOPE = r"Conv1|bn_Conv1|Conv1_relu|expanded_conv_.*|block_[1-6]_.*"
EXIT = "block_6_project_BN"
HEAD = "gap,dense:64:relu"
RESNET_SCOPE = r"conv1_.*|pool1_.*|conv2_.*"
TARGETS = {"keras_fit": 10.0, "keras_cache": 2.0, "read_fraction": 0.30}


def images(n: int = 2000, classes: int = 10, seed: int = 0) -> Dataset:
    """Ten classes, each a colour and a stripe frequency, plus Gaussian noise (sigma 0.3)."""
    rng = np.random.default_rng(seed)
    colors = rng.uniform(0, 1, size=(classes, 1, 1, 3)).astype(np.float32)
    freq = rng.integers(1, 6, size=classes)
    y = rng.integers(0, classes, size=n)
    rows = np.arange(32)[None, :, None, None]
    stripes = np.sin(rows * freq[y][:, None, None, None] * np.pi / 16).astype(np.float32)
    x = colors[y] + 0.5 * stripes + rng.normal(scale=0.3, size=(n, 32, 32, 3)).astype(np.float32)
    return Dataset(x.astype(np.float32), y, "synthetic images")


def calibrated_base() -> keras.Model:
    """MobileNetV2 with random weights whose batch-normalisation statistics are measured on other
    synthetic images (seed 1), layer by layer, as training would have left them: with Keras' initial
    statistics (mean 0, variance 1) the features after block 6 are ~1e-6 and no head can learn from them."""
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None, include_top=False)
    sample = images(256, seed=1).x
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            seen = keras.Model(base.inputs, layer.input).predict(sample, batch_size=256, verbose=0)
            layer.moving_mean.assign(seen.mean(axis=(0, 1, 2)))
            layer.moving_variance.assign(seen.var(axis=(0, 1, 2)))
    return base


def _opt() -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(0.01, momentum=0.9)


def run_reuse(model: keras.Model, data: Dataset, epochs: int) -> tuple[float, keras.Model, dict]:
    m = copy_model(model)
    t0 = time.perf_counter()
    result = train(m, data, TrainConfig(epochs=epochs, batch_size=32, optimizer="sgd", lr=0.01, momentum=0.9,
                                        seed=0, shuffle=True))
    return time.perf_counter() - t0, m, {"cached_layers": len(result.cached_layers)}


def run_fit(model: keras.Model, data: Dataset, epochs: int) -> tuple[float, keras.Model, dict]:
    m = copy_model(model)
    t0 = time.perf_counter()
    m.compile(optimizer=_opt(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(data.x, data.y, epochs=epochs, batch_size=32, verbose=0)
    return time.perf_counter() - t0, m, {}


def run_cache(model: keras.Model, data: Dataset, epochs: int) -> tuple[float, keras.Model, dict]:
    m = copy_model(model)
    t0 = time.perf_counter()
    frozen = keras.Model(m.inputs, m.get_layer(EXIT).output)
    feats = frozen.predict(data.x, batch_size=256, verbose=0)
    head_in = keras.Input(feats.shape[1:])
    x = head_in
    for layer in m.layers[m.layers.index(m.get_layer(EXIT)) + 1:]:
        x = layer(x)
    head = keras.Model(head_in, x)
    head.compile(optimizer=_opt(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    head.fit(feats, data.y, epochs=epochs, batch_size=32, verbose=0)
    return time.perf_counter() - t0, m, {}


def case_train(repeats: int, epochs: int, n: int) -> dict:
    data = images(n)
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(Path(tmp) / "store")
        store.register(calibrated_base(), "mobilenet")
        model = build_network(store, "mobilenet", SCOPE, head=HEAD, classes=10, seed=0).model
    small = Dataset(data.x[:64], data.y[:64], "warm-up")
    for fn in (run_reuse, run_fit, run_cache):  # process-wide start-up costs paid once, outside the timings
        fn(model, small, 1)
    out: dict = {}
    for name, fn in (("reuse", run_reuse), ("keras_fit", run_fit), ("keras_cache", run_cache)):
        times, final = [], None
        for _ in range(repeats):
            seconds, trained, extra = fn(model, data, epochs)
            times.append(seconds)
            final = {k: float(v) for k, v in evaluate(trained, data).items()} | extra
        out[name] = {"seconds": min(times), "all_seconds": times, "final": final}
    for name in ("keras_fit", "keras_cache"):
        out[f"speedup_vs_{name}"] = out[name]["seconds"] / out["reuse"]["seconds"]
    return out


def _rchar() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def case_read() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(Path(tmp) / "store")
        keras.utils.set_random_seed(0)
        info = store.register(keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None,
                                                          include_top=False),
                              "resnet")
        size = info.path.stat().st_size
        build_network(store, "resnet", RESNET_SCOPE, head="gap", classes=10)  # warm the code paths
        evict(info.path)
        before = _rchar()
        t0 = time.perf_counter()
        built = build_network(store, "resnet", RESNET_SCOPE, head="gap", classes=10)
        seconds = time.perf_counter() - t0
        read = _rchar() - before
        weights = sum(x["params"] for x in built.lineage["layers"]) * 4
    return {"file_bytes": size, "read_bytes": read, "read_fraction": read / size,
            "reused_weight_bytes": weights, "reused_layers": len(built.lineage["layers"]),
            "build_seconds": seconds}


OPS_BASES = {  # name: (constructor, first scope, as in tests/build/test_build_ops.py)
    "ConvNeXtTiny": (keras.applications.ConvNeXtTiny,
                     "convnext_tiny_(prestem_normalization|stem|stage_0_.*)"),
    "MobileNetV3Small": (keras.applications.MobileNetV3Small,
                         r"rescaling(_\d+)?|conv|conv_bn|expanded_conv_[a-z].*|expanded_conv_[1-3]_.*"),
    "EfficientNetV2B0": (keras.applications.EfficientNetV2B0,
                         r"rescaling(_\d+)?|normalization(_\d+)?|stem_.*|block1.*|block2.*"),
}


def _suggested(store: ModelStore, name: str, scope: str) -> str:
    import re

    from reuse.build import plan_build
    from reuse.errors import IncompatibleShapes

    try:
        plan_build(store, name, scope)
    except IncompatibleShapes as exc:
        return re.search(r"--reuse '([^']+)'", str(exc)).group(1)
    return scope


def case_ops() -> dict:
    import h5py

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(Path(tmp) / "store")
        for name, (make, first) in OPS_BASES.items():
            keras.utils.set_random_seed(0)
            model = make(input_shape=(32, 32, 3), weights=None, include_top=False)
            t0 = time.perf_counter()
            info = store.register(model, name.lower())
            register_s = time.perf_counter() - t0
            size = info.path.stat().st_size
            with h5py.File(info.path, "r") as f:
                keras3 = len(f["reuse/keras_config"][()])
                legacy = len(f.attrs["model_config"])
            t0 = time.perf_counter()
            store.load(info.ref)
            load_s = time.perf_counter() - t0
            scope = _suggested(store, info.name, first)
            build_network(store, info.name, scope, head="gap", classes=10)  # warm the code paths
            evict(info.path)
            before = _rchar()
            t0 = time.perf_counter()
            built = build_network(store, info.name, scope, head="gap", classes=10)
            build_s = time.perf_counter() - t0
            read = _rchar() - before
            out[name] = {
                "file_bytes": size, "keras_config_bytes": keras3, "legacy_config_bytes": legacy,
                "keras_config_fraction": keras3 / size, "register_seconds": register_s,
                "load_seconds": load_s, "reused_nodes": len(built.lineage["layers"]),
                "reused_ops": sum(1 for x in built.lineage["layers"] if x.get("op")),
                "build_read_bytes": read, "build_read_fraction": read / size, "build_seconds": build_s}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--cases", default="train,read")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--samples", type=int, default=2000)
    args = p.parse_args()
    cases = set(args.cases.split(","))
    result: dict = {"machine": {"python": platform.python_version(), "keras": keras.__version__,
                                "backend": keras.backend.backend(), "cpus": os.cpu_count()},
                    "targets": TARGETS}
    if "train" in cases:
        result["train"] = case_train(args.repeats, args.epochs, args.samples)
    if "read" in cases:
        result["read"] = case_read()
    if "ops" in cases:
        result["ops"] = case_ops()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
