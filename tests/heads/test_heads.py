"""Head specs: the short string, the JSON/YAML file, their equivalence, errors, and the Keras layers."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import yaml

from reuse.errors import IncompatibleShapes, InvalidInput
from reuse.heads import (
    MAX_HEAD_FILE_BYTES,
    head_from_dict,
    head_from_text,
    load_head_file,
    parse_head,
    read_head,
)
from reuse.heads.layers import apply_head, head_layers
from reuse.heads.spec import (
    ActivationSpec,
    BatchNormSpec,
    DenseSpec,
    DropoutSpec,
    FlattenSpec,
    GlobalAvgPoolSpec,
    GlobalMaxPoolSpec,
    HeadSpec,
    MaxoutSpec,
)
from reuse.layers.maxout import Maxout

EXAMPLE = "dense:64:relu:he_normal,batchnorm,dropout:0.2,dense:5:softmax"
EXAMPLE_SPEC = HeadSpec((DenseSpec(64, "relu", initializer="he_normal"), BatchNormSpec(), DropoutSpec(0.2),
                         DenseSpec(5, "softmax")))

VALID = [
    (EXAMPLE, EXAMPLE_SPEC),
    ("", HeadSpec()),
    ("dense:8", HeadSpec((DenseSpec(8),))),
    (" Dense : 8 : TANH ", HeadSpec((DenseSpec(8, "tanh"),))),
    ("dense:8:he_uniform:selu", HeadSpec((DenseSpec(8, "selu", initializer="he_uniform"),))),  # any order
    ("dense:8:leaky_relu", HeadSpec((DenseSpec(8, "leaky_relu", slope=0.2),))),
    ("dense:8:leaky_relu=0.01", HeadSpec((DenseSpec(8, "leaky_relu", slope=0.01),))),
    ("dense:8:prelu:lecun_normal", HeadSpec((DenseSpec(8, "prelu", initializer="lecun_normal"),))),
    ("dense:8:elu:glorot_normal:l2=1e-4:maxnorm=3",
     HeadSpec((DenseSpec(8, "elu", initializer="glorot_normal", l2=1e-4, max_norm=3.0),))),
    ("dense:8:hard_sigmoid,dense:1:sigmoid",
     HeadSpec((DenseSpec(8, "hard_sigmoid"), DenseSpec(1, "sigmoid")))),
    ("dense:32:linear,batchnorm:momentum=0.9:epsilon=1e-5,relu",
     HeadSpec((DenseSpec(32), BatchNormSpec(0.9, 1e-5), ActivationSpec("relu")))),
    ("dense:32,maxout:8", HeadSpec((DenseSpec(32), MaxoutSpec(8)))),
    ("leaky_relu=0.3,prelu,softmax",
     HeadSpec((ActivationSpec("leaky_relu", 0.3), ActivationSpec("prelu"), ActivationSpec("softmax")))),
    ("gap,dense:64:relu", HeadSpec((GlobalAvgPoolSpec(), DenseSpec(64, "relu")))),
    (" GMP ,dropout:0.1", HeadSpec((GlobalMaxPoolSpec(), DropoutSpec(0.1)))),
    ("flatten", HeadSpec((FlattenSpec(),))),
    ("batchnorm,flatten,dense:4:tanh", HeadSpec((BatchNormSpec(), FlattenSpec(), DenseSpec(4, "tanh")))),
]

INVALID = [
    ("dense", "missing units in head layer 'dense'"),
    ("dense:0", "invalid units '0' in head layer 'dense:0'"),
    ("dense:x", "invalid units 'x' in head layer 'dense:x'"),
    ("dense:8:swish", "unknown field 'swish' in head layer 'dense:8:swish'"),
    ("dense:8:relu:tanh", "two activations in head layer 'dense:8:relu:tanh'"),
    ("dense:8:he_normal:he_uniform", "two initializers in head layer"),
    ("dense:8:maxout", "maxout is a layer, not a dense activation in head layer 'dense:8:maxout'"),
    ("dense:8:l2=-1", "invalid l2 factor '-1' in head layer 'dense:8:l2=-1'"),
    ("dense:8:maxnorm=0", "invalid max-norm '0'"),
    ("dense:8:tanh=0.1", "a slope is only allowed with leaky_relu in head layer 'dense:8:tanh=0.1'"),
    ("dense:8:leaky_relu=2", "invalid leaky_relu slope '2'"),
    ("dropout", "dropout takes exactly one value in head layer 'dropout'"),
    ("dropout:1.5", "invalid dropout rate '1.5' in head layer 'dropout:1.5'"),
    ("dropout:abc", "invalid dropout rate 'abc'"),
    ("maxout:0", "invalid units '0' in head layer 'maxout:0'"),
    ("batchnorm:0.9", "unknown field '0.9' in head layer 'batchnorm:0.9'"),
    ("batchnorm:gamma=1", "unknown field(s) gamma in head layer 'batchnorm:gamma=1'"),
    ("relu:3", "an activation layer takes no ':' fields in head layer 'relu:3'"),
    ("conv:3", "unknown head layer 'conv' in head layer 'conv:3'"),
    ("dense:8,,dropout:0.1", "empty layer at position 2"),
    ("gap:2", "gap takes no ':' fields in head layer 'gap:2': write just gap"),
    ("flatten:channels_first", "flatten takes no ':' fields in head layer 'flatten:channels_first'"),
    ("gmp:", "gmp takes no ':' fields"),
    ("avgpool", "unknown head layer 'avgpool' in head layer 'avgpool': expected dense, batchnorm, dropout, "
                "maxout, flatten, gap, gmp or an activation"),
]


@pytest.mark.parametrize(("text", "spec"), VALID)
def test_parse_valid(text, spec):
    assert parse_head(text) == spec


@pytest.mark.parametrize(("text", "spec"), VALID)
def test_string_and_dict_round_trip(text, spec):
    assert parse_head(spec.to_string()) == spec
    assert head_from_dict(spec.to_dict()) == spec
    assert head_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_parse_invalid_names_the_token(text, message):
    with pytest.raises(InvalidInput) as exc:
        parse_head(text)
    assert message in str(exc.value)


def test_canonical_string():
    assert parse_head("dense:64:he_normal:relu, batchnorm ,dropout:0.20,dense:5:softmax").to_string() == (
        "dense:64:relu:he_normal,batchnorm,dropout:0.2,dense:5:softmax:glorot_uniform")
    assert (
        parse_head("dense:8:leaky_relu:l2=0.001").to_string()
        == "dense:8:leaky_relu=0.2:glorot_uniform:l2=0.001"
    )


def test_too_many_layers():
    with pytest.raises(InvalidInput, match="at most 64"):
        parse_head(",".join(["relu"] * 65))


FILE_DOC = {"layers": [
    {"type": "dense", "units": 64, "activation": "relu", "initializer": "he_normal"},
    {"type": "batchnorm"},
    {"type": "dropout", "rate": 0.2},
    {"type": "dense", "units": 5, "activation": "softmax"},
]}


def test_json_and_yaml_files_equal_the_string(tmp_path):
    (tmp_path / "h.json").write_text(json.dumps(FILE_DOC))
    (tmp_path / "h.yaml").write_text(yaml.safe_dump(FILE_DOC))
    (tmp_path / "h.yml").write_text(
        "layers:\n  - {type: dense, units: 64, activation: relu, initializer: he_normal}\n"
        "  - type: batchnorm\n  - {type: dropout, rate: 0.2}\n  - {type: dense, units: 5, activation: "
        "softmax}\n")
    for name in ("h.json", "h.yaml", "h.yml"):
        assert load_head_file(tmp_path / name) == parse_head(EXAMPLE) == EXAMPLE_SPEC


@pytest.mark.parametrize(("doc", "message"), [
    ([], 'expected a mapping with exactly one key, "layers"'),
    ({"layers": [], "extra": 1}, 'exactly one key, "layers"'),
    ({"layers": [{"units": 3}]}, "invalid head layer 1 {'units': 3}: expected a mapping with a \"type\""),
    ({"layers": [{"type": "dense", "unit": 3}]}, "unknown field(s) unit in head layer 'layer 1 (dense)'"),
    ({"layers": [{"type": "relu"}]}, "unknown head layer 'relu'"),
    ({"layers": [{"type": "dense", "units": True}]}, "invalid units True"),
    ({"layers": [{"type": "dropout", "rate": 0.1}, {"type": "dense", "units": 2, "activation": "gelu"}]},
     "unknown activation 'gelu' in head layer 'layer 2 (dense)'"),
    ({"layers": [{"type": "gap", "keepdims": True}]},
     "unknown field(s) keepdims in head layer 'layer 1 (gap)': gap takes no fields"),
])
def test_invalid_head_documents(doc, message):
    with pytest.raises(InvalidInput) as exc:
        head_from_dict(doc)
    assert message in str(exc.value)


def test_pooling_file_form_equals_the_string(tmp_path):
    doc = {"layers": [{"type": "gap"}, {"type": "dense", "units": 64, "activation": "relu"}, {"type": "gmp"},
                      {"type": "flatten"}]}
    assert head_from_dict(doc) == parse_head("gap,dense:64:relu,gmp,flatten")
    assert parse_head("GAP,Flatten").to_dict() == {"layers": [{"type": "gap"}, {"type": "flatten"}]}
    assert parse_head("gap, dense:8 ,gmp").to_string() == "gap,dense:8:linear:glorot_uniform,gmp"


def test_invalid_head_files(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{layers: ")
    with pytest.raises(InvalidInput, match=r"bad.json is not valid JSON"):
        load_head_file(bad_json)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("layers: [\n")
    with pytest.raises(InvalidInput, match=r"bad.yaml is not valid YAML"):
        load_head_file(bad_yaml)
    txt = tmp_path / "head.txt"
    txt.write_text(EXAMPLE)
    with pytest.raises(InvalidInput, match=r"expected a .json, .yaml or .yml file"):
        load_head_file(txt)
    with pytest.raises(InvalidInput, match="cannot read head file"):
        load_head_file(tmp_path / "missing.json")


# Text that may hold either form (BuildRequest.head, a job's "head"): what each text is read as.
HEAD_TEXTS = [
    (EXAMPLE, EXAMPLE_SPEC),
    ("  gap,dense:64:relu\n", parse_head("gap,dense:64:relu")),
    ("", parse_head("")),
    (json.dumps(FILE_DOC), EXAMPLE_SPEC),
    (json.dumps(FILE_DOC, indent=2), EXAMPLE_SPEC),
    (yaml.safe_dump(FILE_DOC), EXAMPLE_SPEC),
    ("# a head file\n---\n" + yaml.safe_dump(FILE_DOC), EXAMPLE_SPEC),
    ("{layers: [{type: gap}, {type: dense, units: 3}]}", parse_head("gap,dense:3")),
]


@pytest.mark.parametrize(("text", "spec"), HEAD_TEXTS)
def test_head_text_in_either_form(text, spec):
    assert head_from_text(text) == spec


@pytest.mark.parametrize(("text", "message"), [
    ("dense:zero", "invalid units 'zero' in head layer 'dense:zero'"),
    ("{}", 'invalid head file: expected a mapping with exactly one key, "layers"'),
    ("{layers: [", "job: parameter 'head' is neither a head spec nor valid JSON/YAML: "),
    ("layers:\n  - type: dense\n", "missing units in head layer 'layer 1 (dense)'"),
    ("layers: " + "x" * MAX_HEAD_FILE_BYTES,
     f"job: parameter 'head' is larger than {MAX_HEAD_FILE_BYTES} bytes"),
])
def test_head_text_errors(text, message):
    with pytest.raises(InvalidInput) as exc:
        head_from_text(text, where="job: parameter 'head'")
    assert message in str(exc.value)


def test_read_head_takes_a_spec_or_a_file_not_both(tmp_path):
    (tmp_path / "h.json").write_text(json.dumps(FILE_DOC))
    assert (
        read_head(EXAMPLE) == read_head(None, tmp_path / "h.json") == read_head(EXAMPLE_SPEC) == EXAMPLE_SPEC
    )
    assert read_head() == parse_head("")
    with pytest.raises(InvalidInput, match="^give either a head spec or a head file, not both$"):
        read_head("dense:3", tmp_path / "h.json")


def test_with_output():
    head = parse_head("dense:8:relu")
    assert head.with_output() is head
    assert head.with_output(classes=4).layers[-1] == DenseSpec(4, "softmax")
    assert head.with_output(regression=True).layers[-1] == DenseSpec(1, "linear")
    assert head.with_output(regression=3).layers[-1] == DenseSpec(3, "linear")
    assert HeadSpec().with_output(classes=2).layers == (DenseSpec(2, "softmax"),)
    with pytest.raises(InvalidInput, match="either classes or regression"):
        head.with_output(classes=3, regression=True)
    with pytest.raises(InvalidInput, match="invalid classes 1: expected an integer >= 2"):
        head.with_output(classes=1)
    with pytest.raises(InvalidInput, match="invalid regression targets 0"):
        head.with_output(regression=0)
    with pytest.raises(InvalidInput,
                       match=r"already ends in an output layer \('dense:5:softmax:glorot_uniform'\)"):
        parse_head(EXAMPLE).with_output(classes=5)


def _apply(spec, n_in=16, **kw):
    x = inputs = keras.Input((n_in,))
    items = head_layers(spec, **kw)
    for item in items:
        x = item.layer(x)
    return keras.Model(inputs, x), items


def test_keras_layers_for_every_kind():
    spec = parse_head("dense:12:leaky_relu=0.1:he_normal:l2=0.01:maxnorm=2,batchnorm:momentum=0.9,"
                      "dropout:0.3,dense:8:prelu,maxout:4,selu")
    model, items = _apply(spec.with_output(classes=3), output_appended=True, taken={"head1_dense"})
    by_name = {i.layer.name: i.layer for i in items}
    assert list(by_name) == ["head1_dense_1", "head1_leaky_relu", "head2_batchnorm", "head3_dropout",
                             "head4_dense", "head4_prelu", "head5_maxout", "head6_selu", "output"]
    dense = by_name["head1_dense_1"]
    assert isinstance(dense.kernel_initializer, keras.initializers.HeNormal)
    assert float(dense.kernel_regularizer.l2) == pytest.approx(0.01)
    assert float(dense.kernel_constraint.max_value) == 2.0
    assert by_name["head1_leaky_relu"].negative_slope == pytest.approx(0.1)
    assert by_name["head2_batchnorm"].momentum == pytest.approx(0.9)
    assert by_name["head3_dropout"].rate == pytest.approx(0.3)
    assert isinstance(by_name["head4_prelu"], keras.layers.PReLU)
    assert isinstance(by_name["head5_maxout"], Maxout)
    assert by_name["output"].activation.__name__ == "softmax"
    assert model.output_shape == (None, 3)
    assert items[0].token == "dense:12:leaky_relu=0.1:he_normal:l2=0.01:maxnorm=2"


def test_seed_makes_heads_reproducible():
    spec = parse_head("dense:6:relu:glorot_normal,dense:2")
    a, _ = _apply(spec, seed=3)
    b, _ = _apply(spec, seed=3)
    c, _ = _apply(spec, seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_maxout_values_and_shape_errors(rng):
    x = rng.normal(size=(5, 12)).astype("float32")
    out = keras.ops.convert_to_numpy(Maxout(4)(x))
    np.testing.assert_array_equal(out, x.reshape(5, 4, 3).max(axis=-1))
    with pytest.raises(ValueError, match="multiple of 5"):
        Maxout(5)(x)
    with pytest.raises(ValueError, match="positive integer"):
        Maxout(0)


def test_maxout_model_round_trips_through_the_store_in_safe_mode(store, rng):
    model, _ = _apply(parse_head("dense:12,maxout:3,dense:2"), n_in=4, seed=0)
    store.register(model, "mx")
    x = rng.normal(size=(7, 4)).astype("float32")
    loaded = store.load("mx", safe_mode=True)
    assert any(isinstance(layer, Maxout) for layer in loaded.layers)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# -- apply_head: layers made on a tensor, pooling chosen by its rank ------------------------------------
APPLY_SHAPES = [
    # (input shape without batch, head, output shape, Keras classes of the head's layers)
    ((5, 3), "gap", (None, 3), ["GlobalAveragePooling1D"]),
    ((5, 3), "gmp,dense:4", (None, 4), ["GlobalMaxPooling1D", "Dense"]),
    ((6, 6, 2), "gap,dense:4:relu", (None, 4), ["GlobalAveragePooling2D", "Dense"]),
    ((6, 6, 2), "gmp", (None, 2), ["GlobalMaxPooling2D"]),
    ((6, 6, 2), "flatten,dense:3", (None, 3), ["Flatten", "Dense"]),
    ((3, 4, 4, 2), "gap", (None, 2), ["GlobalAveragePooling3D"]),
    ((3, 4, 4, 2), "gmp,dropout:0.5,dense:2:softmax", (None, 2), ["GlobalMaxPooling3D", "Dropout", "Dense"]),
    ((3, 4, 4, 2), "flatten", (None, 96), ["Flatten"]),
    ((5, 3), "dense:4,gap", (None, 4), ["Dense", "GlobalAveragePooling1D"]),  # pooling after a 3-D dense
    ((16,), "flatten,dense:2", (None, 2), ["Flatten", "Dense"]),
]


@pytest.mark.parametrize(("shape", "head", "out_shape", "classes"), APPLY_SHAPES)
def test_apply_head_picks_pooling_by_rank(shape, head, out_shape, classes):
    inputs = keras.Input(shape)
    x, names = apply_head(parse_head(head), inputs, seed=0, output="classes")
    model = keras.Model(inputs, x)
    assert model.output_shape == out_shape
    head_layers_made = [model.get_layer(n) for n in names]
    assert [type(layer).__name__ for layer in head_layers_made] == classes
    assert names[0].startswith("head1_")


def test_apply_head_pooling_values(rng):
    inputs = keras.Input((3, 4, 2))
    avg, _ = apply_head(parse_head("gap"), inputs)
    mx, _ = apply_head(parse_head("gmp"), inputs, taken={"head1_gap"})
    model = keras.Model(inputs, [avg, mx])
    x = rng.normal(size=(2, 3, 4, 2)).astype("float32")
    got_avg, got_max = model.predict(x, verbose=0)
    np.testing.assert_allclose(got_avg, x.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(got_max, x.max(axis=(1, 2)), rtol=1e-6)


def test_apply_head_names_output_and_avoids_taken():
    inputs = keras.Input((4, 4, 3))
    spec = parse_head("gap,dense:8:leaky_relu").with_output(classes=3)
    x, names = apply_head(spec, inputs, taken={"head1_gap"}, seed=1, output_appended=True, output="classes")
    assert names == ["head1_gap_1", "head2_dense", "head2_leaky_relu", "output"]
    assert tuple(x.shape) == (None, 3)


def test_apply_head_is_seeded():
    spec = parse_head("flatten,dense:3:glorot_normal")
    weights = []
    for seed in (5, 5, 6):
        inputs = keras.Input((2, 2, 1))
        x, _ = apply_head(spec, inputs, seed=seed)
        weights.append(keras.Model(inputs, x).get_weights()[0])
    np.testing.assert_array_equal(weights[0], weights[1])
    assert not np.array_equal(weights[0], weights[2])


APPLY_REFUSALS = [
    # (input shape, head, output, message)
    ((16,), "gap", None, "head layer 'gap' cannot take the output of the reused layers, of shape (None, 16): "
                         "global pooling needs an input of rank 3, 4 or 5 (batch, steps or spatial axes, "
                         "channels), got rank 2; the tensor is already (batch, features), so leave it out"),
    ((6, 6, 2), "gap,gmp", None,
     "head layer 'gmp' cannot take the output of head layer 'gap', of shape (None, 2)"),
    ((2, 2, 2, 2, 2), "gmp", None, "global pooling needs an input of rank 3, 4 or 5"),
    ((6, 6, 2), "dense:4,maxout:3", None,
     "head layer 'maxout:3' cannot take the output of head layer 'dense:4:linear:glorot_uniform', of shape "
     "(None, 6, 6, 4): "),
    # A Dense on a 4-D tensor works in Keras but gives (batch, h, w, units): refused at build time.
    ((6, 6, 2), "dense:3:softmax", "classes",
     "the head's output has shape (None, 6, 6, 3), but a classes output must have shape (batch, units): "
     "add gap or flatten to the head, e.g. --head gap,dense:64:relu"),
    ((5, 3), "dense:1", "regression", "the head's output has shape (None, 5, 1), but a regression output"),
]


@pytest.mark.parametrize(("shape", "head", "output", "message"), APPLY_REFUSALS)
def test_apply_head_refusals(shape, head, output, message):
    with pytest.raises(IncompatibleShapes) as exc:
        apply_head(parse_head(head), keras.Input(shape), output=output)
    assert message in str(exc.value)


def test_apply_head_without_output_leaves_the_shape_alone():
    x, _ = apply_head(parse_head("dense:3"), keras.Input((6, 6, 2)))
    assert tuple(x.shape) == (None, 6, 6, 3)
    with pytest.raises(InvalidInput, match="invalid output 'logits'"):
        apply_head(parse_head("dense:3"), keras.Input((4,)), output="logits")


def test_head_layers_refuses_pooling_it_cannot_size():
    with pytest.raises(InvalidInput, match="head layer 'gap' needs the rank of its input"):
        head_layers(parse_head("dense:4,gap"))
    assert [i.layer.name for i in head_layers(parse_head("flatten,dense:2"))] == [
        "head1_flatten",
        "head2_dense",
    ]


# -- through build_network: a conv base and the build-time output check -------------------------------
@pytest.fixture(scope="module")
def conv_store(tmp_path_factory):
    from reuse.store import ModelStore

    store = ModelStore(tmp_path_factory.mktemp("conv") / "store")
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    store.register(keras.Model(inp, keras.layers.Dense(2, name="logits")(x)), "convbase")
    return store


@pytest.mark.parametrize(("head", "out_shape", "pool_class"), [
    ("gap", (None, 3), "GlobalAveragePooling2D"),
    ("gmp,dense:4:relu", (None, 3), "GlobalMaxPooling2D"),
    ("flatten,dropout:0.1", (None, 3), "Flatten"),
])
def test_build_on_a_conv_base(conv_store, head, out_shape, pool_class):
    from reuse.build import build_network

    built = build_network(conv_store, "convbase", "conv1|conv2", head=head, classes=3, seed=0)
    assert built.model.output_shape == out_shape
    assert type(built.model.get_layer(built.lineage["head_layers"][0])).__name__ == pool_class
    assert built.lineage["head_layers"][-1] == "output"


@pytest.mark.parametrize(("head", "kw", "message"), [
    ("", {"classes": 3}, "the head's output has shape (None, 4, 4, 3), but a classes output must have shape "
                         "(batch, units): add gap or flatten to the head, e.g. --head gap,dense:64:relu"),
    ("dense:8:relu", {"regression": True},
     "the head's output has shape (None, 4, 4, 1), but a regression output"),
])
def test_build_refuses_a_conv_output_without_pooling(conv_store, head, kw, message):
    from reuse.build import build_network

    with pytest.raises(IncompatibleShapes) as exc:
        build_network(conv_store, "convbase", "conv1|conv2", head=head, **kw)
    assert str(exc.value).startswith(message)
