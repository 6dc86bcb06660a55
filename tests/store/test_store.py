"""The model store's Python API on real Keras models and real HDF5 files."""

from __future__ import annotations

import json

import h5py
import keras
import numpy as np
import pytest
from conftest import make_mlp
from store_helpers import legacy_dir

from reuse.errors import AlreadyExists, InvalidInput, InvalidName, NotFound, UnsafeModel
from reuse.store import LayerInfo, ModelRef, ModelStore, check_name, h5file


def predict(model, x):
    return np.asarray(model.predict(x, verbose=0))


@pytest.fixture
def x(rng):
    return rng.normal(size=(16, 8)).astype("float32")


@pytest.fixture
def bn_model():
    """An MLP with BatchNormalization (non-trainable weights) and one frozen layer, every weight set to
    distinct random values so a swapped or default-initialised weight would show."""
    model = make_mlp(batchnorm=True, seed=1)
    model.get_layer("hidden2").trainable = False
    rng = np.random.default_rng(1)
    for w in model.weights:
        w.assign(rng.uniform(0.5, 1.5, size=w.shape).astype("float32"))
    return model


def test_round_trip_with_nontrainable_and_frozen_weights(store, bn_model, x):
    info = store.register(bn_model, "bn")
    loaded = store.load("bn")
    np.testing.assert_allclose(predict(loaded, x), predict(bn_model, x), atol=1e-6)
    assert loaded.get_layer("hidden2").trainable is False
    for a, b in zip(loaded.weights, bn_model.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert info.path == store.path("bn:1")


def test_plain_keras_opens_a_store_file(store, tiny_model, x):
    info = store.register(tiny_model, "base")
    opened = keras.models.load_model(str(info.path), compile=False)
    np.testing.assert_allclose(predict(opened, x), predict(tiny_model, x), atol=1e-6)


def test_metadata_is_complete_and_every_weight_has_a_checksum(store, tiny_model):
    info = store.register(
        tiny_model, "base", description="tiny", tags={"team": "a"}, class_names=["x", "y", "z"],
        metrics={"accuracy": 0.5}, history={"loss": [1.0, 0.5]},
        lineage={"parent": "other:2", "layers": {"hidden1": "hidden1"}}, settings={"epochs": 2},
    )
    got = store.info("base:1")
    assert got == info
    assert (got.description, got.tags, got.class_names) == ("tiny", {"team": "a"}, ["x", "y", "z"])
    assert (got.metrics, got.history, got.settings) == ({"accuracy": 0.5},
                                                        {"loss": [1.0, 0.5]}, {"epochs": 2})
    assert got.lineage == {"parent": "other:2", "layers": {"hidden1": "hidden1"}}
    assert got.input_shape == [None, 8] and got.output_shape == [None, 3]
    assert (
        got.keras_version == keras.__version__ and got.tensorflow_version and got.created.endswith("+00:00")
    )
    assert got.params == tiny_model.count_params() and got.size_bytes == info.path.stat().st_size
    with h5py.File(info.path) as f:
        assert f["reuse"].attrs["name"] == "base" and int(f["reuse"].attrs["version"]) == 1
        assert json.loads(f["reuse/meta"][()])["description"] == "tiny"
        datasets = h5file.iter_weight_datasets(f, info.path)
        assert len(datasets) == len(tiny_model.weights)
        for ds in datasets:
            assert ds.attrs["sha256"] == h5file.array_sha256(ds[()])
        assert "optimizer_weights" not in f


def test_layers_table(store, bn_model):
    store.register(bn_model, "bn")
    layers = store.layers("bn")
    assert [la.name for la in layers] == [la.name for la in bn_model.layers]
    assert layers[0] == LayerInfo("hidden1", "Dense", [None, 16], 8 * 16 + 16, True)
    assert layers[1] == LayerInfo("bn1", "BatchNormalization", [None, 16], 4 * 16, True)
    assert store.layers("bn")[2].trainable is False


def test_versions_latest_and_list(store, tiny_model):
    for _ in range(3):
        store.register(tiny_model, "a")
    store.register(tiny_model, "b")
    assert [i.ref for i in store.versions("a")] == ["a:1", "a:2", "a:3"]
    assert [i.ref for i in store.list()] == ["a:3", "b:1"]
    assert store.resolve("a") == ModelRef("a", 3)
    with pytest.raises(NotFound, match="no version 7"):
        store.info("a:7")
    with pytest.raises(NotFound, match="no model named 'c'"):
        store.versions("c")


def test_read_layer_weights_reads_only_named_layers(store, bn_model):
    store.register(bn_model, "bn")
    got = store.read_layer_weights("bn", ["hidden1", "bn1"])
    layer = bn_model.get_layer("bn1")
    want = [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights + layer.non_trainable_weights]
    for a, b in zip(got["bn1"], want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [a.shape for a in got["hidden1"]] == [(8, 16), (16,)]
    with pytest.raises(NotFound, match="no layer named 'nope'"):
        store.read_layer_weights("bn", ["nope"])
    assert store.model_config("bn")["class_name"] == "Sequential"


@pytest.mark.parametrize("bad",
                         ["../x", "a/b", "", "a" * 65, "Upper", "..", "a..b", ".hidden", "a b", "-x", "a:b"])
def test_bad_names_are_refused(store, tiny_model, bad):
    with pytest.raises(InvalidName):
        check_name(bad)
    with pytest.raises(InvalidName):
        store.register(tiny_model, bad)
    assert not store.root.exists() or not any(p.name != ".reuse" for p in store.root.iterdir())


def test_longest_name_and_bad_versions(store, tiny_model):
    assert store.register(tiny_model, "a" * 64).version == 1
    for ref in ("a:0", "a:x", "a:-1", "a:"):
        with pytest.raises(InvalidName):
            ModelRef.parse(ref)


def test_delete_never_reuses_a_version_number(store, tiny_model):
    for _ in range(2):
        store.register(tiny_model, "a")
    assert store.delete("a:2").ref == "a:2"
    assert [i.ref for i in store.versions("a")] == ["a:1"]
    assert store.register(tiny_model, "a").version == 3
    with pytest.raises(InvalidInput, match="explicit version"):
        store.delete("a")
    with pytest.raises(NotFound):
        store.delete("a:2")
    store.delete("a:1")
    store.delete("a:3")
    assert store.list() == []
    with pytest.raises(NotFound):
        store.load("a")


def test_export_is_atomic_and_opens_in_keras(store, tiny_model, x, tmp_path):
    store.register(tiny_model, "base")
    out = tmp_path / "out" / "base.keras"
    assert store.export("base", out) == out
    np.testing.assert_allclose(predict(keras.models.load_model(out, compile=False), x),
                               predict(tiny_model, x), atol=1e-6)
    with pytest.raises(AlreadyExists, match="exists"):
        store.export("base", out)
    store.export("base", out, overwrite=True)
    with pytest.raises(InvalidInput, match="must end in .keras"):
        store.export("base", tmp_path / "base.h5")
    assert sorted(p.name for p in out.parent.iterdir()) == ["base.keras"]  # no temp file left


def test_register_keras3_files(store, tiny_model, x, tmp_path):
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"m{suffix}"
        tiny_model.save(path)
        info = store.register_file(path, "k3", description=suffix, tags={"fmt": suffix})
        assert info.source["format"] == ("keras" if suffix == ".keras" else "h5-keras3")
        assert info.source["path"] == str(path.resolve())
        np.testing.assert_allclose(predict(store.load(info.ref), x), predict(tiny_model, x), atol=1e-6)
    assert [i.description for i in store.versions("k3")] == [".keras", ".h5"]


def test_register_tf_keras2_legacy_h5(store, tmp_path_factory):
    d = legacy_dir(tmp_path_factory)
    info = store.register_file(d / "tf2_plain.h5", "tf2")
    assert info.source["format"] == "h5-tf-keras2" and info.source["keras_version"].startswith("2.")
    loaded = store.load("tf2")
    np.testing.assert_allclose(predict(loaded, np.load(d / "tf2_x.npy")), np.load(d / "tf2_y.npy"), atol=1e-6)
    assert [la.name for la in store.layers("tf2")] == ["hidden1", "bn", "output"]


def _lambda_model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d"),
                             keras.layers.Lambda(lambda t: t * 2, name="double")])


def test_lambda_models_are_refused_in_every_format_unless_unsafe(store, tmp_path, tmp_path_factory):
    model = _lambda_model()
    files = [tmp_path / "lam.keras", tmp_path / "lam.h5", legacy_dir(tmp_path_factory) / "tf2_lambda.h5"]
    for f in files[:2]:
        model.save(f)
    for f in files:
        with pytest.raises(UnsafeModel, match=r"Lambda layer\(s\) 'double'"):
            store.register_file(f, "lam")
    assert not (store.root / "lam").exists() or store._scan(["lam"]) == {}
    for f in files:
        info = store.register_file(f, "lam", unsafe=True)
        assert info.unsafe_layers == ["double"]
    with pytest.raises(UnsafeModel, match="refused in safe mode"):
        store.load("lam")
    xin = np.ones((2, 4), "float32")
    for ref in ("lam:1", "lam:2"):  # from the .keras and the Keras 3 .h5 file
        np.testing.assert_allclose(predict(store.load(ref, safe_mode=False), xin),
                                   predict(model, xin), atol=1e-6)


def test_unsafe_hdf5_layouts_are_refused(store, tiny_model, tmp_path):
    src = tmp_path / "m.h5"
    tiny_model.save(src)
    cases = {
        "external": lambda f: f["model_weights"].__setitem__("evil", h5py.ExternalLink("/etc/passwd", "/")),
        "soft": lambda f: f["model_weights"].__setitem__("evil", h5py.SoftLink("/model_weights/hidden1")),
        "bomb": lambda f: f.create_dataset("model_weights/bomb/x", shape=(10**6, 10**5), dtype="f4"),
    }
    for label, damage in cases.items():
        path = tmp_path / f"{label}.h5"
        path.write_bytes(src.read_bytes())
        with h5py.File(path, "r+") as f:
            damage(f)
        with pytest.raises(InvalidInput, match="refused"):
            store.register_file(path, "evil")


def test_register_file_refuses_non_model_files(store, tmp_path):
    bad = tmp_path / "notes.h5"
    bad.write_text("hello")
    with pytest.raises(InvalidInput, match="not an HDF5 file"):
        store.register_file(bad, "x")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(InvalidInput, match="unsupported model file type '.txt'"):
        store.register_file(txt, "x")
    with pytest.raises(NotFound, match="no such file"):
        store.register_file(tmp_path / "missing.keras", "x")
    weights_only = tmp_path / "w.weights.h5"
    make_mlp().save_weights(weights_only)
    with pytest.raises(InvalidInput):
        store.register_file(weights_only, "x")


def test_store_in_new_process_sees_same_models(tmp_path, tiny_model):
    a = ModelStore(tmp_path / "s")
    a.register(tiny_model, "m")
    b = ModelStore(tmp_path / "s")
    assert [i.ref for i in b.list()] == ["m:1"]


def test_reading_a_missing_store_creates_nothing(tmp_path):
    store = ModelStore(tmp_path / "typo")
    assert store.list() == [] and store.check().ok
    with pytest.raises(NotFound):
        store.versions("a")
    assert not (tmp_path / "typo").exists()


def test_model_with_our_custom_layer_loads_in_a_fresh_process(store, tmp_path):
    """A built head may hold our registered Maxout layer; a new process (e.g. `reuse serve`) must load it."""
    import subprocess
    import sys

    import keras

    from reuse.layers.maxout import Maxout

    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, name="hidden1"), Maxout(4, name="mx")])
    store.register(model, "maxed")
    code = ("import sys; from reuse.store import ModelStore; "
            "m = ModelStore(sys.argv[1]).load('maxed'); print(type(m.layers[-1]).__name__)")
    out = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("Maxout")


def test_store_lock_is_released_after_each_write(store, tiny_model):
    """A second writer (another thread with its own store object) must not wait for the first one's lock."""
    import threading

    from reuse.store import ModelStore

    store.register(tiny_model, "locked")
    other = ModelStore(store.root, lock_timeout=3)
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("info", other.register(tiny_model, "locked")))
    t.start()
    t.join(timeout=30)
    assert result["info"].version == 2


def test_register_file_from_another_store_keeps_its_metadata(store, tiny_model, tmp_path):
    from reuse.store import ModelStore

    other = ModelStore(tmp_path / "other")
    src = other.register(tiny_model, "src", description="trained elsewhere", tags={"team": "a"},
                         class_names=["x", "y", "z"], metrics={"accuracy": 0.9}, history={"loss": [1.0, 0.5]},
                         lineage={"operation": "build", "base": {"name": "b", "version": 1}})
    info = store.register_file(src.path, "copy", tags={"env": "test"})
    assert info.class_names == ["x", "y", "z"] and info.metrics == {"accuracy": 0.9}
    assert info.history == {"loss": [1.0, 0.5]} and info.description == "trained elsewhere"
    assert info.tags == {"team": "a", "env": "test"}
    assert info.lineage == {} and info.source["lineage"]["base"] == {"name": "b", "version": 1}
    assert store.info("copy").class_names == ["x", "y", "z"]
