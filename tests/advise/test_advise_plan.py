"""Advisor planning (depths, scopes), the stratified split, the shared feature cache, fresh copies."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import make_mlp
from train_helpers import toy_data

from reuse.advise.plan import depth_layers, parse_depths, plan_candidates, split_scopes
from reuse.advise.runner import fresh_copy
from reuse.data import Dataset, split_stratified
from reuse.errors import InvalidInput, NoLayersMatched
from reuse.train import TrainConfig, train
from reuse.train.features import FeatureCache

DEPTHS = [
    (None, 5, (0, 1, 2, 3, 4, 5)),
    ("0..N", 3, (0, 1, 2, 3)),
    ("0..3", 5, (0, 1, 2, 3)),
    ("1..2,0", 5, (0, 1, 2)),
    ("0,1,3", 5, (0, 1, 3)),
    ("3, 3 ,1", 5, (1, 3)),
    ("N", 4, (4,)),
    ([2, 0], 3, (0, 2)),
]


@pytest.mark.parametrize(("text", "n", "expected"), DEPTHS)
def test_parse_depths(text, n, expected):
    assert parse_depths(text, n, "base") == expected


@pytest.mark.parametrize(("text", "message"), [
    ("0..7", "depth 4 is out of range: base allows depths 0..3"),
    ("5", "depth 5 is out of range"),
    ("a", "invalid depths 'a': expected e.g. 0..N, 0..3 or 0,1,3 (N = 3, the deepest for base)"),
    ("3..1", "invalid depths '3..1'"),
    ("1,,2", "invalid depths"),
    ("-1", "invalid depths"),
])
def test_parse_depths_refuses(text, message):
    with pytest.raises(InvalidInput,
                       match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_depths(text, 3, "base")


@pytest.mark.parametrize(("text", "expected"), [
    ("hidden1,hidden[12],hidden[123]", ["hidden1", "hidden[12]", "hidden[123]"]),
    ("h{1,3}, (a|b),c", ["h{1,3}", "(a|b)", "c"]),
    (r"a\,b,c", [r"a\,b", "c"]),
    ("[,],x", ["[,]", "x"]),
])
def test_split_scopes(text, expected):
    assert split_scopes(text) == expected


def _conv_like(store):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.Input((8,), name="features"),
        keras.layers.Dense(6, name="d1"), keras.layers.BatchNormalization(name="bn1"),
        keras.layers.Activation("relu", name="act1"), keras.layers.Dropout(0.5, name="drop1"),
        keras.layers.Dense(5, activation="relu", name="d2"), keras.layers.Dropout(0.2, name="drop2"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    store.register(m, "mixed")


def test_depths_count_layers_with_weights_and_never_select_dropout(store):
    _conv_like(store)
    assert depth_layers(store, "mixed") == [("d1",), ("d1", "bn1", "act1"), ("d1", "bn1", "act1", "d2")]
    plan = plan_candidates(store, "mixed", depths="0,1,3")
    assert plan.max_depth == 3 and plan.depths == (0, 1, 3)
    assert plan.plans[3].scope == "d1|bn1|act1|d2" and plan.scratch.layers == plan.plans[3].layers
    only_scratch = plan_candidates(store, "mixed", depths="0")
    assert only_scratch.scratch.layers == ("d1", "bn1", "act1", "d2")


def test_scopes_are_the_candidates(store):
    store.register(make_mlp(), "mlp")
    plan = plan_candidates(store, "mlp", scopes=["hidden1", "hidden[12]"])
    assert plan.depths == (0, 1, 2) and plan.plans[2].layers == ("hidden1", "hidden2")
    assert plan.scratch.scope == "hidden[12]" and plan.scratch.given
    with pytest.raises(NoLayersMatched, match="scope 'conv.*' .* matched no layer"):
        plan_candidates(store, "mlp", scopes=["hidden1", "conv.*"])
    with pytest.raises(InvalidInput, match="depth 3 is out of range: 2 scope"):
        plan_candidates(store, "mlp", scopes=["hidden1", "hidden[12]"], depths="0..3")


def test_a_base_with_nothing_below_its_output_is_refused(store):
    keras.utils.set_random_seed(0)
    store.register(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="only")]), "flat")
    with pytest.raises(InvalidInput, match="flat:1 has no layer with weights below its output layer"):
        plan_candidates(store, "flat")


def test_stratified_split_keeps_every_class_on_both_sides():
    y = np.array([0] * 8 + [1] * 4 + [2] * 2 + [3])
    ds = Dataset(np.arange(len(y), dtype=np.float32).reshape(-1, 1), y, "s")
    tr, va = split_stratified(ds, 0.25, seed=1)
    assert sorted(va.y.tolist()) == [0, 0, 1, 2] and len(tr) == 11 and 3 in tr.y
    assert not set(tr.x[:, 0]) & set(va.x[:, 0])
    assert split_stratified(ds, 0.25, seed=1)[1].x.tolist() == va.x.tolist()
    with pytest.raises(InvalidInput, match="needs one integer class label"):
        split_stratified(Dataset(ds.x, y.astype(np.float32), "f"), 0.25)


def test_feature_cache_is_shared_only_for_the_same_frozen_weights():
    data, val = toy_data(40), toy_data(20, seed=1)
    cache = FeatureCache()
    results = []
    for _ in range(2):
        m = make_mlp()
        m.get_layer("hidden1").trainable = False
        results.append(train(m, data, TrainConfig(epochs=3), val=val, features=cache))
    assert (cache.misses, cache.hits) == (1, 1)
    assert results[1].metrics == results[0].metrics and results[1].cached_layers == ("hidden1",)
    other = make_mlp(seed=5)
    other.get_layer("hidden1").trainable = False
    train(other, data, TrainConfig(epochs=1), val=val, features=cache)
    assert cache.misses == 2 and len(cache) == 2


def test_fresh_copy_reinitialises_every_layer_from_the_seed():
    m = make_mlp()
    m.get_layer("hidden1").trainable = False
    a, b, c = fresh_copy(m, 0), fresh_copy(m, 0), fresh_copy(m, 1)
    assert all(layer.trainable for layer in a.layers)
    wa, wb, wc = a.get_weights(), b.get_weights(), c.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))
    assert not np.array_equal(wa[0], wc[0]) and not np.array_equal(wa[0], m.get_weights()[0])
    assert [x.name for x in a.layers] == [x.name for x in m.layers]
