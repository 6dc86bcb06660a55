"""Building networks from reused layers: copies, freezing, training, gaps, chains, shapes, lineage."""

from __future__ import annotations

import hashlib
import json

import h5py
import keras
import numpy as np
import pytest

from reuse.build import build_network
from reuse.errors import IncompatibleShapes, InvalidInput, NoLayersMatched, StoreCorrupt, UnsafeModel
from reuse.heads import parse_head
from reuse.store import ModelStore
from reuse.train.finetune import set_trainable
from tests.conftest import make_mlp

X = np.random.default_rng(1).normal(size=(64, 8)).astype("float32")
Y = np.random.default_rng(2).integers(0, 3, size=64)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_bits(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=False)
    )


def _fit(model, epochs=2, x=X, y=Y):
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> ModelStore:
    """One store with the bases most tests use (built once per module)."""
    store = ModelStore(tmp_path_factory.mktemp("bases") / "store")
    mlp = make_mlp(batchnorm=True)
    _fit(mlp, epochs=1)  # moving statistics away from their initial 0/1
    store.register(mlp, "mlp")

    keras.utils.set_random_seed(1)
    store.register(keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(10, activation="relu", name="hidden1"),
        keras.layers.Dropout(0.5, name="drop1"), keras.layers.GaussianNoise(0.1, name="noise1"),
        keras.layers.Dense(6, activation="relu", name="hidden2"), keras.layers.Dense(3, name="out"),
    ]), "drop")

    inp = keras.Input((12, 12, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Reshape((25, 4), name="reshape")(x)
    x = keras.layers.Conv1D(3, 2, name="conv1d")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(5, name="fc")(x)
    x = keras.layers.Activation("relu", name="act")(x)
    store.register(keras.Model(inp, keras.layers.Dense(2, name="logits")(x), name="cnn"), "cnn")

    inp = keras.Input((8,), name="x")
    a = keras.layers.Dense(6, name="a")(inp)
    b = keras.layers.Dense(6, name="b")(a)
    c = keras.layers.Dense(6, name="c")(a)
    s = keras.layers.Add(name="add")([b, c])
    shared = keras.layers.Dense(6, name="shared")
    t = shared(shared(s))
    store.register(keras.Model(inp, keras.layers.Dense(2, name="top")(t)), "branchy")
    return store


def test_copies_are_new_layers_with_bit_identical_weights(bases):
    built = build_network(bases, "mlp", "hidden[12]|bn[12]", head="dense:4:relu", classes=3, seed=0)
    names = ["hidden1", "bn1", "hidden2", "bn2"]
    stored = bases.read_layer_weights("mlp", names)
    base = bases.load("mlp")
    for name in names:
        layer = built.model.get_layer(name)
        assert same_bits(layer.get_weights(), stored[name]), name
        assert layer is not base.get_layer(name)
        assert not layer.trainable
    # the reused block computes exactly what it computed in the base
    cut = keras.Model(base.inputs, base.get_layer("bn2").output)
    sub = keras.Model(built.model.inputs, built.model.get_layer("bn2").output)
    np.testing.assert_array_equal(sub.predict(X, verbose=0), cut.predict(X, verbose=0))
    assert [layer.name for layer in built.model.layers] == ["features", *names, "head1_dense", "output"]


def test_training_leaves_frozen_layers_and_the_base_file_untouched(bases):
    path = bases.path("mlp")
    before = sha256(path)
    built = build_network(bases, "mlp", "hidden[12]|bn[12]", head="dense:4:relu,batchnorm", classes=3, seed=0)
    head_before = built.model.get_layer("head1_dense").get_weights()
    _fit(built.model, epochs=3)
    stored = bases.read_layer_weights("mlp", ["hidden1", "bn1", "hidden2", "bn2"])
    for name, weights in stored.items():
        assert same_bits(built.model.get_layer(name).get_weights(), weights), name
    bn = built.model.get_layer("bn2")  # frozen BN: moving statistics as copied, and not the 0/1 defaults
    assert same_bits([bn.moving_mean.numpy(), bn.moving_variance.numpy()], stored["bn2"][2:])
    assert not np.allclose(stored["bn2"][2], 0)
    assert not same_bits(built.model.get_layer("head1_dense").get_weights(), head_before)
    head_bn = built.model.get_layer("head2_batchnorm")  # the head's own BN does train
    assert not np.allclose(head_bn.moving_mean.numpy(), 0)
    assert sha256(path) == before


def test_trainable_subset_trains(bases):
    built = build_network(bases, "mlp", "hidden[12]|bn[12]", trainable="hidden2|bn2", classes=3, seed=0)
    assert {layer.name for layer in built.model.layers if layer.trainable and layer.weights} == {
        "hidden2", "bn2", "output"}
    _fit(built.model, epochs=3)
    stored = bases.read_layer_weights("mlp", ["hidden1", "bn1", "hidden2", "bn2"])
    assert same_bits(built.model.get_layer("hidden1").get_weights(), stored["hidden1"])
    assert same_bits(built.model.get_layer("bn1").get_weights(), stored["bn1"])
    assert not same_bits(built.model.get_layer("hidden2").get_weights(), stored["hidden2"])
    moving = built.model.get_layer("bn2").get_weights()[2:]
    assert not same_bits(moving, stored["bn2"][2:])  # a trainable BN updates its statistics


def test_set_trainable_after_compile_recompiles(bases):
    built = build_network(bases, "drop", "hidden", match="prefix", classes=3, seed=0)
    model = built.model
    assert [n["name"] for n in built.lineage["layers"]] == ["hidden1", "hidden2"]
    _fit(model, epochs=1)
    frozen = model.get_layer("hidden1").get_weights()
    assert set_trainable(model, "hidden1", True) == ["hidden1"]
    model.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    assert not same_bits(model.get_layer("hidden1").get_weights(), frozen)
    # and back: freezing the output after compile stops it training
    assert set_trainable(model, "out.*", False) == ["output"]
    out = model.get_layer("output").get_weights()
    model.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    assert same_bits(model.get_layer("output").get_weights(), out)


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
def test_set_trainable_marks_uncompilable_models_uncompiled():
    model = make_mlp()
    model.compile(optimizer="sgd", loss=lambda y, p: keras.ops.mean(keras.ops.square(p)))
    set_trainable(model, "hidden1", False)
    assert not model.compiled
    with pytest.raises(ValueError, match="compile"):
        model.fit(X, Y, epochs=1, verbose=0)


def test_lineage_records_base_layers_head_scope_and_trainable(bases):
    built = build_network(bases, "mlp", "hidden[12]|bn[12]", trainable="hidden2",
                          head="dense:4:relu,dropout:0.1", classes=3)
    lin = json.loads(json.dumps(built.lineage))  # JSON-safe, as the store keeps it
    assert lin["base"] == {"name": "mlp", "version": 1}
    assert (lin["scope"], lin["match"], lin["trainable"]) == ("hidden[12]|bn[12]", "full", "hidden2")
    assert lin["head"] == "dense:4:relu:glorot_uniform,dropout:0.1"
    assert lin["head_spec"] == parse_head(lin["head"]).to_dict()
    assert lin["output"] == {"classes": 3}
    assert lin["input_shape"] == [8]
    assert [(x["name"], x["trainable"], x["from"]) for x in lin["layers"]] == [
        (n, n == "hidden2", {"name": "mlp", "version": 1, "layer": n})
        for n in ["hidden1", "bn1", "hidden2", "bn2"]
    ]
    assert lin["layers"][0]["params"] == 8 * 16 + 16
    assert lin["skipped"] == [] and lin["head_layers"] == ["head1_dense", "head2_dropout", "output"]


def test_dropout_and_noise_gaps_are_skipped(bases):
    built = build_network(bases, "drop", "hidden[12]", regression=True)
    assert [layer.name for layer in built.model.layers][1:] == ["hidden1", "hidden2", "output"]
    assert built.lineage["skipped"] == [{"name": "drop1", "class_name": "Dropout"},
                                        {"name": "noise1", "class_name": "GaussianNoise"}]
    base = bases.load("drop")
    cut = keras.Model(base.inputs, base.get_layer("hidden2").output)
    sub = keras.Model(built.model.inputs, built.model.get_layer("hidden2").output)
    np.testing.assert_array_equal(sub.predict(X, verbose=0), cut.predict(X, verbose=0))
    assert built.model.output_shape == (None, 1)


def test_other_gaps_are_refused_with_a_scope_that_works(bases):
    with pytest.raises(IncompatibleShapes) as exc:
        build_network(bases, "mlp", "hidden[12]", classes=3)
    assert str(exc.value) == (
        "unselected layer(s) bn1 (BatchNormalization) sit between selected layers hidden1 and hidden2, and "
        "hidden2 was trained on their output; select it too, e.g. --reuse 'hidden[12]|bn1', or end the "
        "selection at hidden1")
    assert build_network(bases, "mlp", "hidden[12]|bn1", classes=3).lineage["skipped"] == []
    with pytest.raises(IncompatibleShapes, match=r"pool1 \(MaxPooling2D\), reshape \(Reshape\) sit between"):
        build_network(bases, "cnn", "conv1|conv1d", classes=2)


def test_functional_cnn_chain(bases):
    built = build_network(bases, "cnn", "conv1|pool1|reshape|conv1d|flat|fc|act", head="dense:3:tanh")
    base = bases.load("cnn")
    img = np.random.default_rng(3).normal(size=(4, 12, 12, 1)).astype("float32")
    cut = keras.Model(base.inputs, base.get_layer("act").output)
    sub = keras.Model(built.model.inputs, built.model.get_layer("act").output)
    np.testing.assert_array_equal(sub.predict(img, verbose=0), cut.predict(img, verbose=0))
    assert built.model.input_shape == (None, 12, 12, 1) and built.model.output_shape == (None, 3)
    assert built.model.layers[0].name == "image"


def test_input_shape_override_and_shape_mismatch(bases):
    conv_only = build_network(bases, "cnn", "conv1|pool1", head="maxout:2", input_shape=(20, 20, 1))
    assert conv_only.model.output_shape == (None, 9, 9, 2)
    with pytest.raises(IncompatibleShapes) as exc:
        build_network(bases, "cnn", "conv1|pool1|reshape", classes=2, input_shape=(20, 20, 1))
    assert "layer reshape (Reshape) cannot take the output of layer pool1, of shape (None, 9, 9, 4)" in str(
        exc.value
    )
    with pytest.raises(IncompatibleShapes) as exc:
        build_network(bases, "mlp", "hidden1", classes=3, input_shape=(5,))
    assert str(exc.value) == ("layer hidden1 (Dense) gets input of shape (None, 5) here, which gives it "
                              "weights of shapes [(5, 16), (16,)], but its weights in mlp:1 have shapes [(8, "
                              "16), (16,)]")
    with pytest.raises(IncompatibleShapes,
                       match=r"head layer 'maxout:5' cannot take the output of layer hidden1"):
        build_network(bases, "mlp", "hidden1", head="maxout:5", classes=3)
    with pytest.raises(InvalidInput, match="invalid input shape"):
        build_network(bases, "mlp", "hidden1", classes=3, input_shape=(0,))


def test_selection_starting_above_the_bottom_takes_its_recorded_input_shape(bases):
    built = build_network(bases, "mlp", "hidden[23]|bn[23]", classes=3)
    assert built.lineage["input_shape"] == [16] and built.model.input_shape == (None, 16)
    assert build_network(bases, "cnn", "flat|fc", classes=2).model.input_shape == (None, 24, 3)


def test_branches_adds_and_shared_layers_replay(bases):
    base = bases.load("branchy")
    x = np.random.default_rng(4).normal(size=(5, 8)).astype("float32")
    # add reads b (selected) and c (not): c's output becomes a second input of the new network
    two = build_network(bases, "branchy", "b|add", classes=2)
    assert [e["from"] for e in two.lineage["inputs"]] == ["a", "c"]
    assert [t.name for t in two.model.inputs] == ["a_output", "c_output"]
    # the whole diamond, and a layer the base calls twice (its second call reads its first)
    full = build_network(bases, "branchy", "a|b|c|add|shared", classes=2)
    sub = keras.Model(full.model.inputs, full.model.get_layer("output").input)
    cut = keras.Model(base.inputs, base.get_layer("top").input)
    np.testing.assert_allclose(sub.predict(x, verbose=0), cut.predict(x, verbose=0), rtol=1e-6)


def test_a_selection_that_ends_twice_is_refused(bases):
    with pytest.raises(IncompatibleShapes) as exc:
        build_network(bases, "branchy", "a|b|c", classes=2)
    assert str(exc.value).startswith("the selection ends in 2 tensors (outputs of b, c), but a head "
                                     "reads one")


def test_a_chain_inside_a_branching_graph_is_fine(bases):
    built = build_network(bases, "branchy", "a|b", classes=2)
    assert [x["name"] for x in built.lineage["layers"]] == ["a", "b"]
    assert built.lineage["left_out"] == {"a": ["c"]}


def test_unsafe_layers_are_refused_only_when_selected(store):
    inp = keras.Input((4,))
    x = keras.layers.Dense(3, name="d")(inp)
    out = keras.layers.Lambda(lambda t: t * 2, name="lam")(x)
    store.register(keras.Model(inp, out), "lam")
    with pytest.raises(UnsafeModel, match="layer lam is a Lambda layer"):
        build_network(store, "lam", "d|lam", classes=2)
    assert build_network(store, "lam", "d", classes=2).model.output_shape == (None, 2)


def test_reads_only_the_selected_layers(store, tiny_model):
    info = store.register(tiny_model, "base")
    with h5py.File(info.path, "r+") as f:  # damage a layer that is not selected
        group = f["model_weights/output"]
        ds = group[group.attrs["weight_names"][0]]
        ds[0, 0] = ds[0, 0] + 1.0
    with pytest.raises(StoreCorrupt, match="checksum mismatch"):
        store.load("base")
    built = build_network(store, "base", "hidden[12]", classes=2)
    assert built.model.output_shape == (None, 2)


def test_pattern_errors(bases):
    with pytest.raises(NoLayersMatched, match="layers are: hidden1, bn1, hidden2, bn2, hidden3, bn3, output"):
        build_network(bases, "mlp", "conv.*", classes=3)
    with pytest.raises(NoLayersMatched, match="scope 'hidden3' .* layers are: hidden1, bn1$"):
        build_network(bases, "mlp", "hidden1|bn1", trainable="hidden3", classes=3)
    with pytest.raises(InvalidInput, match="nothing to put on top"):
        build_network(bases, "mlp", "hidden1")


def test_head_string_and_file_build_the_same_network(bases, tmp_path):
    from reuse.heads import load_head_file

    text = (
        "dense:6:leaky_relu=0.1:he_normal:l2=0.001,batchnorm,dropout:0.2,dense:4:selu:lecun_normal,maxout:2"
    )
    (tmp_path / "head.yaml").write_text(
        "layers:\n"
        "  - {type: dense, units: 6, activation: leaky_relu, slope: 0.1, initializer: he_normal, l2: 0.001}\n"
        "  - {type: batchnorm}\n  - {type: dropout, rate: 0.2}\n"
        "  - {type: dense, units: 4, activation: selu, initializer: lecun_normal}\n  - {type: maxout, "
        "units: 2}\n")
    a = build_network(bases, "mlp", "hidden1|bn1", head=text, classes=3, seed=7).model
    b = build_network(bases, "mlp", "hidden1|bn1", head=load_head_file(tmp_path / "head.yaml"), classes=3,
                      seed=7).model
    assert a.get_config() == b.get_config()
    assert [(type(x).__name__, x.output.shape) for x in a.layers] == [(type(x).__name__, x.output.shape)
                                                                       for x in b.layers]
    assert same_bits(a.get_weights(), b.get_weights())


def test_built_network_registers_and_loads_in_safe_mode(bases, tmp_path):
    store = ModelStore(tmp_path / "s")
    built = build_network(bases, "mlp", "hidden1|bn1", head="dense:8,maxout:4", regression=2, name="new")
    info = store.register(built.model, "new", lineage=built.lineage)
    assert store.info("new").lineage == json.loads(json.dumps(built.lineage))
    loaded = store.load("new", safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), built.model.predict(X, verbose=0))
    assert [layer.trainable for layer in loaded.layers if layer.name in ("hidden1", "bn1")] == [False, False]
    assert info.output_shape == [None, 2]
