"""Augmentation for training only: it changes what each epoch trains on, never the registered graph (no
augmentation layer in the version or its ONNX export), both ways with a frozen part (every batch through
it, or K views computed once) are reproducible, and bad specs or non-image inputs are refused."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from reuse.cli import cli
from reuse.data import Dataset
from reuse.errors import InvalidInput
from reuse.export.onnx_file import missing_packages
from reuse.memory import process_budget
from reuse.store import ModelStore
from reuse.train import TrainConfig, train
from reuse.train.augment import VIEW_ROWS, AugmentedForward, Augmenter, AugmentSpec
from reuse.train.features import feature_pass
from reuse.train.footprint import activation_bytes, input_bytes
from reuse.train.infer import rows_for_pass


def _images(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 12, 12, 3)).astype(np.float32)
    return x, (x[:, :, :6].mean(axis=(1, 2, 3)) > x[:, :, 6:].mean(axis=(1, 2, 3))).astype(np.int32)


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3), name="image")
    h = keras.layers.Rescaling(1 / 255, name="scale")(inp)
    h = keras.layers.Conv2D(4, 3, name="conv", trainable=False)(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="out")(h))


PARSE = [("flip", (("flip", "horizontal"),)), ("flip:both,rotate:0.1", (("flip", "both"), ("rotate", "0.1"))),
         ("zoom:0.2,translate:0.1,contrast:0.3,brightness:0.2",
          (("zoom", "0.2"), ("translate", "0.1"), ("contrast", "0.3"), ("brightness", "0.2")))]
REFUSED = [("spin:0.1", "unknown augmentation 'spin'"), ("rotate", "invalid rotate factor ''"),
           ("rotate:2", "invalid rotate factor '2'"), ("flip:sideways", "invalid flip mode 'sideways'"),
           ("flip,flip", "augmentation 'flip' given twice"),
           ("flip,,zoom:0.1", "expected steps separated by commas")]


@pytest.mark.parametrize(("text", "steps"), PARSE)
def test_specs(text, steps):
    spec = AugmentSpec.parse(text)
    assert spec.steps == steps and AugmentSpec.parse(spec.to_string()) == spec


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_bad_specs_are_refused(text, message):
    with pytest.raises(InvalidInput, match=message):
        TrainConfig(augment=text)
    with pytest.raises(InvalidInput, match="--augment-views needs --augment"):
        TrainConfig(augment_views=2)


def test_each_call_draws_new_transforms_and_reseeding_repeats_them():
    x, _ = _images(8)
    aug = Augmenter(AugmentSpec.parse("flip,rotate:0.2"), 3, (12, 12, 3))
    a, b = np.asarray(aug(x)), np.asarray(aug(x))
    assert not np.allclose(a, b) and not np.allclose(a, x)  # two epochs see different batches
    aug.reseed(0, 5)
    c = np.asarray(aug(x))
    aug.reseed(0, 5)
    np.testing.assert_array_equal(c, np.asarray(aug(x)))
    # Only while training: at inference the network sees the data as it is.
    fwd = AugmentedForward(_model(), aug)
    np.testing.assert_array_equal(np.asarray(fwd(x, False)), np.asarray(_model()(x, training=False)))


@pytest.mark.parametrize("views", [0, 2], ids=["every-batch", "views"])
def test_augmented_training_is_reproducible_and_differs_from_plain(views):
    x, y = _images()
    ds = Dataset(x, y, "toy")
    cfg = TrainConfig(epochs=3, batch_size=16, augment="flip,rotate:0.1", augment_views=views)
    runs = []
    for _ in range(2):
        m = _model()
        r = train(m, ds, cfg)
        runs.append(m.get_weights())
    assert r.cached_layers == (("scale", "conv", "gap") if views else ())
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    plain = _model()
    train(plain, ds, TrainConfig(epochs=3, batch_size=16))
    assert not np.allclose(plain.get_weights()[-2], runs[0][-2])
    assert [layer.name for layer in plain.layers] == [layer.name for layer in _model().layers]


def test_a_view_does_not_depend_on_how_many_rows_the_pass_runs_at_once():
    """A view is drawn per VIEW_ROWS rows, from the view number and the block, so a longer data set's view
    starts with the shorter one's rows: the pass's batch size (which the memory budget sets, and which
    depends on what the process holds) changes nothing. Same seed, same views, same weights."""
    x, _ = _images(3 * VIEW_ROWS)
    m = _model()
    prefix = keras.Model(m.inputs, m.get_layer("gap").output)
    aug = Augmenter(AugmentSpec.parse("flip,rotate:0.2"), 3, (12, 12, 3))
    long = feature_pass(prefix, x, None, view=(aug, 1))
    short = feature_pass(prefix, x[:2 * VIEW_ROWS], None, view=(aug, 1))
    np.testing.assert_allclose(long[:2 * VIEW_ROWS], short, rtol=1e-6, atol=1e-6)
    # A budget that lets a pass hold about 60 rows (fewer than the data, more than VIEW_ROWS): the same view.
    budget, per_row = process_budget(), activation_bytes(prefix) + 2 * input_bytes(prefix)
    with budget.reserve(budget.available() - 2 * 60 * per_row):
        assert VIEW_ROWS < rows_for_pass(prefix) < len(x)
        np.testing.assert_allclose(feature_pass(prefix, x, None, view=(aug, 1)), long, rtol=1e-6, atol=1e-6)
    assert not np.allclose(long, feature_pass(prefix, x, None, view=(aug, 2)))
    assert not np.allclose(long, feature_pass(prefix, x, None))


def test_augmenting_a_non_image_input_is_refused():
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")], name="flat")
    data = Dataset(np.zeros((4, 8), np.float32), np.array([0, 1, 0, 1]), "flat data")
    with pytest.raises(InvalidInput, match=r"--augment needs a model with one image input \(height, width, "
                                           r"channels\); model 'flat' takes \(8,\)"):
        train(mlp, data, TrainConfig(epochs=1, augment="flip"))


def test_cli_records_the_augmentation_and_the_version_exports_without_it(tmp_path):
    x, y = _images()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    store = tmp_path / "store"
    ModelStore(store).register(_model(), "aug")
    out = CliRunner().invoke(cli, ["train", "aug", "--data", str(tmp_path / "d.npz"), "--epochs", "2",
                                   "--augment", "flip,rotate:0.1", "--augment-views", "2", "--json",
                                   "--store", str(store)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    settings = json.loads(out.output)["settings"]
    assert settings["augment"] == "flip,rotate:0.1" and settings["augment_views"] == 2
    model = ModelStore(store).load("aug:2")
    assert not any(layer.name.startswith("augment") for layer in model.layers)
    exported = CliRunner().invoke(cli, ["export", "aug:2", str(tmp_path / "aug.onnx"), "--store", str(store)])
    missing = missing_packages()  # on JAX without jax2onnx: one line naming it, not a traceback
    if missing:
        assert exported.exit_code == 1 and exported.output.splitlines()[-1] == (
            f"Error: ONNX export needs {', '.join(missing)} (not installed): "
            "pip install onnx onnxruntime jax2onnx")
    else:
        assert exported.exit_code == 0, exported.output
    bad = CliRunner().invoke(cli, ["train", "aug", "--data", str(tmp_path / "d.npz"), "--augment", "spin",
                                   "--store", str(store)])
    assert bad.exit_code == 1 and bad.output.splitlines()[-1].startswith("Error: unknown augmentation 'spin'")
