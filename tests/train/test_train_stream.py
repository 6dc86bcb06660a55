"""Training on data that is not in memory whole: the chunked loop gives the in-memory loop's weights, frozen
features in memory or on disk give the same result, the disk cache is kept only when asked and removed
otherwise, the feature pass reports progress, frozen dropout is off while the head trains, work that
cannot fit the memory budget is refused before it starts, and a subprocess trains on an image folder
several times its budget within that budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from train_helpers import conv_store

from reuse.backend.spec import Forward, LoopSpec
from reuse.cli import cli
from reuse.data import Dataset
from reuse.data.rows import IndexedRows
from reuse.jobs.progress import progress_of, train_event
from reuse.jobs.records import JobEvent
from reuse.store import ModelStore
from reuse.train import TrainConfig, train
from reuse.train.config import make_optimizer
from reuse.train.engine import run_loop
from reuse.train.events import FeaturePass
from reuse.train.features import FeatureCache
from reuse.train.stream_loop import run_stream_loop
from reuse.train.task import Task


def _mlp(frozen: int = 0, dropout: float = 0.2, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((12,), name="x")
    h = keras.layers.Dense(16, activation="relu", name="hidden1")(inp)
    h = keras.layers.Dropout(dropout, name="drop1")(h)
    h = keras.layers.Dense(10, activation="relu", name="hidden2")(h)
    out = keras.layers.Dense(3, activation="softmax", name="out")(h)
    m = keras.Model(inp, out)
    for layer in m.layers[1:1 + frozen]:
        layer.trainable = False
    return m


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1).astype(np.int32)


CHUNKS = [8, 24, 200]  # a few batches per chunk, uneven, and the whole epoch in one chunk


@pytest.mark.parametrize("chunk", CHUNKS)
def test_the_chunked_loop_gives_the_in_memory_loops_weights(chunk):
    x, y = _data(103)
    xv, yv = _data(31, seed=1)
    weights = []
    for streamed in (False, True):
        m = _mlp()
        cfg = TrainConfig(epochs=4, batch_size=8, early_stopping=2)
        train_vars = list(m.trainable_variables)
        state_vars = [v for v in m.variables if all(v is not t for t in train_vars)]
        lazy = (lambda a: IndexedRows(a, np.arange(len(a)))) if streamed else (lambda a: a)
        spec = LoopSpec(forward=Forward(m), train_vars=train_vars, state_vars=state_vars,
                        optimizer=make_optimizer(cfg), task=Task("multiclass"), x=lazy(x), y=y, xv=lazy(xv),
                        yv=yv, batch_size=8, epochs=4, seed=0, patience=2,
                        chunk_rows=chunk if streamed else None)
        out = (run_stream_loop(spec, metric="accuracy", eval_rows=16) if streamed
               else run_loop(spec, metric="accuracy"))
        weights.append(m.get_weights())
        np.testing.assert_allclose(out.history["loss"], out.history["loss"], rtol=1e-6)
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_features_on_disk_train_the_same_weights_and_are_removed(tmp_path):
    x, y = _data(90)
    results, folders = [], []
    for on_disk in (False, True):
        m = _mlp(frozen=2)
        cache = FeatureCache(tmp_path / f"features-{on_disk}" if on_disk else None, on_disk=on_disk)
        r = train(m, Dataset(x, y, "toy"), TrainConfig(epochs=3, batch_size=8, val_split=0.2), features=cache)
        assert r.cached_layers == ("hidden1", "drop1") and r.features == ("disk" if on_disk else "memory")
        if on_disk:
            folders = list((tmp_path / "features-True").iterdir())
            assert any(f.is_dir() and list(f.glob("train-0.npy")) for f in folders)
        cache.close()
        results.append((m.get_weights(), r.metrics))
    (wa, ma), (wb, mb) = results
    for a, b in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(a, b)
    assert ma == pytest.approx(mb, rel=1e-6)
    # A temporary folder (no folder given) is removed when the cache closes.
    temp = FeatureCache(on_disk=True)
    train(_mlp(frozen=2), Dataset(x, y, "toy"), TrainConfig(epochs=1), features=temp)
    made = temp.folder
    assert made.exists() and made.name.startswith("reuse-features-")
    temp.close()
    assert not made.exists()


def test_kept_features_are_read_by_the_next_run(tmp_path):
    x, y = _data(60)
    keep = tmp_path / "kept"
    first = train(_mlp(frozen=2), Dataset(x, y, "toy"), TrainConfig(epochs=1, features_dir=str(keep)))
    files = sorted(p.name for p in keep.rglob("*.npy"))
    assert first.features == "disk" and files == ["train-0.npy"]
    events: list = []
    again = FeatureCache(keep, keep=True)
    train(_mlp(frozen=2), Dataset(x, y, "toy"), TrainConfig(epochs=1), features=again, progress=events.append)
    assert (again.hits, again.misses) == (1, 0) and not any(isinstance(e, FeaturePass) for e in events)
    again.close()
    assert sorted(p.name for p in keep.rglob("*.npy")) == files  # kept: the user asked for them


def test_the_feature_pass_reports_rows_and_travels_as_job_events():
    x, y = _data(200)
    events: list = []
    train(_mlp(frozen=2), Dataset(x, y, "toy"), TrainConfig(epochs=1), progress=events.append)
    passes = [e for e in events if isinstance(e, FeaturePass)]
    assert passes[0].rows_done == 0 and passes[-1].rows_done == passes[-1].rows_total == 200
    assert passes[-1].message == "frozen features (train) -> memory"
    fields = progress_of(passes[-1], None)
    assert fields["stage"] == "feature_pass" and fields["message"].startswith("frozen features (train) -> "
                                                                              "memory: 200/200")
    back = train_event(JobEvent.from_dict({"job_id": "j", "seq": 1, "state": "running", **fields}))
    assert isinstance(back, FeaturePass) and (back.rows_done, back.rows_total) == (200, 200)


def test_frozen_dropout_is_off_while_the_head_trains():
    x, y = _data(80)
    ds = Dataset(x, y, "toy")
    cached = _mlp(frozen=2, dropout=0.9)
    r = train(cached, ds, TrainConfig(epochs=2, batch_size=8))
    assert r.cached_layers == ("hidden1", "drop1")  # cached: the frozen part is deterministic
    # Without the cache the frozen dropout runs inside every step, in inference mode: the same weights.
    uncached = _mlp(frozen=2, dropout=0.9)
    assert train(uncached, ds, TrainConfig(epochs=2, batch_size=8, cache=False)).cached_layers == ()
    for a, b in zip(cached.get_weights(), uncached.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # As plain Keras (frozen_mode=training) the frozen dropout is live: nothing after it is cached, and
    # the head learns from dropped-out features.
    live = _mlp(frozen=2, dropout=0.9)
    assert train(live, ds,
                 TrainConfig(epochs=2, batch_size=8, frozen_mode="training")).cached_layers == ("hidden1",)
    assert not np.allclose(live.get_weights()[-2], cached.get_weights()[-2])


def _image_folder(root: Path, n: int, side: int) -> None:
    yy, xx = np.mgrid[0:side, 0:side]
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(n // 2):
            a = ((xx * (1 + c) + yy * (i % 7)) % 256).astype(np.uint8)
            Image.fromarray(np.stack([a, np.roll(a, 3, 0), a // 2], -1)).save(root / name / f"{i:04d}.jpg",
                                                                              quality=90)


def test_a_budget_too_small_is_refused_with_the_number_needed(tmp_path):
    _image_folder(tmp_path / "imgs", 8, 32)
    conv_store(tmp_path / "store", 32)
    result = CliRunner().invoke(cli, ["train", "conv", "--data", f"images:{tmp_path / 'imgs'}?size=32,32",
                                      "--memory-mb", "64", "--store", str(tmp_path / "store")])
    assert result.exit_code == 1
    line = result.output.splitlines()[-1]
    assert (
        line.startswith("Error: ")
        and "but the memory budget (--memory-mb 64: 64.0 MiB) leaves 0 bytes" in line
    )
    assert "give at least --memory-mb " in line
    assert [i.version for i in ModelStore(tmp_path / "store").versions("conv")] == [1]


# The child's own peak: measured in a wrapper process whose only child is the command.
_PEAK = textwrap.dedent("""
    import json, resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr[-2000:],
                      "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
""")


@pytest.mark.slow
def test_training_on_a_folder_several_times_the_budget_stays_within_it(tmp_path):
    side, n, budget_mb = 512, 1100, 1000
    _image_folder(tmp_path / "imgs", n, side)
    conv_store(tmp_path / "store", side)
    decoded_mb = n * side * side * 3 * 4 / 2**20
    assert decoded_mb > 3 * budget_mb  # the folder as float32 pixels: several times the budget
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    cmd = [sys.executable, "-c", _PEAK, sys.executable, "-m", "reuse", "train", "conv", "--data",
           f"images:{tmp_path / 'imgs'}?size={side},{side}", "--epochs", "2", "--memory-mb", str(budget_mb),
           "--store", str(tmp_path / "store"), "--json"]
    got = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout)
    assert got["rc"] == 0, got["err"]
    out = json.loads(got["out"])
    assert out["model"] == "conv:2" and out["settings"]["samples"] == n
    # Within the budget plus a stated constant: 64 MiB for what the estimate of activations misses.
    peak_mb = got["peak_kib"] / 1024
    assert peak_mb <= budget_mb + 64, f"peak RSS {peak_mb:.0f} MiB with --memory-mb {budget_mb}"
    assert not list(tmp_path.glob("reuse-features-*"))  # no feature files left behind
