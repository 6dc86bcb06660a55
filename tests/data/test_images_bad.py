"""Bad image folders: every file that cannot be used is found before any work, named, or left out and
counted with ``bad=skip``; mixed colour modes are converted; a folder of 100,000 tiny files is listed in
bounded memory; the CLI refuses in one line and registers nothing."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from reuse.cli import cli
from reuse.data import load_data
from reuse.errors import InvalidInput
from reuse.memory import process_rss
from reuse.store import ModelStore


def _png_bytes(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(pixels)
    (img.convert(mode) if mode else img).save(buf, "PNG")
    return buf.getvalue()


def _jpeg_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _bomb_png(side: int = 60_000) -> bytes:
    """A valid PNG header claiming side x side pixels (a few dozen bytes: a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0"))
        + _chunk(b"IEND", b"")
    )


@pytest.fixture
def good(rng):
    return rng.integers(0, 256, size=(6, 6, 3)).astype(np.uint8)


def _folder(root: Path, good: np.ndarray, extra: dict[str, bytes]) -> Path:
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        (root / cls / "ok.png").write_bytes(_png_bytes(good))
    for rel, data in extra.items():
        (root / rel).write_bytes(data)
    return root


BAD_FILES = [
    ("not-an-image.png", lambda g: b"just text, with an image's name", "not an image Pillow can read"),
    ("cut.png", lambda g: _png_bytes(g)[:-20], "truncated: no PNG end marker"),
    ("cut.jpg", lambda g: _jpeg_bytes(g)[:-40], "truncated: no JPEG end marker"),
    ("bomb.png", lambda g: _bomb_png(), "too large"),
]


@pytest.mark.parametrize(("name", "make", "reason"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_file_is_named_before_any_image_is_decoded(tmp_path, good, name, make, reason):
    root = _folder(tmp_path / "f", good, {f"dog/{name}": make(good)})
    with pytest.raises(InvalidInput) as exc:
        load_data(f"images:{root}?size=4,4")
    text = str(exc.value)
    assert text.startswith(f"{root / 'dog' / name}: cannot read this image: {reason}")
    assert text.endswith("fix or remove such files, or add &bad=skip to the spec to leave them out")


def test_skip_leaves_bad_files_out_and_counts_them(tmp_path, good):
    extra = {f"dog/{n}": make(good) for n, make, _ in BAD_FILES}
    root = _folder(tmp_path / "f", good, extra)
    with pytest.raises(InvalidInput, match=r"cannot read this image: .* \(and 3 more: "):
        load_data(f"images:{root}?size=4,4")
    ds = load_data(f"images:{root}?size=4,4&bad=skip")
    assert len(ds) == 2 and ds.y.tolist() == [0, 1] and len(ds.skipped) == 4
    assert sorted(Path(s.split(": ")[0]).name for s in ds.skipped) == sorted(n for n, _, _ in BAD_FILES)
    # A class left with nothing usable is still an error.
    (root / "dog" / "ok.png").write_bytes(b"broken")
    with pytest.raises(InvalidInput,
                       match=r"dog: class folder with no readable images \(5 files were left out"):
        load_data(f"images:{root}?size=4,4&bad=skip")


def test_a_symbolic_link_out_of_the_folder_is_refused(tmp_path, good):
    outside = tmp_path / "secret.png"
    outside.write_bytes(_png_bytes(good))
    root = _folder(tmp_path / "f", good, {})
    os.symlink(outside, root / "cat" / "link.png")
    with pytest.raises(InvalidInput,
                       match=r"link\.png: cannot read this image: a symbolic link leading out of the "
                                           r"folder \(to .*secret\.png\)"):
        load_data(f"images:{root}?size=4,4")
    inside = root / "cat" / "inside.png"
    os.unlink(root / "cat" / "link.png")
    os.symlink(root / "dog" / "ok.png", inside)  # a link that stays inside is fine
    assert len(load_data(f"images:{root}?size=4,4")) == 3


def test_mixed_modes_and_tiny_images_are_converted(tmp_path, good):
    rgba = np.concatenate([good, np.full((6, 6, 1), 7, np.uint8)], axis=-1)
    extra = {"cat/gray.png": _png_bytes(good, "L"), "cat/rgba.png": _png_bytes(rgba),
             "dog/palette.png": _png_bytes(good, "P"), "dog/one.png": _png_bytes(good[:1, :1])}
    root = _folder(tmp_path / "f", good, extra)
    ds = load_data(f"images:{root}?size=6,6")
    x = np.asarray(ds.x)
    assert x.shape == (6, 6, 6, 3) and x.dtype == np.float32
    names = [Path(p).name for p in ds.x.paths]
    np.testing.assert_array_equal(x[names.index("rgba.png")], good.astype(np.float32))  # alpha dropped
    gray = x[names.index("gray.png")]
    assert np.array_equal(gray[..., 0], gray[..., 1])
    assert np.all(x[names.index("one.png")] == good[0, 0].astype(np.float32))  # 1x1 resized to 6x6


@pytest.mark.slow
def test_a_folder_of_100000_tiny_files_is_listed_in_bounded_memory(tmp_path):
    root = tmp_path / "many"
    for cls in ("a", "b"):  # hard links to one small PNG per class: quick to make, each a file of its own
        (root / cls).mkdir(parents=True)
        source = tmp_path / f"{cls}.png"
        source.write_bytes(_png_bytes(np.zeros((2, 2, 3), np.uint8)))
        for i in range(50_000):
            os.link(source, root / cls / f"{i:05d}.png")
    before = process_rss()
    ds = load_data(f"images:{root}?size=2,2")
    grew = process_rss() - before
    assert len(ds) == 100_000 and np.bincount(ds.y).tolist() == [50_000, 50_000]
    assert grew < 64 * 2**20, f"listing 100,000 files took {grew / 2**20:.0f} MiB"
    assert ds.x.read(np.array([0, 99_999])).shape == (2, 2, 2, 3)


def test_cli_refuses_a_bad_folder_in_one_line_and_registers_nothing(tmp_path, good):
    root = _folder(tmp_path / "f", good, {"dog/cut.png": _png_bytes(good)[:-20]})
    store = tmp_path / "store"
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, name="conv")(inp))
    ModelStore(store).register(keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x)), "m")
    result = CliRunner().invoke(cli,
                                ["train", "m", "--data", f"images:{root}?size=4,4", "--store", str(store)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(f"Error: {root / 'dog' / 'cut.png'}: cannot read "
                                                     "this image: truncated: no PNG end marker")
    assert [i.version for i in ModelStore(store).versions("m")] == [1]
    ok = CliRunner().invoke(cli, ["train", "m", "--data", f"images:{root}?size=4,4&bad=skip", "--epochs", "1",
                                  "--store", str(store)])
    assert ok.exit_code == 0, ok.output
    assert "skipped 1 image file that cannot be read (bad=skip)" in ok.output
