"""Shared fixtures: a tiny real Keras model, a store in a temporary folder, and a store of three models."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Ray (the tests of `reuse advise --ray`): token authentication with a token of this test session, in
# the environment of every process the tests start (Ray reads it when it is imported, so set here, before
# any test module imports it); a Ray cluster the tests start then refuses anyone without it, and nothing
# is read from or written to ~/.ray.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from reuse.store import ModelStore  # noqa: E402


def _onnx_export_missing() -> list[str]:
    from reuse.export.onnx_file import missing_packages

    return missing_packages()


# ONNX export and ONNX Runtime serving: with TensorFlow every install has what they need (core
# dependencies); on JAX, Keras converts through jax2onnx, which no extra installs (`make test-jax`).
needs_onnx_export = pytest.mark.skipif(
    bool(_onnx_export_missing()),
    reason=f"ONNX export on the {keras.backend.backend()} backend needs "
    f"{', '.join(_onnx_export_missing())} (not installed)")


def make_mlp(n_in: int = 8, hidden: tuple[int, ...] = (16, 12, 10), n_out: int = 3, seed: int = 0,
             batchnorm: bool = False) -> keras.Model:
    """A small Sequential MLP whose hidden layers are named hidden1, hidden2, ..."""
    keras.utils.set_random_seed(seed)
    layers: list = [keras.Input((n_in,), name="features")]
    for i, units in enumerate(hidden, start=1):
        layers.append(keras.layers.Dense(units, activation="relu", name=f"hidden{i}"))
        if batchnorm:
            layers.append(keras.layers.BatchNormalization(name=f"bn{i}"))
    layers.append(keras.layers.Dense(n_out, activation="softmax", name="output"))
    return keras.Sequential(layers, name="mlp")


def make_conv(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 1), name="image"),
                             keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                             keras.layers.BatchNormalization(name="bn"),
                             keras.layers.MaxPooling2D(name="pool"), keras.layers.Flatten(name="flat"),
                             keras.layers.Dense(3, activation="softmax", name="probs")], name="conv")


def make_binned() -> keras.Model:
    """A built-in layer tf2onnx cannot convert: Discretization becomes TensorFlow's Bucketize, which ONNX
    has no op for (checked: the export leaves the op in the graph and ONNX Runtime refuses the file)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8,), name="features"), keras.layers.Dense(4, name="dense"),
                             keras.layers.Discretization(bin_boundaries=[-0.5, 0.0, 0.5], name="bins")])


@pytest.fixture
def tiny_model() -> keras.Model:
    return make_mlp()


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "store")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory) -> Path:
    """A store (one per test module) holding an MLP "mlp", a small conv net "conv", and "binned", a model
    with a layer ONNX has no op for."""
    from reuse.service import Service

    root = tmp_path_factory.mktemp("mixed") / "store"
    seed = Service(root)
    seed.register_model(make_mlp(), "mlp")
    seed.register_model(make_conv(), "conv")
    seed.register_model(make_binned(), "binned")
    return root


@pytest.fixture(scope="session")
def ray_cluster():
    """A running Ray cluster on 127.0.0.1 (``ray start --head`` in a subprocess), one per test session;
    tests that use it carry ``ray_helpers.needs_ray``."""
    from ray_helpers import ray_head

    with ray_head() as head:
        yield head


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 for one test module (tests/s3_server.py)."""
    from s3_server import S3Server

    with S3Server(tmp_path_factory.mktemp("s3state")) as server:
        yield server


@pytest.fixture
def url(s3, monkeypatch, request):
    """A fresh prefix in the test bucket, with the server's endpoint and credentials in the environment."""
    import re

    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("REUSE_STORE", raising=False)
    return s3.url(re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:60])
