"""``--data-parallel``: each batch split over every local device (JAX backend only).

The JAX run happens in a subprocess with two forced host devices (``XLA_FLAGS``) and
``KERAS_BACKEND=jax``, so this process's backend is untouched. It trains the same tiny model twice,
on one device and data parallel, over the same global batches, and reports the final weights and
whether the compiled step sums gradients across devices.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reuse.cli import cli

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import jax, numpy as np
sys.path.insert(0, "tests")
from conftest import make_mlp
from reuse.data import Dataset
from reuse.train import TrainConfig, train

rng = np.random.default_rng(0)
x = rng.normal(size=(60, 8)).astype("float32")
ds = Dataset(x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0), "random")
out = {"devices": len(jax.devices())}
for dp in (False, True):
    model = make_mlp()
    # 60 rows in batches of 8: seven full batches and a padded, masked last one.
    train(model, ds, TrainConfig(epochs=3, batch_size=8, lr=0.05, seed=1, data_parallel=dp))
    out[str(dp)] = [w.tolist() for w in model.get_weights()]
# Streamed (data not in memory whole: the loop driven a chunk at a time): the same batches, each split
# over the devices.
from reuse.backend.spec import Forward, LoopSpec
from reuse.data.rows import IndexedRows
from reuse.train.config import make_optimizer
from reuse.train.stream_loop import run_stream_loop
from reuse.train.task import Task
model = make_mlp()
cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05, seed=1)
spec = LoopSpec(forward=Forward(model), train_vars=list(model.trainable_variables),
                state_vars=list(model.non_trainable_variables), optimizer=make_optimizer(cfg),
                task=Task("multiclass"), x=IndexedRows(x, np.arange(len(x))), y=ds.y.astype("int32"), xv=None,
                yv=None, batch_size=8, epochs=3, seed=1, data_parallel=True, chunk_rows=24)
run_stream_loop(spec, metric="accuracy", eval_rows=64)
out["streamed"] = [w.tolist() for w in model.get_weights()]
print("RESULT " + json.dumps(out))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="jax is not installed (pip install 'reuse[jax]'; make test installs it)")
def test_two_devices_give_the_weights_of_one(tmp_path):
    dump = tmp_path / "hlo"  # XLA writes every compiled module here: the data-parallel one must all-reduce
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 --xla_dump_to={dump} "
                        "--xla_dump_hlo_as_text"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    assert out["devices"] == 2
    optimized = [f.read_text() for f in dump.glob("*after_optimizations.txt")]
    assert any("all-reduce" in t for t in optimized), "no compiled step sums gradients across the devices"
    for one, two, streamed in zip(out["False"], out["True"], out["streamed"], strict=True):
        np.testing.assert_allclose(np.array(two), np.array(one), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.array(streamed), np.array(one), rtol=1e-4, atol=1e-5)


def test_tensorflow_backend_refuses_clearly(tmp_path):
    import keras
    from conftest import make_mlp

    from reuse.store import ModelStore

    if keras.backend.backend() != "tensorflow":
        pytest.skip("checks the refusal on the TensorFlow backend")
    ModelStore(tmp_path / "store").register(make_mlp(), "tiny")
    x = np.random.default_rng(0).normal(size=(20, 8)).astype("float32")
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype("int64"))
    result = CliRunner().invoke(cli, ["train", "tiny", "--data", str(tmp_path / "d.npz"), "--data-parallel",
                                      "--store", str(tmp_path / "store")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: data-parallel training needs the JAX backend (KERAS_BACKEND=jax, with the jax extra: "
        "pip install 'reuse[jax]'); this process runs 'tensorflow'")
