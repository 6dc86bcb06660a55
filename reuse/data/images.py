"""Image folders as data: ``images:DIR?size=H,W[&color=rgb|grayscale]``.

``DIR`` holds one sub-folder per class, each with that class's images (searched recursively, like
``keras.utils.image_dataset_from_directory``)::

    DIR/cat/001.png
    DIR/cat/more/002.jpg
    DIR/dog/003.png

- Classes are the sub-folders in sorted (code-point) order: label ``i`` is the ``i``-th sub-folder and
  ``class_names[i]`` its name, recorded with every model trained on the set. Sub-folders whose name starts
  with ``.`` are skipped, and so are files directly in ``DIR``.
- Images are the files ending in ``.png``, ``.jpg``, ``.jpeg``, ``.bmp`` or ``.gif`` (any case; the
  first frame of a GIF); other files are skipped. Samples come class by class, in sorted path order.
- ``size=H,W`` (height, width; ``size=N`` means ``N,N``) is required: every image is resized to it
  with bilinear interpolation, the default of ``image_dataset_from_directory``. ``color=rgb`` (default)
  gives 3 channels, ``color=grayscale`` 1.
- ``x`` is float32 ``(N, H, W, C)`` with values 0..255, as Keras' ``load_img`` + ``img_to_array`` give
  them (put a ``Rescaling`` layer in the model, or train a base that expects 0..255).

Reading uses ``keras.utils.load_img`` and ``keras.utils.img_to_array`` (Pillow), so it works on every
Keras backend. Limits: each side at most :data:`MAX_SIDE` pixels and the whole array at most
:data:`MAX_BYTES` bytes, checked before any image is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from reuse.data.dataset import Dataset
from reuse.errors import InvalidInput, ResourceExhausted

PREFIX = "images:"
KEYS = ("size", "color")
COLORS = {"rgb": 3, "grayscale": 1}
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_SIDE = 4096
MAX_BYTES = 4 * 1024**3
EXAMPLE = "images:DIR?size=96,96"


def parse_spec(spec: str) -> tuple[Path, tuple[int, int], str]:
    """The folder, ``(height, width)`` and color mode of an ``images:`` spec.

    Raises:
        InvalidInput: no folder, no or a malformed ``size``, an unknown option or color, or an absurd size.
    """
    body = spec[len(PREFIX):]
    folder, sep, query = body.rpartition("?")
    if not sep:
        folder, query = body, ""
    if not folder:
        raise InvalidInput(f"no folder in {spec!r}: expected e.g. {EXAMPLE}")
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in KEYS:
            raise InvalidInput(f"unknown option {key!r} in {spec!r}: expected one of {', '.join(KEYS)}")
        if key in params:
            raise InvalidInput(f"option {key!r} given twice in {spec!r}")
        params[key] = value
    if "size" not in params:
        raise InvalidInput(f"no size in {spec!r}: images are resized to one size, give it as size=HEIGHT,WIDTH, "
                           f"e.g. {EXAMPLE}")
    size = _size(params["size"], spec)
    color = params.get("color", "rgb")
    if color not in COLORS:
        raise InvalidInput(f"invalid color={color!r} in {spec!r}: expected one of {', '.join(COLORS)}")
    return Path(folder), size, color


def _size(text: str, spec: str) -> tuple[int, int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise InvalidInput(f"invalid size={text!r} in {spec!r}: expected HEIGHT,WIDTH in pixels, e.g. size=96,96")
    h, w = int(parts[0]), int(parts[1])
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise InvalidInput(f"invalid size={text!r} in {spec!r}: each side must be 1..{MAX_SIDE} pixels")
    return h, w


def _is_image(name: str) -> bool:
    return name.lower().endswith(EXTENSIONS)


def list_images(folder: Path, spec: str) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The class names and every ``(image path, label)`` under ``folder``, in the documented order.

    Raises:
        InvalidInput: the folder is missing, has no class sub-folders, or a class has no images.
    """
    if not folder.exists():
        raise InvalidInput(f"{folder}: no such folder (in {spec!r})")
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: not a folder (in {spec!r}); expected a folder with one sub-folder of "
                           "images per class")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise InvalidInput(f"{folder}: no class sub-folders; expected one sub-folder of images per class, "
                           f"e.g. {folder / 'cat'}/1.png and {folder / 'dog'}/2.png")
    items: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        found = []
        for root, dirs, files in os.walk(folder / name):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(Path(root) / f for f in files if _is_image(f))
        if not found:
            raise InvalidInput(f"{folder / name}: class folder with no images (expected files ending in "
                               f"{', '.join(EXTENSIONS)})")
        items.extend((p, label) for p in sorted(found))
    return tuple(classes), items


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def load(spec: str, *, max_bytes: int = MAX_BYTES) -> Dataset:
    """Read the image folder that ``spec`` names into memory (see the module docstring).

    Raises:
        InvalidInput: a bad spec or folder layout, or an unreadable image (named).
        ResourceExhausted: the array would be larger than ``max_bytes``.
    """
    folder, (h, w), color = parse_spec(spec)
    class_names, items = list_images(folder, spec)
    channels = COLORS[color]
    need = len(items) * h * w * channels * 4
    if need > max_bytes:
        raise ResourceExhausted(
            f"{spec}: {len(items)} images of {h}x{w}x{channels} need {_bytes(need)} as float32, more than the "
            f"{_bytes(max_bytes)} allowed; use a smaller size or fewer images")
    import keras
    from PIL import Image

    x = np.empty((len(items), h, w, channels), dtype=np.float32)
    for i, (path, _) in enumerate(items):
        try:
            img = keras.utils.load_img(path, color_mode=color, target_size=(h, w), interpolation="bilinear")
            x[i] = keras.utils.img_to_array(img, data_format="channels_last", dtype="float32")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            text = str(exc).strip().splitlines()
            raise InvalidInput(f"{path}: cannot read this image: {text[0] if text else type(exc).__name__}") from exc
    y = np.fromiter((label for _, label in items), dtype=np.int64, count=len(items))
    return Dataset(x=x, y=y, source=spec, class_names=class_names)
