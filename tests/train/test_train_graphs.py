"""Models with several inputs, integer inputs and graph-shaped frozen parts: data, training, the
frozen-feature cache over a cut of the graph, evaluation and prediction."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from graph_models import token_data, token_model, two_input_data, two_inputs

from reuse.data import Dataset, check_for_model, load_data, split_stratified, split_validation
from reuse.errors import InvalidInput
from reuse.service import Service
from reuse.train import TrainConfig, evaluate, finetune, predict, train
from reuse.train.fit import copy_model
from reuse.train.network import cache_split

CFG = TrainConfig(epochs=2, batch_size=8, optimizer="adam", lr=0.01, seed=3)


def residual_mlp(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8,), name="features")
    h = keras.layers.Dense(8, activation="relu", name="stem", trainable=False)(inp)
    r = keras.layers.Dense(8, activation="relu", name="block1", trainable=False)(h)
    r = keras.layers.Dense(8, name="block2", trainable=False)(r)
    h = keras.layers.Add(name="add")([h, r])
    h = keras.layers.Dense(6, activation="relu", name="head1")(h)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="head2")(h), name="res")


def mobilenet_head(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None, include_top=False)
    base.trainable = False
    inp = keras.Input((32, 32, 3), name="image")
    h = keras.layers.GlobalAveragePooling2D(name="gap")(base(inp))
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="head")(h), name="mnet")


def weights_by_layer(model) -> dict[str, list[np.ndarray]]:
    return {x.name: [np.array(w) for w in x.get_weights()] for x in model.layers}


def node_counts(model) -> dict[str, int]:
    return {x.name: len(x._inbound_nodes) for x in model._flatten_layers(include_self=False, recursive=True)}


# -- data ------------------------------------------------------------------------------------------

def test_npz_and_h5_with_named_arrays(tmp_path):
    import h5py

    arrays = two_input_data(n=12)
    np.savez(tmp_path / "d.npz", **arrays)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        for k, v in arrays.items():
            f[k] = v
        f["note"] = 1  # a scalar is metadata, not a feature array
    for name in ("d.npz", "d.h5"):
        ds = load_data(tmp_path / name)
        assert ds.named and list(ds.x) == ["x_left", "x_right"] and len(ds) == 12
        assert ds.n_features == {"x_left": (4,), "x_right": (3,)}
    part = ds.take(np.array([0, 3]))
    assert len(part) == 2 and np.array_equal(part.x["x_right"], arrays["x_right"][[0, 3]])
    tr, va = split_validation(ds, 0.25, seed=1)
    assert (len(tr), len(va)) == (9, 3) and va.x["x_left"].shape == (3, 4)
    tr, va = split_stratified(ds, 0.5)
    assert sorted(va.y.tolist()) == [0, 0, 1, 1, 2, 2]
    np.savez(tmp_path / "bad.npz", x_left=np.zeros((3, 4)), x_right=np.zeros((2, 3)), y=np.zeros(3))
    with pytest.raises(InvalidInput, match="feature arrays have different row counts"):
        load_data(tmp_path / "bad.npz")


def test_check_matches_arrays_to_inputs_by_name():
    model = two_inputs()
    arrays = two_input_data(n=6)
    y = arrays.pop("y")
    ds = check_for_model(Dataset({**arrays, "extra": np.zeros(6)}, y, "d"), model)
    assert list(ds.x) == ["x_left", "x_right"] and ds.x["x_left"].dtype == np.float32

    def err(x, source="d"):
        with pytest.raises(InvalidInput) as e:
            check_for_model(Dataset(x, y, source), model)
        return str(e.value)

    assert err({"x_left": arrays["x_left"]}) == (
        "d: no array for input(s) 'x_right' of model 'pair' (inputs: x_left, x_right; arrays found: x_left)")
    assert err({**arrays, "x_right": np.zeros((6, 5))}) == (
        "d: input 'x_right': samples have shape (5,) (5 values); model 'pair' expects samples of shape (3,)")
    assert err(np.zeros((6, 7))).startswith("d: model 'pair' takes 2 inputs (x_left, x_right); the "
                                            "data has one")
    nan = {**arrays, "x_left": np.full((6, 4), np.nan)}
    assert err(nan).startswith("d: input 'x_left': 24 NaN feature value(s)")


def test_integer_inputs_keep_their_type_and_refuse_fractions():
    model = token_model()
    ds = token_data(n=6)
    checked = check_for_model(ds, model)
    assert checked.x.dtype == np.int32 and not checked.named  # one input: one array
    as_float = check_for_model(Dataset(ds.x["tokens"].astype(np.float64), ds.y, "f"), model)
    assert as_float.x.dtype == np.int32 and np.array_equal(as_float.x, ds.x["tokens"])
    frac = ds.x["tokens"].astype(np.float32)
    frac[1, 2] = 2.5
    with pytest.raises(InvalidInput, match=r"f: input 'tokens': takes integers \(int32, e.g. token ids\); "
                                           r"found e.g. \[2.5\]"):
        check_for_model(Dataset(frac, ds.y, "f"), model)
    with pytest.raises(InvalidInput, match="do not fit int32"):
        check_for_model(Dataset(np.full((2, 5), 2**40), np.zeros(2, int), "big"), model)


# -- training, the cut, evaluation, prediction ------------------------------------------------------

def test_two_input_model_trains_evaluates_and_predicts():
    model = two_inputs(frozen_left=True)
    arrays = two_input_data()
    y = arrays.pop("y")
    ds = Dataset(arrays, y, "pair data")
    before = weights_by_layer(model)
    result = train(model, ds, CFG.with_(epochs=3, val_split=0.25))
    # The cut: the frozen left branch's output and the right input itself.
    assert result.cached_layers == ("left",)
    after = weights_by_layer(model)
    assert all(np.array_equal(a, b) for a, b in zip(before["left"], after["left"], strict=True))
    assert not np.array_equal(before["right"][0], after["right"][0])
    local = evaluate(model, ds)
    assert local["samples"] == 40 and 0.0 <= local["accuracy"] <= 1.0
    out = predict(model, arrays)
    np.testing.assert_allclose(out,
                               model.predict([arrays["x_left"], arrays["x_right"]], verbose=0), atol=1e-5)


def test_frozen_recurrent_layers_are_cached_their_dropout_off_unless_asked():
    model = token_model()
    result = train(model, token_data(), CFG)
    assert result.cached_layers == ("emb", "lstm")
    assert evaluate(model, token_data(seed=1))["samples"] == 32
    # Frozen layers run in inference mode, so a frozen LSTM's dropout is off and it is cached too...
    with_dropout = token_model(dropout=0.3)
    assert train(with_dropout, token_data(), CFG).cached_layers == ("emb", "lstm")
    # ...unless frozen layers follow the training flag, as in plain Keras: then its dropout is live.
    live = token_model(dropout=0.3)
    assert train(live, token_data(), CFG.with_(frozen_mode="training")).cached_layers == ("emb",)


def _same_training(build, data: Dataset, val: Dataset, cfg: TrainConfig, frozen: list[str]) -> None:
    a = build()
    b = copy_model(a)
    before = weights_by_layer(a)
    nodes = node_counts(a)
    ra = train(a, data, cfg, val=val)
    rb = train(b, data, cfg.with_(cache=False), val=val)
    assert ra.cached_layers and rb.cached_layers == ()
    assert node_counts(a) == nodes  # the model's own graph is unchanged by the split
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    for key in ra.metrics:
        assert ra.metrics[key] == pytest.approx(rb.metrics[key], rel=1e-4, abs=1e-5)
    after = weights_by_layer(a)
    for name in frozen:
        assert all(np.array_equal(x, z) for x, z in zip(before[name], after[name], strict=True)), name
    return ra


def test_cut_through_a_residual_block_gives_the_same_weights_as_no_cache():
    rng = np.random.default_rng(0)
    y = np.arange(48) % 3
    x = (rng.normal(size=(48, 8)) + y[:, None]).astype(np.float32)
    ra = _same_training(residual_mlp, Dataset(x, y, "res"), Dataset(x[:12], y[:12], "val"),
                        TrainConfig(epochs=3, batch_size=10, optimizer="adam", lr=0.01, seed=1),
                        ["stem", "block1", "block2"])
    assert ra.cached_layers == ("stem", "block1", "block2", "add")


@pytest.mark.slow
def test_frozen_mobilenet_base_is_cached_with_the_same_weights_as_no_cache():
    rng = np.random.default_rng(0)
    y = np.arange(32) % 3
    x = rng.uniform(size=(32, 32, 32, 3)).astype(np.float32)
    ra = _same_training(mobilenet_head, Dataset(x, y, "img"), Dataset(x[:8], y[:8], "val"),
                        TrainConfig(epochs=1, batch_size=16, optimizer="adam", lr=0.01, seed=2),
                        ["mobilenetv2_1.00_32"])
    assert ra.cached_layers == ("mobilenetv2_1.00_32", "gap")


def nested_base(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu", name="b1"),
                             keras.layers.BatchNormalization(name="bbn"),
                             keras.layers.Dense(8, activation="relu", name="b2"),
                             keras.layers.Dense(6, activation="relu", name="b3")], name="base")
    base.trainable = False
    inp = keras.Input((8,), name="features")
    h = keras.layers.Dense(5, activation="relu", name="head1")(base(inp))
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="head2")(h), name="outer")


def test_a_partly_unfrozen_nested_model_is_cached_up_to_its_trained_layers():
    rng = np.random.default_rng(0)
    y = np.arange(40) % 3
    x = (rng.normal(size=(40, 8)) + y[:, None]).astype(np.float32)
    data, val = Dataset(x, y, "d"), Dataset(x[:10], y[:10], "v")
    cfg = TrainConfig(epochs=2, batch_size=8, optimizer="adam", lr=0.01, seed=1)
    a = nested_base()
    b = copy_model(a)
    assert train(a, data, cfg).cached_layers == ("base",)  # frozen whole: one call
    train(b, data, cfg)
    before, nodes = weights_by_layer(a.get_layer("base")), node_counts(a)
    ra = finetune(a, "b3", data, cfg, val=val)
    rb = finetune(b, "b3", data, cfg.with_(cache=False), val=val)
    assert ra.cached_layers == ("b1", "bbn", "b2") and rb.cached_layers == ()
    assert node_counts(a) == nodes
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    after = weights_by_layer(a.get_layer("base"))
    assert all(
        np.array_equal(p, q) for n in ("b1", "bbn", "b2") for p, q in zip(before[n], after[n], strict=True)
    )
    assert not np.array_equal(before["b3"][0], after["b3"][0])


def test_a_nested_model_reusing_an_outer_layer_name_stays_one_call():
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="low", trainable=False),
                             keras.layers.Dense(8, name="top")], name="base")
    inp = keras.Input((8,), name="features")
    h = keras.layers.Dense(4, name="top")(base(inp))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="out")(h))
    assert cache_split(model, model.trainable_variables) is None
    assert train(model, Dataset(np.zeros((8, 8), np.float32), np.arange(8) % 3, "z"), CFG).cached_layers == ()


@pytest.mark.slow
def test_finetuning_the_top_of_a_nested_mobilenet_caches_the_frozen_blocks():
    rng = np.random.default_rng(0)
    y = np.arange(24) % 3
    x = rng.uniform(size=(24, 32, 32, 3)).astype(np.float32)
    data = Dataset(x, y, "img")
    cfg = TrainConfig(epochs=1, batch_size=8, optimizer="sgd", lr=0.01, seed=2)
    a = mobilenet_head()
    b = copy_model(a)
    scope = "block_16_.*|Conv_1|Conv_1_bn"
    ra = finetune(a, scope, data, cfg)
    rb = finetune(b, scope, data, cfg.with_(cache=False))
    assert "block_15_add" in ra.cached_layers and "block_16_expand" not in ra.cached_layers
    assert rb.cached_layers == () and ra.unfrozen == rb.unfrozen
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)


def test_no_cut_when_nothing_frozen_or_only_inputs_cross():
    model = two_inputs()
    assert cache_split(model, model.trainable_variables) is None
    frozen_all_but_head = two_inputs(frozen_left=True)
    frozen_all_but_head.get_layer("right").trainable = False
    split = cache_split(frozen_all_but_head, frozen_all_but_head.trainable_variables)
    assert split is not None and split.prefix_names == ("left", "right", "cat")
    assert len(split.rest.inputs) == 1


# -- through the service: files, train, evaluate, predict ------------------------------------------

def test_service_trains_evaluates_and_predicts_with_named_arrays(tmp_path):
    service = Service(tmp_path / "store")
    service.store.register(two_inputs(frozen_left=True), "pair")
    arrays = two_input_data()
    np.savez(tmp_path / "train.npz", **arrays)
    np.savez(tmp_path / "new.npz", x_left=arrays["x_left"][:5], x_right=arrays["x_right"][:5])
    o = service.train_model("pair", str(tmp_path / "train.npz"), options={"epochs": 2, "batch_size": 8})
    assert o.info.ref == "pair:2" and o.result.cached_layers == ("left",)
    r = service.evaluate_model("pair:2", str(tmp_path / "train.npz"))
    assert r["samples"] == 40
    p = service.predict_model("pair:2", str(tmp_path / "new.npz"))
    assert p.outputs.shape == (5, 3)
    np.savez(tmp_path / "half.npz", x_left=arrays["x_left"], y=arrays["y"])
    with pytest.raises(InvalidInput, match="no array for input\\(s\\) 'x_right'"):
        service.evaluate_model("pair:2", str(tmp_path / "half.npz"))


# -- the CSV label rule, string labels -------------------------------------------------------------

def test_predict_takes_the_last_csv_column_as_the_label_unless_told_there_is_none(tmp_path):
    from click.testing import CliRunner
    from conftest import make_mlp

    from reuse.cli import cli

    store = tmp_path / "store"
    Service(store).store.register(make_mlp(n_in=2, hidden=(4,), n_out=2), "m")
    rows = np.random.default_rng(0).normal(size=(4, 2)).round(3)
    (tmp_path / "labelled.csv").write_text("".join(f"{a},{b},{i % 2}\n" for i, (a, b) in enumerate(rows)))
    (tmp_path / "bare.csv").write_text("".join(f"{a},{b}\n" for a, b in rows))
    args = ["predict", "m", "--store", str(store), "--json", "--data"]
    run = CliRunner().invoke
    a = run(cli, [*args, str(tmp_path / "labelled.csv")], catch_exceptions=False)
    b = run(cli, [*args, str(tmp_path / "bare.csv"), "--no-label"], catch_exceptions=False)
    assert a.exit_code == 0 and b.exit_code == 0 and a.output == b.output.replace("bare.csv", "labelled.csv")
    bad = run(cli, [*args, str(tmp_path / "bare.csv")])
    assert bad.exit_code == 1 and "expects samples of shape (2,)" in bad.output
    ev = run(cli, ["evaluate", "m", "--store", str(store), "--data", str(tmp_path / "labelled.csv")])
    assert ev.exit_code == 0 and "(4 samples)" in ev.output
    assert "--no-label" in run(cli, ["predict", "--help"]).output


def test_string_labels_are_named_in_errors_and_their_mapping_is_shown(tmp_path):
    from click.testing import CliRunner
    from conftest import make_mlp

    from reuse.cli import cli

    store = tmp_path / "store"
    Service(store).store.register(make_mlp(n_in=2, hidden=(4,), n_out=2), "m")
    (tmp_path / "few.csv").write_text("a,b,kind\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,dog\n")
    (tmp_path / "many.csv").write_text("a,b,kind\n1,2,cat\n3,4,dog\n5,6,emu\n7,8,fox\n")
    run = CliRunner().invoke
    ok = run(cli, ["train", "m", "--store", str(store), "--data", str(tmp_path / "few.csv"), "--epochs", "1",
                   "--quiet"], catch_exceptions=False)
    assert (
        ok.exit_code == 0 and "labels mapped to classes (recorded with the model): 0 cat, 1 dog" in ok.output
    )
    assert Service(store).store.info("m:2").class_names == ["cat", "dog"]
    bad = run(cli, ["train", "m:1", "--store", str(store), "--data", str(tmp_path / "many.csv")])
    assert bad.exit_code == 1
    assert "labels ['emu', 'fox'] are out of range for model" in bad.output
    assert "labels must be integers 0..1 or class names" in bad.output
    unknown = run(cli, ["evaluate", "m:2", "--store", str(store), "--data", str(tmp_path / "many.csv")])
    assert unknown.exit_code == 1
    assert "labels ['emu', 'fox'] are not among the classes ['cat', 'dog']; labels must be integers 0..1" \
        in unknown.output
