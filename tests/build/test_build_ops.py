"""Graphs with operation nodes (``x + y``, ``ops.mean``, ``ops.arange`` constants, ``x[..., 0]``) and the
keras.applications that use them: ConvNeXtTiny (ops and Keras' internal LayerScale), MobileNetV3Small
(squeeze-excite blocks of ops), EfficientNetV2B0, and a Transformer encoder written as in the keras.io
examples. Each is built through several blocks; the reused part must equal the base's tensor, train one
epoch with its frozen weights bit-identical, and serve a request. Random augmentation layers inside a base
are never copied. All bases: weights=None, 32x32 images or 8 tokens."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from keras import layers, ops

from reuse.build import build_network
from reuse.data import Dataset
from reuse.errors import IncompatibleShapes
from reuse.graph.arch import AUGMENTATION, exact_scope
from reuse.graph.reader import parse_architecture
from reuse.graph.subgraph import plan_subgraph, select_scope
from reuse.service import Service
from reuse.store import ModelStore
from reuse.store.layer_table import layer_table
from reuse.train import TrainConfig, train

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, size=(16, 32, 32, 3)).astype("float32")
TOKENS = RNG.integers(0, 50, size=(16, 8)).astype("int32")
HINT = re.compile(r"--reuse '([^']+)'")


def encoder(maxlen: int = 8, vocab: int = 50, dim: int = 16) -> keras.Model:
    """A Transformer encoder as keras.io writes one: positions from ops.arange, residual ``x + attn``."""
    tokens = keras.Input((maxlen,), dtype="int32", name="tokens")
    positions = tokens * 0 + ops.arange(maxlen, dtype="int32")  # a constant the graph captures
    x = layers.Embedding(vocab, dim, name="tok_emb")(tokens) + layers.Embedding(maxlen, dim, name="pos_emb")(
        positions
    )
    for i in range(2):
        attn = layers.MultiHeadAttention(2, dim // 2, name=f"block{i}_attn")(x, x)
        x = layers.LayerNormalization(name=f"block{i}_ln1")(
            x + layers.Dropout(0.1, name=f"block{i}_drop")(attn)
        )
        ff = layers.Dense(32, activation="relu", name=f"block{i}_ff1")(x)
        x = layers.LayerNormalization(name=f"block{i}_ln2")(x + layers.Dense(dim, name=f"block{i}_ff2")(ff))
    return keras.Model(tokens,
                       layers.Dense(2, activation="softmax", name="cls")(ops.mean(x, axis=1)), name="enc")


def preprocessed() -> keras.Model:
    """resnet.preprocess_input inside the graph (x[..., ::-1] as GetItem ops, the mean as a constant)."""
    img = keras.Input((32, 32, 3), name="img")
    x = keras.applications.resnet.preprocess_input(img)
    x = layers.Conv2D(4, 3, activation="relu", name="conv1")(x)
    x = layers.Conv2D(4, 3, name="conv2")(x)
    return keras.Model(img, layers.GlobalAveragePooling2D(name="pool")(x), name="pre")


def augmented() -> keras.Model:
    img = keras.Input((32, 32, 3), name="image")
    x = layers.RandomFlip(name="flip")(img)
    x = layers.RandomRotation(0.2, name="rotate")(x)
    x = layers.Conv2D(4, 3, activation="relu", name="conv1")(x)
    x = layers.Conv2D(4, 3, name="conv2")(x)
    return keras.Model(img,
                       layers.Dense(2, name="out")(layers.GlobalAveragePooling2D(name="pool")(x)), name="aug")


# name: (constructor, the first scope a user would try, the base layer the reused part ends at, data)
BASES = {
    "convnext": (lambda: keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3),
                                                         include_top=False),
                 "convnext_tiny_(prestem_normalization|stem|stage_0_.*)",
                 "convnext_tiny_stage_0_block_2_identity", IMAGES),
    "mnv3": (lambda: keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3),
                                                         include_top=False),
             r"rescaling(_\d+)?|conv|conv_bn|expanded_conv_[a-z].*|expanded_conv_[1-3]_.*",
             "expanded_conv_3_project_bn", IMAGES),
    "effv2": (lambda: keras.applications.EfficientNetV2B0(weights=None, input_shape=(32, 32, 3),
                                                          include_top=False),
              r"rescaling(_\d+)?|normalization(_\d+)?|stem_.*|block1.*|block2.*", "block2b_add", IMAGES),
    "encoder": (encoder, "OPS|tok_emb|pos_emb|block[01]_.*", "block1_ln2", TOKENS),
}


@pytest.fixture(scope="module")
def modern(tmp_path_factory) -> tuple[ModelStore, dict[str, keras.Model]]:
    store = ModelStore(tmp_path_factory.mktemp("modern") / "store")
    keras.utils.set_random_seed(0)
    bases = {}
    for name, (make, *_rest) in BASES.items():
        bases[name] = make()
        store.register(bases[name], name)
    for name, make in (("pre", preprocessed), ("aug", augmented)):
        bases[name] = make()
        store.register(bases[name], name)
    return store, bases


def _scope(store: ModelStore, name: str) -> str:
    """The first scope, then the one the gap error suggests (what a user does)."""
    pattern = BASES[name][1]
    if "OPS" in pattern:  # the positions' ops feed the embedding from the input: select them by name
        arch = parse_architecture(store.model_config(name))
        pattern = pattern.replace("OPS", exact_scope([n.name for n in arch.layers if n.op][:2]))
    try:
        build_network(store, name, pattern, head="gap", classes=2)
    except IncompatibleShapes as exc:
        assert "(op)" not in str(exc) and "sit between selected layers" in str(exc), str(exc)
        return HINT.search(str(exc)).group(1)
    return pattern


def _same(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def _bits(model: keras.Model, names: list[str]) -> list[bytes]:
    return [np.asarray(w).tobytes() for n in names for w in model.get_layer(n).get_weights()]


@pytest.mark.parametrize("name", list(BASES))
def test_blocks_with_operations_build_match_train_frozen(modern, name):
    store, bases = modern
    _, _, exit_layer, x = BASES[name]
    scope = _scope(store, name)
    built = build_network(store, name, scope, head="gap", classes=2, seed=0, name=name)
    lin = built.lineage
    assert lin["exits"] == [{"layer": exit_layer, "index": 0}], lin["exits"]
    ops_reused = [e["name"] for e in lin["layers"] if e.get("op")]
    assert (len(ops_reused) >= 2) == (name != "effv2"), ops_reused  # EfficientNetV2's adds are layers
    sub = keras.Model(built.model.inputs, built.model.get_layer(exit_layer).output)
    base = keras.Model(bases[name].input, bases[name].get_layer(exit_layer).output)
    _same(sub.predict(x[:4], verbose=0), base.predict(x[:4], verbose=0))
    reused = [e["name"] for e in lin["layers"] if not e.get("op")]
    before = _bits(built.model, reused)
    result = train(built.model, Dataset(x, RNG.integers(0, 2, size=len(x)), "synthetic"),
                   TrainConfig(epochs=1, batch_size=8, seed=0))
    assert result.epochs_run == 1 and _bits(built.model, reused) == before
    # stored, it loads again (Keras' legacy .h5 loader cannot rebuild operation nodes) and serves
    info = store.register(built.model, f"{name}-built", lineage=lin)
    _same(Service(store.root).infer(info.ref, x[:2]).outputs[0], built.model.predict(x[:2], verbose=0))


def test_operation_nodes_are_rows_with_paths_and_shapes(modern):
    store, _ = modern
    table = layer_table(store, "encoder", scope="tok_emb|pos_emb")
    rows = {r.name: r for r in table.rows}
    op_rows = [r for r in table.rows if r.op]
    assert [r.class_name for r in op_rows][:3] == ["Multiply", "Add", "Add"] and op_rows[
        -1
    ].class_name == "Mean"
    assert op_rows[2].inputs == ("tok_emb", "pos_emb") and op_rows[2].output_shape == [None, 8, 16]
    as_json = {x["name"]: x for x in table.to_dict()["layers"]}
    assert (
        rows["tok_emb"].op is False and as_json["tok_emb"]["op"] is False and as_json[op_rows[0].name]["op"]
    )
    convnext = layer_table(store, "convnext")
    scale = next(r for r in convnext.rows if r.name.endswith("stage_0_block_0_layer_scale"))
    assert scale.class_name == "LayerScale" and scale.params == 96  # Keras' own internal layer, weights read


def test_constants_slices_and_ellipsis_are_rebuilt(modern):
    """preprocess_input: x[..., i] (GetItem with an Ellipsis), a stack, and a captured mean tensor."""
    store, bases = modern
    arch = parse_architecture(store.model_config("pre"))
    built = build_network(store, "pre", ".*", classes=2, seed=0)
    assert {"GetItem", "Stack", "Add"} <= {e["class_name"] for e in built.lineage["layers"] if e.get("op")}
    assert built.lineage["inputs"][0]["from"] == "img" and len(arch.layers) == len(built.lineage["layers"])
    _same(
        keras.Model(built.model.inputs, built.model.get_layer("pool").output).predict(IMAGES[:3], verbose=0),
        bases["pre"].predict(IMAGES[:3], verbose=0),
    )


def test_keras_internal_application_layers_load_where_keras_defines_them(tmp_path):
    """Every layer class keras.applications keeps in a private module: ConvNeXt's LayerScale and
    StochasticDepth, InceptionResNetV2's CustomScaleLayer (a tiny graph of them, not the 55M-parameter
    network). Recorded by their module, they are resolved there; nothing of theirs is copied into reuse."""
    from keras.src.applications.convnext import LayerScale, StochasticDepth
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 4), name="x")
    h = layers.Conv2D(4, 3, padding="same", name="conv")(x)
    h = LayerScale(0.5, 4, name="scale")(h)
    h = StochasticDepth(0.2, name="drop_path")(h)
    h = CustomScaleLayer(0.3, name="mix")([x, h])
    base = keras.Model(x, layers.Dense(2, name="out")(layers.GlobalAveragePooling2D(name="pool")(h)))
    base.get_layer("scale").set_weights([np.arange(4, dtype="float32")])
    store = ModelStore(tmp_path / "store")
    store.register(base, "internal")
    built = build_network(store, "internal", "conv|scale|drop_path|mix", head="gap", classes=2, seed=0)
    assert [e["class_name"] for e in built.lineage["layers"]] == ["Conv2D", "LayerScale", "StochasticDepth",
                                                                  "CustomScaleLayer"]
    images = np.concatenate([IMAGES[:3, :8, :8, :], IMAGES[:3, :8, :8, :1]], axis=-1)
    _same(keras.Model(built.model.inputs, built.model.get_layer("mix").output).predict(images, verbose=0),
          keras.Model(base.input, base.get_layer("mix").output).predict(images, verbose=0))
    assert type(store.load("internal").get_layer("scale")) is LayerScale  # the whole model loads too


def _ops(store: ModelStore, name: str) -> list[str]:
    return [n.name for n in parse_architecture(store.model_config(name)).layers if n.op]


# Selection with operation nodes: (scope with {0}, {1}.. standing for the encoder's ops, expected outcome)
OP_CASES = [
    ("tok_emb|pos_emb|{0}|{1}|{2}", "exit {2}"),  # positions and the sum: an op ends the selection
    ("tok_emb|pos_emb|{2}|block0_attn", "entries tokens,{1}"),  # unselected position ops feed an entry
    ("tok_emb|pos_emb|{0}|{1}|block0_attn", "gap {2}"),  # the sum sits between: named, and how to close it
    ("{0}|{1}", "exit {1}"),  # ops alone
    ("block0_ln1|block0_ff1|block0_ff2|block0_ln2", "gap {4}"),  # x + ff between ff2 and ln2
    ("block0_ln1|block0_ff1|block0_ff2|block0_ln2|{4}", "exit block0_ln2"),
]


@pytest.mark.parametrize(("pattern", "expected"), OP_CASES)
def test_selection_cases_with_operation_nodes(modern, pattern, expected):
    store, _ = modern
    names = _ops(store, "encoder")
    arch = parse_architecture(store.model_config("encoder"))
    scope = pattern.format(*(re.escape(n) for n in names))
    _, leaves = select_scope(arch, scope)
    kind, _, want = expected.format(*names).partition(" ")
    if kind == "gap":
        with pytest.raises(IncompatibleShapes) as exc:
            plan_subgraph(arch, leaves, scope)
        assert f"unselected layer(s) {want} (Add)" in str(exc.value)
        plan_subgraph(arch, select_scope(arch, HINT.search(str(exc.value)).group(1))[1])  # the hint closes it
        return
    plan = plan_subgraph(arch, leaves, scope)
    if kind == "exit":
        assert [c.layer for c in plan.calls if c.key == plan.exits[0].call] == [want]
    else:
        assert [e.source for e in plan.entries] == want.split(",")


@pytest.mark.parametrize("cls", sorted(AUGMENTATION))
def test_every_augmentation_class_is_the_identity_at_inference(cls):
    args = {"RandomRotation": (0.2,), "RandomZoom": (0.2,), "RandomTranslation": (0.2, 0.2),
            "RandomContrast": (0.5,), "RandomBrightness": (0.3,), "RandomHue": (0.5,),
            "RandomSaturation": (0.5,), "RandomSharpness": (0.5,), "RandomShear": (0.3, 0.3),
            "RandomPosterization": (2,), "RandomColorDegeneration": (0.5,), "RandomGaussianBlur": (0.5,),
            "Solarization": (0.5,)}
    layer = getattr(keras.layers, cls)(*args.get(cls, ()))
    x = IMAGES[:2, :16, :16]
    assert np.array_equal(np.asarray(layer(x, training=False)), x) and not layer.weights


def test_augmentation_layers_are_never_copied(modern, tmp_path):
    store, bases = modern
    for scope in ("flip|rotate|conv.*", "conv1|conv2", "rotate|conv1|conv2"):
        built = build_network(store, "aug", scope, head="gap", classes=2, seed=0, name="aug_built")
        kinds = {type(x).__name__ for x in built.model.layers}
        assert not kinds & AUGMENTATION, kinds
        assert built.lineage["inputs"][0]["from"] == "image" and built.model.inputs[0].name == "image"
    built = build_network(store, "aug", "flip|rotate|conv1|conv2", head="gap", classes=2, seed=0,
                          name="aug_built")
    assert [s["name"] for s in built.lineage["skipped"]] == ["flip", "rotate"]
    assert built.lineage["inputs"][0]["from"] == "image"
    _same(
        keras.Model(built.model.inputs, built.model.get_layer("conv2").output).predict(IMAGES[:2], verbose=0),
        keras.Model(bases["aug"].input, bases["aug"].get_layer("conv2").output).predict(
            IMAGES[:2], verbose=0
        ),
    )
    result = train(built.model, Dataset(IMAGES, RNG.integers(0, 2, size=16), "synthetic"),
                   TrainConfig(epochs=1, batch_size=8, seed=0))
    assert result.cached_layers  # the frozen part is cached: nothing random in it
    info = store.register(built.model, "aug-built", lineage=built.lineage)
    from reuse.export.formats import export_version

    if keras.backend.backend() == "jax":
        pytest.importorskip("jax2onnx")  # Keras' ONNX export on JAX goes through it

    export_version(store, info.ref, tmp_path / "aug.onnx")  # checked in ONNX Runtime against Keras
    assert (tmp_path / "aug.onnx").stat().st_size > 0


def test_an_operation_graph_answers_over_grpc(modern):
    """The encoder (constants, ops, int token ids) built and served by a real server: one request."""
    from reuse.grpc.server import ServerConfig, start_in_thread
    from tests.grpc_support import infer_request, stubs

    store, _ = modern
    built = build_network(store, "encoder", _scope(store, "encoder"), head="gap", classes=2,
                          seed=0, name="served")
    store.register(built.model, "served", lineage=built.lineage)
    server = start_in_thread(Service(store.root), ServerConfig(port=0))
    try:
        channel, inference, _ = stubs(server.target)
        resp = inference.ModelInfer(infer_request(TOKENS[:2], model="served", name="tokens",
                                                  datatype="INT32"))
        got = np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).reshape(
            tuple(resp.outputs[0].shape)
        )
        _same(got, built.model.predict(TOKENS[:2], verbose=0))
        channel.close()
    finally:
        server.stop()
