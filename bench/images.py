"""Real data at real scale: a cats-vs-dogs-sized image folder, a MobileNetV2 prefix frozen, a small head.

The folder: 23,000 JPEGs at 150x150 in two classes (generated, not downloaded: "cat" images are stripes,
"dog" images rings, each with a random colour, phase and noise), and its first 3,000 and 10,000 images
(hard links) for the memory-flatness runs. The network: ``keras.applications.MobileNetV2`` (150x150x3,
random weights; batch-normalisation statistics measured on 256 of the images, as training would have left
them) reused through block 6 (frozen) with ``gap,dense:64:relu`` and a 2-class softmax, built once with
``reuse build``; then 5 epochs, batch 32, SGD(0.01, momentum 0.9), seed 0.

Each run is a separate process, so its peak resident memory is its own (read by a wrapper process
whose only child it is: ``RUSAGE_CHILDREN``):

- ``reuse``: ``reuse train NAME --data images:DIR?size=150,150`` at 3k, 10k and 23k images (the
  frozen part's features computed once in one streaming pass, epochs on the features);
- ``keras``: the Keras guide's pipeline on the same folder and the same starting weights
  (``image_dataset_from_directory`` + the frozen base called with ``training=False`` inside the model +
  ``fit``; bench/_keras_images.py);
- augmented (``--cases aug``): ``flip,rotate:0.1`` both ways reuse offers (every batch through the frozen
  part; ``--augment-views 2``) against the guide's pipeline with the same ``data_augmentation`` block.

Targets (issue 22/23): reuse's peak RSS <= 2 GiB and flat from 3k to 23k; >= 3x faster than the guide's
pipeline at the same final loss (within noise); augmented >= 2x faster at the same final loss.

    python bench/images.py --out bench/out/images.json                 # everything (about 30 min on 2 cores)
    python bench/images.py --sizes 3000 --cases plain --out /tmp/i.json # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDE = 150
SCOPE = r"Conv1|bn_Conv1|Conv1_relu|expanded_conv_.*|block_[1-6]_.*"
EXIT = "block_6_project_BN"
HEAD = "gap,dense:64:relu"
TRAIN = ["--epochs", "5", "--batch-size", "32", "--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9",
         "--seed", "0"]
TARGETS = {"peak_rss_gib": 2.0, "speedup": 3.0, "speedup_augmented": 2.0}

# The child's own peak: a wrapper process whose only child is the measured command.
PEAK = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr[-3000:],
                  "seconds": time.perf_counter() - t0,
                  "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def make_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs (half "cat" stripes, half "dog" rings) under ``root``, made once (a marker file)."""
    import numpy as np
    from PIL import Image

    marker = root / f".made-{n}-{SIDE}"
    if marker.exists():
        return root
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    for label, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            color = rng.uniform(40, 215, size=3)
            freq, phase = rng.uniform(0.05, 0.25), rng.uniform(0, 6.3)
            if label == 0:
                wave = np.sin((xx + yy * rng.uniform(-1, 1)) * freq + phase)
            else:
                cx, cy = rng.uniform(30, 120, size=2)
                wave = np.sin(np.hypot(xx - cx, yy - cy) * freq + phase)
            pixels = color + 40 * wave[..., None] + rng.normal(0, 12, size=(SIDE, SIDE, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                root / name / f"{i:05d}.jpg", quality=90
            )
    marker.write_text("")
    return root


def subset(full: Path, n: int) -> Path:
    """The first ``n / 2`` images of each class of ``full``, as hard links in a folder of their own."""
    out = full.parent / f"{full.name}-{n}"
    if (out / ".done").exists():
        return out
    for name in ("cat", "dog"):
        (out / name).mkdir(parents=True, exist_ok=True)
        for f in sorted((full / name).iterdir())[: n // 2]:
            if not (out / name / f.name).exists():
                os.link(f, out / name / f.name)
    (out / ".done").write_text("")
    return out


def build_base(store: Path, folder: Path) -> None:
    """Register the calibrated MobileNetV2 and build the network every run trains."""
    import keras
    import numpy as np

    from reuse.data import load_data
    from reuse.service import Service

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=(SIDE, SIDE, 3), weights=None, include_top=False)
    ds = load_data(f"images:{folder}?size={SIDE},{SIDE}")
    sample = ds.x.read(np.random.default_rng(1).choice(len(ds), 256, replace=False))
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            seen = keras.Model(base.inputs, layer.input).predict(sample, batch_size=64, verbose=0)
            layer.moving_mean.assign(seen.mean(axis=(0, 1, 2)))
            layer.moving_variance.assign(seen.var(axis=(0, 1, 2)))
    service = Service(store)
    service.register_model(base, "mnv2")
    service.build("pets", "mnv2", SCOPE, head=HEAD, classes=2, seed=0)


def measured(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True, env=env)
    got = json.loads(done.stdout)
    if got["rc"] != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{got['err']}")
    return got


def run_reuse(store: Path, folder: Path, extra: list[str], memory_mb: int | None) -> dict:
    cmd = [sys.executable, "-m", "reuse", "train", "pets:1", "--data", f"images:{folder}?size={SIDE},{SIDE}",
           *TRAIN, *extra, "--json", "--store", str(store)]
    if memory_mb:
        cmd += ["--memory-mb", str(memory_mb)]
    got = measured(cmd, {**os.environ, "PYTHONPATH": str(ROOT)})
    out = json.loads(got["out"])
    settings = out["settings"]
    feature_s = settings.get("feature_seconds") or 0.0
    return {"seconds": round(got["seconds"], 2), "peak_rss_mib": round(got["peak_mib"]),
            "loss": out["history"]["loss"], "final_loss": out["history"]["loss"][-1],
            "features": settings.get("features"),
            "feature_mib": round((settings.get("feature_bytes") or 0) / 2**20, 1),
            "feature_seconds": feature_s,
            "feature_rows_per_s": round(settings["samples"] / feature_s, 1) if feature_s else None,
            "train_seconds": out["seconds"], "final_seconds": settings.get("final_seconds"),
            "samples": settings["samples"]}


def run_keras(store: Path, folder: Path, augment: bool) -> dict:
    from reuse.store import ModelStore

    path = ModelStore(store).info("pets:1").path
    cmd = [sys.executable, str(ROOT / "bench" / "_keras_images.py"), str(path), str(folder), EXIT, "5"]
    got = measured(cmd + (["--augment"] if augment else []))
    out = json.loads(got["out"].strip().splitlines()[-1])  # Keras prints "Found N files ..." first
    return {"seconds": round(got["seconds"], 2), "peak_rss_mib": round(got["peak_mib"]), "loss": out["loss"],
            "final_loss": out["loss"][-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/out/images.json")
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "reuse-bench-images"),
                    help="Where the generated folder is kept between runs.")
    ap.add_argument("--sizes", default="3000,10000,23000",
                    help="Image counts for the reuse runs (the largest "
                    "is also the one compared with Keras).")
    ap.add_argument("--cases", default="plain,aug", help="plain, aug, or both.")
    ap.add_argument("--memory-mb", type=int, default=2048,
                    help="reuse's --memory-mb for every run (0: default).")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    cases = set(args.cases.split(","))
    full = make_folder(Path(args.dir) / f"pets-{max(sizes)}", max(sizes))
    folders = {n: (full if n == max(sizes) else subset(full, n)) for n in sizes}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="reuse-bench-store-") as tmp:
        store = Path(tmp) / "models"
        build_base(store, folders[min(sizes)])
        result: dict = {"machine": platform.platform(), "cpus": os.cpu_count(), "load_at_start": load,
                        "images": {"side": SIDE, "sizes": sizes}, "memory_mb": args.memory_mb,
                        "targets": TARGETS, "runs": {}}
        runs = result["runs"]
        big = folders[max(sizes)]
        if "plain" in cases:
            for n in sizes:
                runs[f"reuse_{n}"] = run_reuse(store, folders[n], [], args.memory_mb)
                print(f"reuse {n}: {runs[f'reuse_{n}']}", file=sys.stderr)
            runs["keras"] = run_keras(store, big, augment=False)
            print(f"keras: {runs['keras']}", file=sys.stderr)
        if "aug" in cases:
            aug = ["--augment", "flip,rotate:0.1"]
            runs["reuse_aug_views2"] = run_reuse(store, big, [*aug, "--augment-views", "2"], args.memory_mb)
            print(f"reuse aug views: {runs['reuse_aug_views2']}", file=sys.stderr)
            runs["reuse_aug_every_batch"] = run_reuse(store, big, aug, args.memory_mb)
            print(f"reuse aug every batch: {runs['reuse_aug_every_batch']}", file=sys.stderr)
            runs["keras_aug"] = run_keras(store, big, augment=True)
            print(f"keras aug: {runs['keras_aug']}", file=sys.stderr)
    result["summary"] = summarize(runs, sizes)
    result["load_at_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))


def summarize(runs: dict, sizes: list[int]) -> dict:
    out: dict = {}
    peaks = {n: runs[f"reuse_{n}"]["peak_rss_mib"] for n in sizes if f"reuse_{n}" in runs}
    if peaks:
        out["reuse_peak_rss_mib"] = peaks
        out["peak_rss_ok"] = max(peaks.values()) <= TARGETS["peak_rss_gib"] * 1024
        big = runs[f"reuse_{max(sizes)}"]
        out["feature_rows_per_s"] = big["feature_rows_per_s"]
    if "keras" in runs:
        out["speedup"] = round(runs["keras"]["seconds"] / big["seconds"], 2)
        out["final_loss"] = {"reuse": big["final_loss"], "keras": runs["keras"]["final_loss"]}
    if "keras_aug" in runs:
        k = runs["keras_aug"]["seconds"]
        out["speedup_augmented"] = {"views2": round(k / runs["reuse_aug_views2"]["seconds"], 2),
                                    "every_batch": round(k / runs["reuse_aug_every_batch"]["seconds"], 2)}
        out["final_loss_augmented"] = {"reuse_views2": runs["reuse_aug_views2"]["final_loss"],
                                       "reuse_every_batch": runs["reuse_aug_every_batch"]["final_loss"],
                                       "keras": runs["keras_aug"]["final_loss"]}
    return out


if __name__ == "__main__":
    main()
