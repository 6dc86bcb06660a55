"""Image folders as data (``images:DIR?size=H,W``): the spec, the folder layout, the pixels, the refusals,
and training a tiny conv network on them through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from reuse.cli import cli
from reuse.data import load_data
from reuse.data.images import MAX_SIDE, list_images, load, parse_spec
from reuse.errors import InvalidInput
from reuse.store import ModelStore

PARSE_CASES = [
    ("images:photos?size=96,96", (Path("photos"), (96, 96), "rgb")),
    ("images:photos?size=32", (Path("photos"), (32, 32), "rgb")),
    ("images:/data/a b?size=8,12&color=grayscale", (Path("/data/a b"), (8, 12), "grayscale")),
    ("images:odd?name?size=4,4&color=rgb", (Path("odd?name"), (4, 4), "rgb")),  # the last '?' starts options
]

PARSE_ERRORS = [
    ("images:photos", "no size in 'images:photos': images are resized to one size, give it as "
                      "size=HEIGHT,WIDTH, e.g. images:DIR?size=96,96"),
    ("images:?size=8,8", "no folder in 'images:?size=8,8'"),
    ("images:p?size=8,8,3", "invalid size='8,8,3' in 'images:p?size=8,8,3': expected HEIGHT,WIDTH"),
    ("images:p?size=a,8", "invalid size='a,8'"),
    ("images:p?size=0,8", "each side must be 1..4096 pixels"),
    (f"images:p?size={MAX_SIDE + 1},8", "each side must be 1..4096 pixels"),
    ("images:p?size=8,8&color=rgba",
     "invalid color='rgba' in 'images:p?size=8,8&color=rgba': expected one of "
                                     "rgb, grayscale"),
    ("images:p?size=8,8&shuffle=1", "unknown option 'shuffle' in 'images:p?size=8,8&shuffle=1': expected one "
                                    "of size, color"),
    ("images:p?size=8,8&size=4,4", "option 'size' given twice"),
]


@pytest.mark.parametrize(("spec", "expected"), PARSE_CASES)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(("spec", "message"), PARSE_ERRORS)
def test_parse_spec_refusals(spec, message):
    with pytest.raises(InvalidInput) as exc:
        parse_spec(spec)
    assert message in str(exc.value)


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.utils.save_img(path, pixels, scale=False)


def _pixels(rng, shape=(4, 5, 3)) -> np.ndarray:
    return rng.integers(0, 256, size=shape).astype("float32")


@pytest.fixture
def folder(tmp_path, rng):
    """dog/ (2 images, one nested) and cat/ (1 image), plus files and folders that are skipped."""
    root = tmp_path / "pets"
    images = {"dog/b.png": _pixels(rng), "dog/deeper/a.png": _pixels(rng), "cat/z.PNG": _pixels(rng)}
    for rel, px in images.items():
        _save(root / rel, px)
    (root / "cat" / "notes.txt").write_text("not an image")
    _save(root / ".thumbnails" / "t.png", _pixels(rng))
    _save(root / "cat" / ".hidden" / "h.png", _pixels(rng))
    _save(root / "stray.png", _pixels(rng))
    return root, images


def test_layout_order_labels_and_exact_pixels(folder):
    root, images = folder
    names, items = list_images(root, "spec")
    assert names == ("cat", "dog")
    assert [(p.relative_to(root).as_posix(), label) for p, label in items] == [
        ("cat/z.PNG", 0), ("dog/b.png", 1), ("dog/deeper/a.png", 1)]
    ds = load(f"images:{root}?size=4,5")
    assert ds.x.dtype == np.float32 and ds.x.shape == (3, 4, 5, 3)
    assert (
        ds.y.tolist() == [0, 1, 1]
        and ds.class_names == ("cat", "dog")
        and ds.source == f"images:{root}?size=4,5"
    )
    for i, rel in enumerate(["cat/z.PNG", "dog/b.png", "dog/deeper/a.png"]):  # no resize: pixels as saved
        np.testing.assert_array_equal(ds.x[i], images[rel])


def test_resize_grayscale_and_determinism(folder):
    root, _ = folder
    a = load_data(f"images:{root}?size=2,3&color=grayscale")
    b = load_data(f"images:{root}?size=2,3&color=grayscale")
    xa = np.asarray(a.x)  # decoded now: loading only lists and checks the files
    assert a.x.shape == xa.shape == (3, 2, 3, 1) and xa.min() >= 0.0 and xa.max() <= 255.0
    np.testing.assert_array_equal(xa, np.asarray(b.x))
    assert a.class_names == ("cat", "dog")
    rgb = load_data(f"images:{root}?size=6")
    assert rgb.x.shape == (3, 6, 6, 3)


def test_a_models_class_order_maps_the_folders(folder):
    root, _ = folder
    ds = load_data(f"images:{root}?size=4,5", class_names=["dog", "cat"])
    assert ds.y.tolist() == [1, 0, 0] and ds.class_names == ("dog", "cat")


def test_folder_refusals(tmp_path, rng):
    with pytest.raises(InvalidInput, match=r"missing: no such folder \(in 'images:"):
        load(f"images:{tmp_path / 'missing'}?size=4,4")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(InvalidInput, match=r"file.png: not a folder"):
        load(f"images:{tmp_path / 'file.png'}?size=4,4")
    flat = tmp_path / "flat"
    _save(flat / "a.png", _pixels(rng))
    with pytest.raises(InvalidInput,
                       match=r"flat: no class sub-folders; expected one sub-folder of images per class"):
        load(f"images:{flat}?size=4,4")
    empty = tmp_path / "empty"
    _save(empty / "cat" / "a.png", _pixels(rng))
    (empty / "dog").mkdir()
    (empty / "dog" / "readme.md").write_text("no images here")
    with pytest.raises(InvalidInput,
                       match=r"empty/dog: class folder with no images \(expected files ending in "
                                           r"\.png, \.jpg"):
        load(f"images:{empty}?size=4,4")


def test_unreadable_image_is_named(tmp_path, rng):
    root = tmp_path / "bad"
    _save(root / "cat" / "ok.png", _pixels(rng))
    (root / "dog").mkdir()
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InvalidInput) as exc:
        load(f"images:{root}?size=4,4")
    assert str(exc.value).startswith(f"{root / 'dog' / 'broken.jpg'}: cannot read this image: ")


# -- training through the CLI -----------------------------------------------------------------------
def _class_folder(root: Path, rng, per_class: int = 6) -> None:
    """Two classes a tiny conv net can tell apart: dark and bright 8x8 images."""
    for i in range(per_class):
        _save(root / "dark" / f"{i}.png", rng.integers(0, 80, size=(8, 8, 3)).astype("float32"))
        _save(root / "bright" / f"{i}.png", rng.integers(170, 256, size=(8, 8, 3)).astype("float32"))


def _run(store: Path, *args: str):
    result = CliRunner().invoke(cli, [*args, "--store", str(store)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_train_and_build_on_an_image_folder_through_the_cli(tmp_path, rng):
    root = tmp_path / "imgs"
    _class_folder(root, rng)
    store = tmp_path / "store"
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inp)
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    ModelStore(store).register(keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="out")(x)),
                               "tinycnn")
    data = f"images:{root}?size=8,8"

    out = json.loads(_run(store, "train", "tinycnn", "--data", data, "--epochs", "2", "--batch-size", "4",
                          "--json").output)
    assert out["model"] == "tinycnn:2" and out["epochs_run"] == 2
    info = ModelStore(store).info("tinycnn:2")
    assert info.class_names == ["bright", "dark"] and info.settings["data"] == data

    # A new network from the conv layer with a pooling head, trained on the same folder.
    _run(store, "build", "fromconv", "--from", "tinycnn:1", "--reuse", "scale|conv1", "--head",
         "gap,dense:4:relu", "--classes", "2", "--seed", "0")
    out = json.loads(_run(store, "train", "fromconv", "--data", data, "--epochs", "1", "--json").output)
    assert out["model"] == "fromconv:2"
    assert ModelStore(store).info("fromconv:2").class_names == ["bright", "dark"]


def test_cli_reports_a_bad_image_spec(tmp_path, tiny_model):
    store = tmp_path / "store"
    ModelStore(store).register(tiny_model, "tiny")
    result = CliRunner().invoke(cli, ["train", "tiny", "--data", f"images:{tmp_path}", "--store", str(store)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (f"Error: no size in 'images:{tmp_path}': images are "
                                              "resized to one size, give it as size=HEIGHT,WIDTH, e.g. "
                                              "images:DIR?size=96,96")
