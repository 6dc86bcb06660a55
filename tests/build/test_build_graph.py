"""Building from graphs, not only chains: residual adds, concatenations, shared layers, nested models,
several inputs, int inputs, and keras.applications backbones (weights=None, tiny inputs)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from reuse.build import build_network
from reuse.data import Dataset
from reuse.errors import IncompatibleShapes, InvalidInput
from reuse.graph.reader import parse_architecture
from reuse.graph.subgraph import select_scope
from reuse.store import ModelStore
from reuse.train import TrainConfig, train

RNG = np.random.default_rng(0)
X8 = RNG.normal(size=(32, 8)).astype("float32")


def _cut(base: keras.Model, layer: str) -> keras.Model:
    return keras.Model(base.inputs, base.get_layer(layer).output)


def _same(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def _bits(layers) -> list[bytes]:
    return [np.asarray(w).tobytes() for layer in layers for w in layer.get_weights()]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> ModelStore:
    store = ModelStore(tmp_path_factory.mktemp("graphs") / "store")
    keras.utils.set_random_seed(0)
    # an MLP with a skip connection
    x = keras.Input((8,), name="x")
    d1 = keras.layers.Dense(6, activation="relu", name="dense1")(x)
    d2 = keras.layers.Dense(6, activation="relu", name="dense2")(d1)
    s = keras.layers.Add(name="add")([d1, d2])
    store.register(keras.Model(x, keras.layers.Dense(3, activation="softmax", name="out")(s)), "skip")
    # two inputs joined by a concatenation
    left, right = keras.Input((4,), name="x_left"), keras.Input((3,), name="x_right")
    a = keras.layers.Dense(5, name="left_dense")(left)
    b = keras.layers.Dense(5, name="right_dense")(right)
    j = keras.layers.Concatenate(name="join")([a, b])
    h = keras.layers.Dense(4, activation="relu", name="joint")(j)
    store.register(keras.Model([left, right], keras.layers.Dense(2, activation="softmax", name="out")(h)),
                   "two")
    # a nested Sequential inside a functional model, called twice (shared)
    enc = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6, name="d1"),
                            keras.layers.BatchNormalization(name="bn")], name="enc")
    u, v = keras.Input((8,), name="u"), keras.Input((8,), name="v")
    m = keras.layers.Multiply(name="mul")([enc(u), enc(v)])
    outer = keras.Model([u, v], keras.layers.Dense(2, name="top")(m))
    outer.get_layer("enc").get_layer("bn").set_weights(
        [np.full(6, 1.5, "float32"), np.full(6, 0.1, "float32"), np.full(6, 0.2, "float32"),
         np.full(6, 2.0, "float32")])
    store.register(outer, "siamese")
    # a functional residual block inside a Sequential model
    bi = keras.Input((8,), name="block_in")
    bh = keras.layers.Dense(8, activation="relu", name="block_dense")(bi)
    block = keras.Model(bi, keras.layers.Add(name="block_add")([bi, bh]), name="block")
    store.register(keras.Sequential([keras.Input((8,)), block, keras.layers.Dense(3, name="o")], name="wrap"),
                   "wrapped")
    # int token ids through an embedding and an LSTM
    tok = keras.Input((6,), dtype="int32", name="tokens")
    e = keras.layers.Embedding(20, 4, name="emb")(tok)
    r = keras.layers.LSTM(5, name="lstm")(e)
    store.register(keras.Model(tok, keras.layers.Dense(2, activation="softmax", name="cls")(r)), "seq")
    return store


def test_paths_and_containers_are_read_from_the_config(graphs):
    arch = parse_architecture(graphs.model_config("wrapped"))
    assert arch.names == ["block/block_dense", "block/block_add", "o"]
    assert list(arch.order) == ["block", "block/block_dense", "block/block_add", "o"]
    assert arch.container("block").leaves == ("block/block_dense", "block/block_add")
    siamese = parse_architecture(graphs.model_config("siamese"))
    assert siamese.node("enc/d1").calls == 2 and siamese.node("mul").inputs == ("enc/bn",)
    assert parse_architecture(graphs.model_config("seq")).input_dtypes == {"tokens": "int32"}


@pytest.mark.parametrize(("pattern", "match", "expected"), [
    ("block", "full", ("block/block_dense", "block/block_add")),  # a nested model selects what it holds
    ("block/.*", "full", ("block/block_dense", "block/block_add")),
    ("block_dense", "full", ()),  # full match applies to the whole path
    (".*/block_dense", "full", ("block/block_dense",)),
    ("block/block_d", "prefix", ("block/block_dense",)),
    ("o", "full", ("o",)),
])
def test_scope_over_paths(graphs, pattern, match, expected):
    arch = parse_architecture(graphs.model_config("wrapped"))
    assert select_scope(arch, pattern, match=match, require_match=False)[1] == expected


def test_skip_connection_is_reused_with_its_add(graphs):
    built = build_network(graphs, "skip", "dense[12]|add", classes=3, seed=0)
    base = graphs.load("skip")
    _same(
        _cut(keras.Model(built.model.inputs, built.model.get_layer("add").output), "add").predict(
            X8, verbose=0
        ),
        _cut(base, "add").predict(X8, verbose=0),
    )
    assert built.lineage["left_out"] == {}
    # without the add the selection ends at dense2, and the lineage says the add also read dense1
    without = build_network(graphs, "skip", "dense[12]", classes=3)
    assert without.lineage["exits"] == [{"layer": "dense2", "index": 0}]
    assert without.lineage["left_out"] == {"dense1": ["add"]}  # dense2 is the exit, not a loose end


def test_two_inputs_keep_their_names_and_a_gap_is_named(graphs):
    built = build_network(graphs, "two", "left_dense|right_dense|join|joint", classes=2)
    assert [t.name for t in built.model.inputs] == ["x_left", "x_right"]
    base = graphs.load("two")
    xs = [RNG.normal(size=(5, 4)).astype("float32"), RNG.normal(size=(5, 3)).astype("float32")]
    sub = keras.Model(built.model.inputs, built.model.get_layer("joint").output)
    _same(sub.predict(xs, verbose=0), _cut(base, "joint").predict(xs, verbose=0))
    with pytest.raises(IncompatibleShapes) as exc:
        build_network(graphs, "two", "left_dense|right_dense|joint", classes=2)
    assert str(exc.value).startswith("unselected layer(s) join (Concatenate) sit between selected layers")
    assert "--reuse 'left_dense|right_dense|joint|join'" in str(exc.value)


def test_several_exits_are_refused_or_joined_when_named(graphs):
    with pytest.raises(IncompatibleShapes, match=r"ends in 2 tensors \(outputs of left_dense, right_dense\)"):
        build_network(graphs, "two", "left_dense|right_dense", classes=2)
    built = build_network(graphs, "two", "left_dense|right_dense", classes=2,
                          exits=["left_dense", "right_dense"])
    assert built.model.get_layer("exits").output.shape == (None, 10)
    with pytest.raises(InvalidInput, match="exit 'joint' is not one of the selected layers"):
        build_network(graphs, "two", "left_dense|right_dense", classes=2, exits=["joint"])


def test_shared_nested_sequential_replays_both_calls(graphs):
    built = build_network(graphs, "siamese", "enc|mul", classes=2)
    base = graphs.load("siamese")
    xs = [RNG.normal(size=(6, 8)).astype("float32"), RNG.normal(size=(6, 8)).astype("float32")]
    sub = keras.Model(built.model.inputs, built.model.get_layer("mul").output)
    _same(sub.predict(xs, verbose=0), _cut(base, "mul").predict(xs, verbose=0))
    assert [x["path"] for x in built.lineage["layers"]] == ["enc/d1", "enc/bn", "mul"]
    assert [x["name"] for x in built.lineage["layers"]] == ["d1", "bn", "mul"]
    assert built.model.get_layer("bn").get_weights()[3].tolist() == [2.0] * 6  # moving variance copied


def test_residual_block_inside_a_sequential(graphs):
    built = build_network(graphs, "wrapped", "block", regression=True)
    base = graphs.load("wrapped")
    inner = base.get_layer("block")
    _same(keras.Model(built.model.inputs, built.model.get_layer("block_add").output).predict(X8, verbose=0),
          inner.predict(X8, verbose=0))


def test_int_inputs_stay_int(graphs):
    built = build_network(graphs, "seq", "emb|lstm", classes=2)
    assert built.model.inputs[0].dtype == "int32" and built.lineage["inputs"][0]["dtype"] == "int32"
    tokens = RNG.integers(0, 20, size=(4, 6)).astype("int32")
    base = graphs.load("seq")
    _same(keras.Model(built.model.inputs, built.model.get_layer("lstm").output).predict(tokens, verbose=0),
          _cut(base, "lstm").predict(tokens, verbose=0))


def test_input_shape_override_needs_one_input(graphs):
    with pytest.raises(InvalidInput, match="an input shape can only be given for one input"):
        build_network(graphs, "two", "left_dense|right_dense|join", classes=2, input_shape=(4,))


# -- keras.applications backbones ----------------------------------------------------------------
@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> ModelStore:
    store = ModelStore(tmp_path_factory.mktemp("apps") / "store")
    keras.utils.set_random_seed(0)
    mnv2 = keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None, include_top=False)
    store.register(mnv2, "mobilenet")
    store.register(
        keras.Sequential(
            [
                keras.Input((32, 32, 3)),
                mnv2,
                keras.layers.GlobalAveragePooling2D(name="pool"),
                keras.layers.Dense(3, name="logits"),
            ],
            name="classifier",
        ),
        "wrapped",
    )
    return store


MNV2_LOW = r"Conv1|bn_Conv1|Conv1_relu|expanded_conv_.*|block_[1-3]_.*"


def test_mobilenet_blocks_build_train_and_match_the_base(backbones):
    built = build_network(backbones, "mobilenet", MNV2_LOW, head="gap,dense:8:relu", classes=3, seed=0)
    base = backbones.load("mobilenet")
    img = RNG.normal(size=(16, 32, 32, 3)).astype("float32")
    sub = keras.Model(built.model.inputs, built.model.get_layer("block_3_project_BN").output)
    _same(sub.predict(img, verbose=0), _cut(base, "block_3_project_BN").predict(img, verbose=0))
    assert built.model.output_shape == (None, 3)
    reused = [built.model.get_layer(x["name"]) for x in built.lineage["layers"]]
    before = _bits(reused)
    result = train(built.model, Dataset(img, RNG.integers(0, 3, size=16), "synthetic"),
                   TrainConfig(epochs=1, batch_size=8, seed=0))
    assert result.epochs_run == 1 and _bits(reused) == before
    assert "block_2_add" in [x["name"] for x in built.lineage["layers"]]


def test_mobilenet_inside_a_sequential_by_path(backbones):
    built = build_network(backbones, "wrapped", f"mobilenetv2_1.00_32/({MNV2_LOW})", head="gap", classes=3)
    inner = backbones.load("wrapped").get_layer("mobilenetv2_1.00_32")
    img = RNG.normal(size=(4, 32, 32, 3)).astype("float32")
    sub = keras.Model(built.model.inputs, built.model.get_layer("block_3_project_BN").output)
    _same(sub.predict(img, verbose=0), _cut(inner, "block_3_project_BN").predict(img, verbose=0))
    # the whole nested backbone as one unit
    whole = build_network(backbones, "wrapped", "mobilenetv2_1.00_32", head="gap", classes=3)
    assert whole.model.output_shape == (None, 3) and len(whole.lineage["layers"]) == len(inner.layers) - 1


@pytest.mark.slow
def test_resnet50_first_two_stages(tmp_path):
    store = ModelStore(tmp_path / "store")
    keras.utils.set_random_seed(0)
    base = keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, include_top=False)
    store.register(base, "resnet")
    with pytest.raises(IncompatibleShapes,
                       match=r"pool1_pad \(ZeroPadding2D\), pool1_pool \(MaxPooling2D\) sit"):
        build_network(store, "resnet", "conv1_.*|conv2_.*", classes=2)
    built = build_network(store, "resnet", "conv1_.*|pool1_.*|conv2_.*", head="gap", classes=2)
    img = RNG.normal(size=(2, 32, 32, 3)).astype("float32")
    sub = keras.Model(built.model.inputs, built.model.get_layer("conv2_block3_out").output)
    _same(sub.predict(img, verbose=0), _cut(base, "conv2_block3_out").predict(img, verbose=0))


# -- the CLI and the gRPC Build job on graphs ------------------------------------------------------
def test_cli_layers_show_paths_inputs_and_build_with_exits(graphs):
    from click.testing import CliRunner

    from reuse.cli import cli

    root = str(graphs.root)
    out = CliRunner().invoke(cli, ["layers", "wrapped", "--scope", "block", "--store", root],
                             catch_exceptions=False)
    lines = out.output.splitlines()
    assert lines[2].split()[:3] == ["0", "block", "Functional"]
    assert lines[3].split()[:3] == ["1", "block/block_dense", "Dense"]  # indented under its model
    assert lines[4].split()[-2:] == ["block/block_dense", "yes"]  # block_add reads the block's input too
    assert lines[-1] == "2 of 3 layers match 'block' (full match)"
    res = CliRunner().invoke(cli, ["build", "joined", "--from", "two", "--reuse", "left_dense|right_dense",
                                   "--exit", "left_dense", "--exit", "right_dense", "--classes", "2",
                                   "--store", root, "--json"], catch_exceptions=False)
    import json

    lin = json.loads(res.output)["lineage"]
    assert [e["layer"] for e in lin["exits"]] == ["left_dense", "right_dense"]
    assert [i["name"] for i in lin["inputs"]] == ["x_left", "x_right"]
    bad = CliRunner().invoke(cli, ["build", "x", "--from", "two", "--reuse", "left_dense|right_dense",
                                   "--classes", "2", "--store", root])
    assert bad.exit_code == 1 and bad.output.startswith("Error: the selection ends in 2 tensors")
    assert "x" not in graphs.names()


def test_grpc_build_job_on_a_graph(graphs):
    from reuse.grpc._proto import reuse_v1_pb2 as pb
    from reuse.grpc.server import ServerConfig, start_in_thread
    from reuse.service import Service
    from tests.grpc_support import stubs

    server = start_in_thread(Service(graphs.root), ServerConfig(port=0))
    try:
        channel, _, api = stubs(server.target)
        job = api.Build(pb.BuildRequest(name="siam2", base="siamese", reuse="enc|mul", classes=2))
        assert job.state == "succeeded", job.error
        desc = api.DescribeModel(pb.DescribeModelRequest(ref="siamese", scope="enc"))
        rows = {x.name: x for x in desc.layers}
        assert (
            rows["enc/bn"].depth == 1 and list(rows["enc/bn"].inputs) == ["enc/d1"] and rows["enc/bn"].matched
        )
        assert list(rows["mul"].inputs) == ["enc/bn"]
        channel.close()
    finally:
        server.stop()


def test_advisor_depths_on_a_graph_build(tmp_path):
    from reuse.advise.plan import depth_layers, plan_candidates

    store = ModelStore(tmp_path / "store")
    x = keras.Input((8,), name="x")
    a = keras.layers.Dense(6, name="a")(x)
    c = keras.layers.Dense(6, name="c")(x)
    b = keras.layers.Dense(6, name="b")(a)
    s = keras.layers.Add(name="add")([b, c])
    store.register(keras.Model(x, keras.layers.Dense(2, activation="softmax", name="out")(s)), "fork")
    assert depth_layers(store, "fork") == [("a",), ("a", "b"), ("a", "b", "c", "add")]
    plan = plan_candidates(store, "fork")
    for k in (1, 2, 3):
        assert build_network(store, "fork", plan.plans[k].scope, classes=2).model.output_shape == (None, 2)


def test_built_graph_models_serve_with_their_dtypes(graphs, backbones):
    """Int token ids stay INT32 in the served signature; a built conv model answers like Keras."""
    from reuse.grpc._proto import inference_pb2 as ipb
    from reuse.grpc.server import ServerConfig, start_in_thread
    from reuse.service import Service
    from tests.grpc_support import infer_request, stubs

    seq = build_network(graphs, "seq", "emb|lstm", head="dense:4:relu", classes=2, seed=0, name="tok")
    graphs.register(seq.model, "tok", lineage=seq.lineage)
    conv = build_network(backbones, "mobilenet", MNV2_LOW, head="gap", classes=3, seed=0, name="conv")
    backbones.register(conv.model, "conv", lineage=conv.lineage)
    tokens = RNG.integers(0, 20, size=(3, 6)).astype("int32")
    img = RNG.normal(size=(2, 32, 32, 3)).astype("float32")
    for store, model, x, name, dtype in ((graphs, "tok", tokens, "tokens", "INT32"),
                                         (backbones, "conv", img, conv.lineage["inputs"][0]["name"], "FP32")):
        server = start_in_thread(Service(store.root), ServerConfig(port=0))
        try:
            channel, inference, _ = stubs(server.target)
            meta = inference.ModelMetadata(ipb.ModelMetadataRequest(name=model))
            assert [(t.name, t.datatype) for t in meta.inputs] == [(name, dtype)]
            resp = inference.ModelInfer(infer_request(x, model=model, name=name, datatype=dtype))
            got = np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).reshape(
                tuple(resp.outputs[0].shape)
            )
            _same(got, store.load(model).predict(x, verbose=0))
            channel.close()
        finally:
            server.stop()


def test_cli_summary_lines_shorten_long_layer_lists(backbones):
    from click.testing import CliRunner

    from reuse.cli import cli

    res = CliRunner().invoke(cli, ["build", "short", "--from", "mobilenet", "--reuse", MNV2_LOW, "--head",
                                   "gap", "--classes", "2", "--store", str(backbones.root)],
                             catch_exceptions=False)
    frozen = next(line for line in res.output.splitlines() if "reused (frozen)" in line)
    assert frozen.endswith("block_3_project, block_3_project_BN "
                           "(35 layers)") and "Conv1, bn_Conv1, Conv1_relu, ..." in frozen
