"""``reuse rank`` on a real store of bases of graded relatedness: its order against heads trained in the
test, raw pixels as the bar, LogME against a direct NumPy computation on the same features, one pass per
model, conv bases cut by block."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from logme_reference import best_direct
from rank_helpers import BASES, TARGET, TARGET_VAL, graded
from scipy.stats import kendalltau

from reuse.build import build_network
from reuse.data import Dataset, load_data
from reuse.rank import rank
from reuse.rank.cuts import plan_model
from reuse.rank.features import feature_passes
from reuse.rank.scores import Task
from reuse.store import ModelStore
from reuse.train import TrainConfig, train


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return graded(tmp_path_factory)


@pytest.fixture(scope="module")
def ranking(env):
    return rank(ModelStore(env.store), load_data(TARGET))


@pytest.fixture(scope="module")
def heads(env):
    """The validation accuracy of a frozen softmax head trained on each cut (what `advise` measures)."""
    store, data, val = ModelStore(env.store), load_data(TARGET), load_data(TARGET_VAL)
    out = {}
    for name in BASES:
        for depth in (1, 2, 3):
            scope = "|".join(f"hidden{i}" for i in range(1, depth + 1))
            model = build_network(store, name, scope, classes=5, seed=0).model
            result = train(model, data, TrainConfig(epochs=150, early_stopping=10, lr=0.01, seed=0), val=val)
            out[(name, depth)] = result.metrics["val_accuracy"]
    return out


def test_rank_orders_the_bases_as_trained_heads_do(ranking, heads):
    assert len(ranking.candidates) == 15 and not ranking.not_ranked
    ours = [-c.rank for c in ranking.candidates]
    trained = [heads[(c.model, c.depth)] for c in ranking.candidates]
    tau = kendalltau(ours, trained).statistic
    assert tau >= 0.6, (tau, [(c.model, c.depth, c.rank, heads[(c.model, c.depth)])
                              for c in ranking.candidates])
    best_head = max(heads, key=heads.get)
    top = ranking.candidates[0]
    assert top.model == best_head[0] == "all10"
    assert heads[(top.model, top.depth)] >= heads[best_head] - 0.02


def test_untrained_and_random_label_bases_rank_below_raw_pixels(ranking):
    base = ranking.baseline
    assert base.model is None and base.width == 64 and base.rank is not None
    weak = [c for c in ranking.candidates if c.model in ("untrained", "randlab")]
    assert len(weak) == 6
    for c in weak:
        assert c.rank > base.rank, (c.model, c.depth)
        assert c.scores["logme"] < base.scores["logme"], (c.model, c.depth)
        assert c.scores["knn"] < base.scores["knn"], (c.model, c.depth)
    assert ranking.recommendation()["beats_baseline"] is True


def test_logme_matches_a_direct_numpy_evidence_on_the_same_features(env, ranking):
    store, data = ModelStore(env.store), load_data(TARGET)
    built = build_network(store, "d04", "hidden1|hidden2", regression=True)
    features = keras.Model(built.model.inputs, built.model.get_layer("hidden2").output)
    f = np.asarray(features([data.x]), dtype=np.float64)
    ours = next(c for c in ranking.candidates if c.model == "d04" and c.depth == 2)
    assert ours.width == 32 and ours.layers == ("hidden1", "hidden2")
    assert ours.scores["logme"] == pytest.approx(best_direct(f, Task.of(data.y).targets()), abs=1e-5)


def test_one_pass_per_model_built_from_only_the_layers_up_to_the_deepest_cut(env):
    store = ModelStore(env.store)
    plan = plan_model(store, "all10:1", load_data(TARGET))
    passes, reasons = feature_passes(store, plan)
    assert not reasons and len(passes) == 1
    fp = passes[0]
    assert [c.depth for c in fp.cuts] == [1, 2, 3] and fp.widths == (32, 32, 32)
    dense = [x.name for x in fp.model.layers if isinstance(x, keras.layers.Dense)]
    assert dense == ["hidden1", "hidden2", "hidden3"]  # the output layer was never read
    # A cut that reads another layer's output cannot take the data: it gets a reason, not a pass.
    plan = plan_model(store, "all10:1", load_data(TARGET), scopes=["hidden1", "hidden2"])
    assert plan.cuts[0].reason is None and "reads the output of hidden1" in plan.cuts[1].reason


def _residual_base() -> keras.Model:
    keras.utils.set_random_seed(0)
    x = inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem_conv")(x)
    for b in (1, 2):
        y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"block{b}_conv1")(x)
        y = keras.layers.Conv2D(8, 3, padding="same", name=f"block{b}_conv2")(y)
        y = keras.layers.Add(name=f"block{b}_add")([x, y])
        x = keras.layers.Activation("relu", name=f"block{b}_out")(y)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(5, activation="softmax", name="probs")(x), name="resnet")


def test_conv_bases_are_cut_block_by_block_and_their_maps_pooled(tmp_path):
    store = ModelStore(tmp_path / "store")
    store.register(_residual_base(), "resnet")
    digits = load_data(TARGET)
    data = Dataset(digits.x.reshape(-1, 8, 8, 1), digits.y, "digits as 8x8 images")
    auto = rank(store, data)
    ends = {c.depth: c.layers[-1] for c in auto.candidates}
    # The advisor's depths 2 and 4 end inside a block (its Add still reads the block's input): left out. The
    # last depth carries the weightless pooling after block 2, as the advisor's does.
    assert ends == {1: "stem_conv", 3: "block1_out", 5: "gap"}, ends
    assert any("2 of the advisor's depths end inside a block" in w for w in auto.warnings)
    assert all(c.width == 8 for c in auto.candidates)  # (rows, 8, 8, 8) maps pooled over positions
    by_block = rank(store, data, blocks="block{1..2}_")
    assert sorted((c.depth, c.layers[-1]) for c in by_block.candidates) == [(1, "block1_out"),
                                                                            (2, "block2_out")]
    one = next(c for c in by_block.candidates if c.depth == 1)
    same = next(c for c in auto.candidates if c.layers == one.layers)
    assert one.scores == pytest.approx(same.scores)


def test_the_pass_reads_batches_and_stops_between_them(env):
    import threading

    from reuse.rank.features import batches, run_pass

    data = load_data(TARGET)
    named = Dataset({"pixels": data.x, "other": data.x[:, :3]}, data.y, "named")
    parts = list(batches(named, 30))
    assert [len(p["pixels"]) for p in parts] == [30, 30, 30, 10] and set(parts[0]) == {"pixels", "other"}
    store = ModelStore(env.store)
    (fp,), _ = feature_passes(store, plan_model(store, "d04:1", data))
    asked = []

    def stop():
        asked.append(1)
        return "budget" if len(asked) > 2 else None

    feats, done, why = run_pass(fp, data, "d04:1", rows=30, stop=stop)
    assert (done, why) == (60, "budget") and len(feats) == 3 and feats[0].shape == (100, 32)
    cancel = threading.Event()
    cancel.set()
    stopped = rank(store, data, models="d04", cancel=cancel)
    assert stopped.stopped == "cancelled" and not stopped.candidates
    assert [n.reason for n in stopped.not_ranked] == ["not started: cancelled"]
