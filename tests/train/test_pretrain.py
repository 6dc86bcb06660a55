"""Greedy layer-wise pretraining: depths, frozen layers, table, registration (few epochs)."""

from __future__ import annotations

import pytest

from reuse.data import load_data
from reuse.errors import InvalidInput
from reuse.service import Service
from reuse.train.events import TrainStarted
from reuse.train.pretrain import PretrainConfig, pretrain

BLOBS = "builtin:blobs?per_class=40"


def test_supervised_grows_one_frozen_layer_at_a_time():
    events = []
    cfg = PretrainConfig(layers=3, units=6, mode="supervised", epochs=4)
    res = pretrain(load_data(BLOBS), cfg, test=load_data("builtin:blobs?split=test&per_class=20"),
                   progress=events.append)
    assert [r.depth for r in res.table] == [1, 2, 3]
    assert all(0.0 <= r.train_accuracy <= 1.0 and r.test_accuracy is not None for r in res.table)
    names = [layer.name for layer in res.model.layers]
    assert names == ["scale", "hidden1", "hidden2", "hidden3", "output"]
    assert [res.model.get_layer(n).trainable for n in names] == [False, False, False, True, True]
    started = [e for e in events if isinstance(e, TrainStarted)]
    assert [(e.phase, e.phases) for e in started] == [(1, 3), (2, 3), (3, 3)]
    assert started[2].cached_layers == ("scale", "hidden1", "hidden2")


def test_unsupervised_with_finetune():
    cfg = PretrainConfig(layers=2, units=5, mode="unsupervised", epochs=3, finetune=True)
    res = pretrain(load_data(BLOBS), cfg)
    assert [r.depth for r in res.table] == [1, 2]
    assert all(r.reconstruction is not None and r.test_accuracy is None for r in res.table)
    assert [layer.trainable for layer in res.model.layers] == [False, True, True, True]
    assert [p["stage"] for p in res.phases] == ["unsupervised", "unsupervised", "finetune"]


def test_registration_stores_the_table(tmp_path):
    svc = Service(tmp_path / "store")
    cfg = PretrainConfig(layers=2, units=4, mode="supervised", epochs=2)
    out = svc.pretrain_model("deep", BLOBS, config=cfg)
    assert out.info.ref == "deep:1" and out.test == "builtin:blobs?per_class=40&split=test"
    info = svc.model_info("deep")
    assert [row["depth"] for row in info.metrics["depths"]] == [1, 2]
    assert "test_accuracy" in info.metrics and info.lineage["steps"][0]["op"] == "pretrain"
    assert info.settings["layers"] == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "greedy"}, "invalid pretraining mode 'greedy'"),
    ({"layers": 0}, "invalid number of layers 0"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        PretrainConfig(**kwargs)


@pytest.mark.parametrize("seed", [5, 7])
def test_default_unsupervised_recipe_stays_healthy(seed):
    """Seeds where the published recipe diverged (bench/pretrain_blobs.py); short run here."""
    cfg = PretrainConfig(layers=2, units=10, mode="unsupervised", epochs=30, seed=seed)
    res = pretrain(load_data("builtin:blobs"), cfg, test=load_data("builtin:blobs?split=test"))
    for row in res.table:
        assert row.reconstruction is not None and row.reconstruction < 1.0
        assert row.test_accuracy > 0.7
