"""Custom layers from trusted modules only, functional subclasses (our own and KerasHub's backbones)
stored as their graphs, one story for unsafe models (subclassed: refused with the reason; Lambda: --unsafe
on every command that runs it), and configs that must be refused before Keras sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from keras import layers, ops

from reuse.build import build_network
from reuse.cli import cli
from reuse.config import ENV_TRUSTED_MODULES
from reuse.data import Dataset
from reuse.errors import IncompatibleShapes, InvalidInput, UntrustedClass
from reuse.store import ModelStore
from reuse.store.layer_table import layer_table
from reuse.train import TrainConfig, train
from reuse.trust import trusting, unsafe_code
from tests.custom_layers import Scale, Subclassed, TinyBackbone, TokenAndPositionEmbedding

ROOT = Path(__file__).resolve().parents[1]
MODULE = "tests.custom_layers"
RNG = np.random.default_rng(1)
TOKENS = RNG.integers(0, 30, size=(16, 6)).astype("int32")
IMAGES = RNG.normal(size=(16, 16, 16, 3)).astype("float32")


def tokens_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    x = TokenAndPositionEmbedding(6, 30, 8, name="tok_pos")(tokens)
    x = layers.Dense(8, activation="relu", name="mix")(x)
    x = layers.LayerNormalization(name="norm")(x + layers.Dense(8, name="ff")(x))
    return keras.Model(tokens,
                       layers.Dense(2, activation="softmax", name="cls")(ops.mean(x, axis=1)), name="tok")


def lambda_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name="features")
    h = layers.Dense(5, activation="relu", name="d1")(x)
    h = layers.Lambda(lambda t: t * 2.0 + 1.0, name="twice")(h)
    h = layers.Dense(4, activation="relu", name="d2")(h)
    return keras.Model(x, layers.Dense(2, activation="softmax", name="out")(h), name="lam")


def _cut(model: keras.Model, name: str) -> keras.Model:
    return keras.Model(model.inputs, model.get_layer(name).output)


def _same(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def _frozen_bits(model: keras.Model, names) -> list[bytes]:
    return [np.asarray(w).tobytes() for n in names for w in model.get_layer(n).get_weights()]


def _serve_one(store: ModelStore, built, name: str, x) -> None:
    """Register the built model and answer one request through the serving engine, as Keras would."""
    from reuse.service import Service

    info = store.register(built.model, name, lineage=built.lineage)
    _same(Service(store.root).infer(info.ref, x).outputs[0], built.model.predict(x, verbose=0))


def _train_one_epoch_frozen(built, x) -> None:
    reused = [e["name"] for e in built.lineage["layers"] if not e.get("op")]
    before = _frozen_bits(built.model, reused)
    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    result = train(built.model, Dataset(x, RNG.integers(0, 2, size=n), "synthetic"),
                   TrainConfig(epochs=1, batch_size=8, seed=0))
    assert result.epochs_run == 1 and _frozen_bits(built.model, reused) == before


@pytest.fixture
def cli_run(monkeypatch):
    """The CLI in this process; what --trust-module and --unsafe change for the process is undone after."""
    monkeypatch.delenv(ENV_TRUSTED_MODULES, raising=False)

    def run(*args: str, code: int = 0):
        with trusting([]), unsafe_code(False):
            result = CliRunner().invoke(cli, [str(a) for a in args])
        os.environ.pop(ENV_TRUSTED_MODULES, None)  # --trust-module passes its modules on to child processes
        assert result.exit_code == code, result.output
        return result

    return run


# -- which classes a config may name: (entry, trusted modules, None or the error's type and text) ----
def _layer(module, cls, registered=None, **config):
    return {"module": module, "class_name": cls, "registered_name": registered,
            "config": {"name": "x", **config}, "name": "x", "inbound_nodes": []}


CLASS_CASES = [
    (_layer("keras.layers", "Dense", units=2), (), None),
    (_layer("keras.src.ops.numpy", "Add", "Add"), (), None),  # an operation node
    (_layer("keras.src.applications.convnext", "LayerScale", "LayerScale"), (), None),  # Keras-internal
    ({"class_name": "Dense", "config": {"name": "x", "units": 2}}, (), None),  # a legacy (.h5) entry
    ({"class_name": "reuse>Maxout", "config": {"name": "x", "units": 2}}, (), None),  # ours, legacy
    (_layer("keras.src.ops.numpy", "FancyOp", "FancyOp"), (), (InvalidInput, "which Keras")),
    (_layer("keras.optimizers", "Adam"), (), (InvalidInput, "not a Keras layer or operation")),
    (_layer("tests.custom_layers", "Scale", "reuse_tests>Scale"), (),
     (UntrustedClass, "which is not trusted")),
    (_layer("tests.custom_layers", "Scale", "reuse_tests>Scale"), (MODULE,), None),
    (_layer("tests", "Scale", "reuse_tests>Scale"), ("tests",), None),  # a package covers its modules
    (_layer("evil.mod", "Evil", "evil>Evil"), (MODULE,),
     (UntrustedClass, "neither Keras nor a trusted module")),
    (_layer("keras.layers", "Dense", kernel_initializer={"module": "evil", "class_name": "Init",
                                                          "registered_name": "evil>Init", "config": {}}),
     (), (UntrustedClass, "'evil>Init'")),  # nested objects are checked too
]


@pytest.mark.parametrize(("entry", "modules", "refused"), CLASS_CASES)
def test_which_classes_a_config_may_name(entry, modules, refused):
    from reuse.trust import check_config

    with trusting(modules):
        if refused is None:
            check_config(entry, "case", model=False)
            return
        with pytest.raises(refused[0], match=refused[1]):
            check_config(entry, "case", model=False)


def test_a_config_nested_too_deep_is_refused_without_recursing():
    from reuse.trust import MAX_CONFIG_DEPTH, check_config

    deep: dict = {"class_name": "Dense", "config": {"name": "x"}}
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = {"v": [deep]}
    with pytest.raises(InvalidInput, match=f"nested more than {MAX_CONFIG_DEPTH} levels deep"):
        check_config(deep, "case")


# -- custom layers from trusted modules ------------------------------------------------------------
def test_a_custom_layer_loads_only_from_a_trusted_module(tmp_path, cli_run):
    base = tokens_model()
    base.save(tmp_path / "tok.keras")
    root = tmp_path / "store"
    r = cli_run("register", tmp_path / "tok.keras", "--name", "tok", "--store", root, code=1)
    assert r.output.startswith("Error: ") and r.output.count("\n") == 1
    assert "layer 'tok_pos' uses class 'reuse_tests>TokenAndPositionEmbedding', defined in module " \
           "'tests.custom_layers', which is not trusted" in r.output and "--trust-module MODULE" in r.output
    assert not ModelStore(root).names()
    cli_run("register", tmp_path / "tok.keras", "--name", "tok", "--trust-module", MODULE, "--store", root)
    store = ModelStore(root)
    add = next(r.name for r in layer_table(store, "tok").rows if r.op)  # x + ff; ops are named by a counter
    # layers after the custom one build without trusting it (it is never deserialised) ...
    after = build_network(store, "tok", f"mix|ff|norm|{add}", classes=2, head="gap")
    assert [i["from"] for i in after.lineage["inputs"]] == ["tok_pos"]
    # ... selecting it needs the module, named by the error
    with pytest.raises(UntrustedClass, match=r"--trust-module MODULE \(the server and its jobs"):
        build_network(store, "tok", "tok_pos|mix", classes=2, head="gap")
    with trusting([MODULE]):
        built = build_network(store, "tok", f"tok_pos|mix|ff|{add}|norm", head="gap", classes=2, seed=0)
        _same(_cut(built.model, "norm").predict(TOKENS[:4], verbose=0),
              _cut(base, "norm").predict(TOKENS[:4], verbose=0))
        _train_one_epoch_frozen(built, TOKENS)
        info = store.register(built.model, "tok-built", lineage=built.lineage)
        assert store.load(info.ref).get_layer("tok_pos").__class__ is TokenAndPositionEmbedding
    with pytest.raises(UntrustedClass):  # a later process that does not trust it cannot load it either
        store.load("tok-built")


def test_the_gap_rule_says_what_selecting_a_custom_layer_takes(tmp_path):
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name="features")
    h = Scale(name="scale")(layers.Dense(5, name="d1")(x))
    store = ModelStore(tmp_path / "store")
    store.register(keras.Model(x, layers.Dense(2, name="d2")(h)), "scaled")
    with pytest.raises(IncompatibleShapes,
                       match=r"select it too, e.g. --reuse 'd1\|d2\|scale', with --trust-module "
                                                 r"naming the module that defines scale, or end the "
                                                 r"selection at d1"):
        build_network(store, "scaled", "d1|d2", classes=2)
    with trusting([MODULE]):
        assert (
            build_network(store, "scaled", "d1|d2|scale", classes=2).lineage["layers"][1]["class_name"]
            == "Scale"
        )


def test_grpc_uploads_use_only_the_classes_the_server_trusts(tmp_path):
    from reuse.grpc.server import ServerConfig, start_in_thread
    from reuse.remote.client import ReuseClient
    from reuse.service import Service
    from tests.grpc_support import infer_request, stubs

    tokens_model().save(tmp_path / "tok.keras")
    server = start_in_thread(Service(tmp_path / "store"), ServerConfig(port=0))
    try:
        client = ReuseClient(server.target)
        with pytest.raises(InvalidInput,
                           match="uses class 'reuse_tests>TokenAndPositionEmbedding', defined in "
                                               "module 'tests.custom_layers', which is not trusted"):
            client.upload_model(tmp_path / "tok.keras", "tok")  # INVALID_ARGUMENT on the wire
        with trusting([MODULE]):  # as `reuse serve --trust-module tests.custom_layers` would
            assert client.upload_model(tmp_path / "tok.keras", "tok").ref == "tok:1"
            channel, inference, _ = stubs(server.target)
            resp = inference.ModelInfer(infer_request(TOKENS[:2], model="tok", name="tokens",
                                                      datatype="INT32"))
            assert tuple(resp.outputs[0].shape) == (2, 2)
            channel.close()
        client.close()
    finally:
        server.stop()


# -- functional subclasses: stored as their graph, their class recorded ----------------------------
def test_our_functional_subclass_is_stored_as_its_graph(tmp_path, cli_run):
    keras.utils.set_random_seed(0)
    base = TinyBackbone(name="tiny")
    store = ModelStore(tmp_path / "store")
    info = store.register(base, "tiny")
    assert info.model_class == "tests.custom_layers.TinyBackbone"
    assert store.model_config("tiny")["class_name"] == "Functional"
    add = next(r.name for r in layer_table(store, "tiny").rows if r.op)  # ops are named by a global counter
    built = build_network(store, "tiny", f"stem|block1_conv|{add}|block1_bn|block2_conv", head="gap",
                          classes=2, seed=0)
    assert [e["class_name"] for e in built.lineage["layers"] if e.get("op")] == ["Add"]
    _same(_cut(built.model, "block2_conv").predict(IMAGES[:3], verbose=0),
          _cut(base, "block2_conv").predict(IMAGES[:3], verbose=0))
    _train_one_epoch_frozen(built, IMAGES)
    _serve_one(store, built, "tiny-built", IMAGES[:2])
    # a .keras file of it: the class is refused (with the reason) until its module is trusted
    base.save(tmp_path / "tiny.keras")
    r = cli_run("register", tmp_path / "tiny.keras", "--name", "t2", "--store", tmp_path / "store", code=1)
    assert "the model is a 'TinyBackbone' (module 'tests.custom_layers'), not a Sequential or functional " \
           "model" in r.output and "functional subclass" in r.output
    out = cli_run("register", tmp_path / "tiny.keras", "--name", "t2", "--trust-module", MODULE, "--json",
                  "--store", tmp_path / "store").output
    assert json.loads(out)["model_class"] == "tests.custom_layers.TinyBackbone"


def test_a_subclassed_model_is_refused_with_the_reason(tmp_path, cli_run):
    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    store = ModelStore(tmp_path / "store")
    with pytest.raises(InvalidInput,
                       match=r"a subclassed keras.Model with its own call\(\): its config holds no "
                                           r"layer graph, so its layers cannot be reused"):
        store.register(model, "sub")
    model.save(tmp_path / "sub.keras")
    # trusted: still no graph
    with trusting([MODULE]), pytest.raises(InvalidInput, match="subclassed keras.Model"):
        store.register_file(tmp_path / "sub.keras", "sub")
    assert not store.names()


@pytest.fixture(scope="module")
def hub():
    return pytest.importorskip("keras_hub")


def test_keras_hub_backbones_are_stored_as_graphs_and_reused(hub, tmp_path):
    keras.utils.set_random_seed(0)
    store = ModelStore(tmp_path / "store")
    resnet = hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[2, 2], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(32, 32, 3))
    info = store.register(resnet, "hub-resnet")
    assert info.model_class == "keras_hub.src.models.resnet.resnet_backbone.ResNetBackbone"
    images = RNG.normal(size=(8, 32, 32, 3)).astype("float32")
    built = build_network(store, "hub-resnet", "conv1_.*|pool1_.*|stack0_.*", head="gap", classes=2, seed=0)
    end = built.lineage["exits"][0]["layer"]
    _same(_cut(built.model, end).predict(images[:2], verbose=0),
          _cut(resnet, end).predict(images[:2], verbose=0))
    _train_one_epoch_frozen(built, images)
    _serve_one(store, built, "resnet-built", images[:2])

    bert = hub.models.BertBackbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                                   intermediate_dim=32, max_sequence_length=8)
    store.register(bert, "hub-bert")
    with pytest.raises(UntrustedClass, match="keras_hub"):  # its TransformerEncoder is KerasHub's code
        build_network(store, "hub-bert", "token_embedding|position_embedding|segment_embedding|embeddings_.*|"
                      "transformer_layer_0", head="gap", classes=2)
    with trusting(["keras_hub"]):
        built = build_network(store, "hub-bert", "token_embedding|position_embedding|segment_embedding|"
                              "embeddings_.*|transformer_layer_0", head="gap", classes=2, seed=0)
        inputs = {"token_ids": TOKENS[:4, :8] % 50, "segment_ids": np.zeros((4, 6), "int32"),
                  "padding_mask": np.ones((4, 6), "int32")}
        assert sorted(t.name for t in built.model.inputs) == sorted(inputs)  # the base's inputs, by name
        got = _cut(built.model, "transformer_layer_0").predict([inputs[t.name] for t in built.model.inputs],
                                                              verbose=0)
        _same(got, _cut(bert, "transformer_layer_0").predict(inputs, verbose=0))
        tokens = [inputs[t.name] for t in built.model.inputs]
        _train_one_epoch_frozen(built,
                                {t.name: np.resize(inputs[t.name], (8, 6)) for t in built.model.inputs})
        _serve_one(store, built, "bert-built", tokens)


# -- one story for unsafe models -------------------------------------------------------------------
def test_lambda_models_take_unsafe_on_every_command_that_runs_them(tmp_path, cli_run):
    base = lambda_model()
    base.save(tmp_path / "lam.keras")
    root = tmp_path / "store"
    r = cli_run("register", tmp_path / "lam.keras", "--name", "lam", "--store", root, code=1)
    assert "Lambda layer(s) 'twice'" in r.output and "--unsafe" in r.output
    cli_run("register", tmp_path / "lam.keras", "--name", "lam", "--unsafe", "--store", root)
    store = ModelStore(root)
    # the gap rule names the Lambda and says that selecting it needs --unsafe ...
    with pytest.raises(IncompatibleShapes,
                       match=r"select it too, e.g. --reuse 'd1\|d2\|twice', with --unsafe "
                                                 r"\(twice runs Python code\), or end the selection at d1"):
        build_network(store, "lam", "d1|d2", classes=2)
    # ... which the build says too, and takes
    r = cli_run("build", "lam2", "--from", "lam", "--reuse", "d1|d2|twice", "--classes", "2",
                "--store", root, code=1)
    assert r.output == ("Error: layer twice is a Lambda layer, which runs arbitrary Python code; pass "
                        "--unsafe (unsafe=True) to run it, only if you trust the model's source\n")
    cli_run("build", "lam2", "--from", "lam", "--reuse", "d1|d2|twice", "--classes", "2", "--unsafe",
            "--seed", "0", "--store", root)
    x = RNG.normal(size=(8, 6)).astype("float32")
    with unsafe_code():
        _same(_cut(store.load("lam2"), "d2").predict(x, verbose=0), _cut(base, "d2").predict(x, verbose=0))
    np.savez(tmp_path / "data.npz", x=x, y=RNG.integers(0, 2, size=8))
    data = str(tmp_path / "data.npz")
    r = cli_run("evaluate", "lam2", "--data", data, "--store", root, code=1)
    assert "Lambda layer(s) 'twice'" in r.output and "pass --unsafe" in r.output
    assert "samples" in json.loads(cli_run("evaluate", "lam2", "--data", data, "--unsafe", "--json",
                                           "--store", root).output)
    cli_run("train", "lam2", "--data", data, "--epochs", "1", "--unsafe", "--store", root)
    cli_run("predict", "lam2", "--data", data, "--unsafe", "--store", root)
    r = cli_run("evaluate", "lam2", "--data", data, "--unsafe", "--server", "127.0.0.1:1",
                "--store", root, code=1)
    assert r.output.startswith("Error: --trust-module and --unsafe apply to the models this process loads")


def test_an_operation_graph_in_a_legacy_h5_file_says_to_save_it_as_keras(tmp_path):
    """Keras' .h5 format drops the module of each node, so its own loader cannot rebuild x + y; the same
    model as .keras registers."""
    keras.utils.set_random_seed(0)
    x = keras.Input((4,), name="x")
    h = layers.Dense(3, name="d1")(x)
    model = keras.Model(x, layers.Dense(2, name="d2")(h + 3.0))
    model.save(tmp_path / "ops.h5")
    model.save(tmp_path / "ops.keras")
    store = ModelStore(tmp_path / "store")
    with pytest.raises(InvalidInput,
                       match=r"Keras cannot load it as a model \(if the model has operation nodes, "
                                           r"such as x \+ y or ops.\* calls, save it as .keras"):
        store.register_file(tmp_path / "ops.h5", "ops")
    assert store.register_file(tmp_path / "ops.keras", "ops").ref == "ops:1"


# -- configs refused before Keras sees them ---------------------------------------------------------
def _keras_file(tmp_path: Path, name: str, edit) -> Path:
    """A real .keras archive of a small model whose config.json ``edit`` rewrites (a dict -> a str)."""
    src = tmp_path / "src.keras"
    if not src.exists():
        keras.utils.set_random_seed(0)
        x = keras.Input((4,), name="x")
        h = layers.Dense(3, name="d1")(x)
        keras.Model(x, layers.Dense(2, name="d2")(h + 1.0)).save(src)
    out = tmp_path / f"{name}.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "config.json":
                data = edit(json.loads(data)).encode()
            zout.writestr(item, data)
    return out


def _entry(cfg: dict, name: str) -> dict:
    return next(e for e in cfg["config"]["layers"] if e["name"] == name)


def _unknown_op(cfg):
    op = next(e for e in cfg["config"]["layers"] if e.get("module", "").startswith("keras.src.ops"))
    op["class_name"] = op["registered_name"] = "FancyOp"
    return json.dumps(cfg)


def _deep_args(cfg):
    op = next(e for e in cfg["config"]["layers"] if e.get("module", "").startswith("keras.src.ops"))
    op["inbound_nodes"][0]["args"].append("DEEP")
    return json.dumps(cfg).replace('"DEEP"', "[" * 10_000 + "1" + "]" * 10_000)


def _not_a_layer(cfg):
    _entry(cfg, "d1").update(module="keras.optimizers", class_name="Adam", registered_name=None)
    return json.dumps(cfg)


def _self_reference(cfg):
    _entry(cfg, "d1")["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["d1", 0, 0]
    return json.dumps(cfg)


def _cycle(cfg):
    _entry(cfg, "d1")["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["d2", 0, 0]
    return json.dumps(cfg)


BAD_CONFIGS = [
    (_unknown_op, "uses 'keras.src.ops.numpy.FancyOp', which Keras {v} does not define"),
    (_deep_args, "config.json is nested too deeply to be a model"),
    (_not_a_layer, "layer 'd1' names 'keras.optimizers.Adam', which is not a Keras layer or operation"),
    (_self_reference, "read tensors that no layer produces, or read their own outputs (a cycle)"),
    (_cycle, "read tensors that no layer produces, or read their own outputs (a cycle)"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_CONFIGS,
                         ids=[e.__name__.strip("_") for e, _ in BAD_CONFIGS])
def test_bad_configs_are_one_clear_error_and_register_nothing(tmp_path, cli_run, edit, message):
    path = _keras_file(tmp_path, edit.__name__.strip("_"), edit)
    r = cli_run("register", path, "--name", "bad", "--store", tmp_path / "store", code=1)
    assert r.output.startswith("Error: ") and r.output.count("\n") == 1, r.output
    assert message.format(v=keras.__version__) in r.output
    assert not ModelStore(tmp_path / "store").names()


@pytest.mark.parametrize(("module", "message"), [
    ("no_such_module_here", "trusted module 'no_such_module_here' (--trust-module) cannot be imported: "
                            "No module named 'no_such_module_here'"),
    ("tests.raising_module",
     "trusted module 'tests.raising_module' (--trust-module) raised RuntimeError while it "
                             "was imported: 'this module cannot be imported (on purpose)'"),
    ("not a module", "invalid module name 'not a module' in --trust-module: expected a dotted Python module "
                     "name, e.g. my_package.layers"),
])
def test_bad_trusted_modules_are_one_clear_error(tmp_path, cli_run, module, message):
    path = _keras_file(tmp_path, "ok", json.dumps)
    r = cli_run("register", path, "--name", "ok", "--trust-module", module, "--store",
                tmp_path / "store", code=1)
    assert r.output == f"Error: {message}\n"
    assert not ModelStore(tmp_path / "store").names()


def test_a_server_imports_its_trusted_modules_at_start(tmp_path):
    """`reuse serve` in its own process: $REUSE_TRUSTED_MODULES is imported before it listens, and a module
    that fails stops it with one line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), ENV_TRUSTED_MODULES: "tests.raising_module"}
    proc = subprocess.run([sys.executable, "-m", "reuse", "serve", "--port", "0", "--store",
                           str(tmp_path / "s")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "listening" not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        f"Error: trusted module 'tests.raising_module' (${ENV_TRUSTED_MODULES}) raised RuntimeError "
        "while it was imported: 'this module cannot be imported (on purpose)'")
