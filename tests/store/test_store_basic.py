from __future__ import annotations

import numpy as np


def test_round_trip_predictions(store, tiny_model, rng):
    x = rng.normal(size=(16, 8)).astype("float32")
    info = store.register(tiny_model, "base", description="tiny")
    assert info.ref == "base:1"
    loaded = store.load("base")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), tiny_model.predict(x, verbose=0), atol=1e-6)
