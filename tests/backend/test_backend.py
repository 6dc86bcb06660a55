"""The backend seam: one dispatcher, one bucket rule, one compiled forward pass per backend."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest
from conftest import make_mlp

from reuse.backend import SUPPORTED, Backend, active, for_name
from reuse.backend.compiled import CompiledForward, bucket
from reuse.errors import FailedPrecondition

INSTALLED = [n for n in SUPPORTED if importlib.util.find_spec(n)]


@pytest.mark.parametrize(("rows", "cap", "padded"), [(1, None, 1), (2, None, 2), (3, None, 4), (17, None, 32),
                                                     (64, None, 64), (65, None, 128), (65, 100, 100),
                                                     (33, 64, 64), (120, 100, 120)])
def test_bucket(rows, cap, padded):
    assert bucket(rows, cap) == padded


def test_an_unknown_backend_is_refused_naming_it_and_the_supported_ones():
    with pytest.raises(FailedPrecondition) as err:
        for_name("torch")
    assert (
        str(err.value)
        == "Keras backend 'torch' is not supported; supported: tensorflow, jax (set KERAS_BACKEND)"
    )


@pytest.mark.parametrize("name", INSTALLED)
def test_each_backend_module_satisfies_the_protocol(name):
    module = for_name(name)
    assert isinstance(module, Backend)
    assert name == module.NAME


def test_active_is_the_keras_backend():
    assert keras.backend.backend() == active().NAME


def test_compiled_forward_matches_model_and_never_retraces(rng):
    model = make_mlp()
    fwd = CompiledForward(model)
    sizes = (1, 3, 17, 64, 5, 7, 2)
    for rows in sizes:
        x = rng.normal(size=(rows, 8)).astype("float32")
        (out,) = fwd([x])
        assert out.shape == (rows, 3)
        np.testing.assert_allclose(out, np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6)
    # Polymorphic (TensorFlow): one trace in all; otherwise (JAX) one per power-of-two bucket.
    assert fwd.traces == (1 if fwd.polymorphic else len({bucket(r) for r in sizes}))


def test_compiled_forward_reads_the_current_weights(rng):
    model = make_mlp(seed=1)
    fwd = CompiledForward(model)
    x = rng.normal(size=(4, 8)).astype("float32")
    (before,) = fwd([x])
    model.set_weights(make_mlp(seed=2).get_weights())
    (after,) = fwd([x])
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6)
    assert fwd.traces == 1


def test_compiled_forward_of_a_two_input_model_with_an_open_length_axis(rng):
    seq = keras.Input((None, 4), name="seq")
    extra = keras.Input((2,), name="extra")
    pooled = keras.layers.GlobalAveragePooling1D()(seq)
    out = keras.layers.Dense(3)(keras.layers.Concatenate()([pooled, extra]))
    model = keras.Model([seq, extra], out)
    fwd = CompiledForward(model, max_rows=4)
    for length in (3, 5):
        arrays = [rng.normal(size=(3, length, 4)).astype("float32"),
                  rng.normal(size=(3, 2)).astype("float32")]
        (got,) = fwd(arrays)
        assert got.shape == (3, 3)
        np.testing.assert_allclose(got, np.asarray(model(arrays, training=False)), rtol=1e-5, atol=1e-6)
    # TensorFlow keeps the model's open length axis open: one trace; JAX compiles per shape.
    assert fwd.traces == (1 if fwd.polymorphic else 2)
