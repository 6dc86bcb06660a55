"""Image folders as data: ``images:DIR?size=H,W[&color=rgb|grayscale][&bad=error|skip]``.

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
  with bilinear interpolation, as ``keras.utils.load_img`` does. ``color=rgb`` (default) gives 3
  channels, ``color=grayscale`` 1; grayscale, palette and RGBA images are converted (an alpha channel is
  dropped), so a folder may mix them.
- Pixels are float32 with values 0..255, as ``load_img`` + ``img_to_array`` give them (a model built with
  ``--preprocess`` scales them itself).

**Nothing is decoded up front.** Loading a folder lists its files and reads each one's header and end
(:func:`scan`): a file that is not an image, is truncated (no end marker), is larger than Pillow's
decompression-bomb limit, or is a symbolic link leading out of ``DIR`` is refused there, before any work,
naming the file; ``bad=skip`` leaves such files out instead and counts them (:attr:`Dataset.skipped`).
The features are then an :class:`ImageRows` source: each batch is decoded when a pass reads it, on
several threads (Pillow releases the interpreter lock while it decodes and resizes). A file that fails
to decode all the same (damage the header and end checks cannot see) stops the pass with an error naming
it; nothing is registered.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from reuse.data.dataset import Dataset
from reuse.data.rows import RowSource
from reuse.errors import InvalidInput
from reuse.text import first_line

PREFIX = "images:"
KEYS = ("size", "color", "bad")
COLORS = {"rgb": 3, "grayscale": 1}
BAD = ("error", "skip")
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_SIDE = 4096
EXAMPLE = "images:DIR?size=96,96"
LISTED = 5  # problem files named in an error
TAIL = 1024  # bytes read from each file's end to find its end marker
SCAN_CHUNK = 512  # files checked per task of the scan's thread pool


def parse_spec(spec: str) -> tuple[Path, tuple[int, int], str]:
    """The folder, ``(height, width)`` and color mode of an ``images:`` spec (see :func:`parse_options`)."""
    folder, size, color, _ = parse_options(spec)
    return folder, size, color


def parse_options(spec: str) -> tuple[Path, tuple[int, int], str, str]:
    """The folder, ``(height, width)``, color mode and bad-file rule of an ``images:`` spec.

    Raises:
        InvalidInput: no folder, no or a malformed ``size``, an unknown option or value, or an absurd size.
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
        raise InvalidInput(f"no size in {spec!r}: images are resized to one size, give it as "
                           f"size=HEIGHT,WIDTH, e.g. {EXAMPLE}")
    size = _size(params["size"], spec)
    color = params.get("color", "rgb")
    if color not in COLORS:
        raise InvalidInput(f"invalid color={color!r} in {spec!r}: expected one of {', '.join(COLORS)}")
    bad = params.get("bad", "error")
    if bad not in BAD:
        raise InvalidInput(f"invalid bad={bad!r} in {spec!r}: expected one of {', '.join(BAD)}")
    return Path(folder), size, color, bad


def _size(text: str, spec: str) -> tuple[int, int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise InvalidInput(f"invalid size={text!r} in {spec!r}: expected HEIGHT,WIDTH in pixels, e.g. "
                           "size=96,96")
    h, w = int(parts[0]), int(parts[1])
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise InvalidInput(f"invalid size={text!r} in {spec!r}: each side must be 1..{MAX_SIDE} pixels")
    return h, w


def _is_image(name: str) -> bool:
    return name.lower().endswith(EXTENSIONS)


def list_images(folder: Path, spec: str) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The class names and every ``(image path, label)`` under ``folder``, in the documented order.

    Raises:
        InvalidInput: as :func:`image_files`.
    """
    classes, paths, labels = image_files(folder, spec)
    return classes, [(Path(p), int(label)) for p, label in zip(paths, labels, strict=True)]


def image_files(folder: Path, spec: str) -> tuple[tuple[str, ...], list[str], np.ndarray]:
    """The class names, every image file's path (as text: a folder may hold 100,000 of them) and its
    label, in the documented order. Symbolic links to folders are not followed (as ``os.walk`` does by
    default).

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
    paths: list[str] = []
    counts: list[int] = []
    for name in classes:
        found: list[str] = []
        for root, dirs, files in os.walk(os.path.join(folder, name)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(os.path.join(root, f) for f in files if _is_image(f))
        if not found:
            raise InvalidInput(f"{folder / name}: class folder with no images (expected files ending in "
                               f"{', '.join(EXTENSIONS)})")
        found.sort(key=lambda p: p.split(os.sep))
        paths.extend(found)
        counts.append(len(found))
    return tuple(classes), paths, np.repeat(np.arange(len(classes), dtype=np.int64), counts)


# -- the up-front check of every file ----------------------------------------------------------------
def _end_marker_missing(fmt: str, path: str, size: int) -> bool:
    """Whether a PNG or JPEG file lacks its end marker near its end (the sign of a truncated file)."""
    marker = {"PNG": b"IEND", "JPEG": b"\xff\xd9"}.get(fmt)
    if marker is None:
        return False
    with open(path, "rb") as fh:
        fh.seek(max(0, size - TAIL))
        return marker not in fh.read(TAIL)


def check_file(path: str, root_real: str) -> str | None:
    """Why ``path`` cannot be used as an image (``None``: it looks fine), from its header and end only."""
    from PIL import Image, UnidentifiedImageError

    if os.path.islink(path):
        target = os.path.realpath(path)
        if os.path.commonpath([root_real, target]) != root_real:
            return f"a symbolic link leading out of the folder (to {target})"
    try:
        size = os.stat(path).st_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a size over the limit is judged below, not warned about
            with Image.open(path) as img:
                fmt, (w, h) = img.format, img.size
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except Image.DecompressionBombError as exc:
        return f"too large ({exc})"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"{type(exc).__name__}: {str(exc).strip() or 'unreadable'}"
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > limit:
        return (f"too large: {w}x{h} pixels is over Pillow's decompression-bomb limit of {limit} pixels")
    if w < 1 or h < 1:
        return f"has no pixels ({w}x{h})"
    try:
        if _end_marker_missing(fmt, path, size):
            return f"truncated: no {fmt} end marker"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass(frozen=True)
class Scan:
    """A checked folder: class names, usable files and labels, and the files left out with why."""

    class_names: tuple[str, ...]
    paths: tuple[str, ...]
    labels: np.ndarray
    problems: tuple[tuple[str, str], ...]
    fingerprint: str


def scan(folder: Path, spec: str, *, bad_rule: str = "error", threads: int | None = None) -> Scan:
    """List ``folder`` and check every image file's header and end (see the module docstring).

    Raises:
        InvalidInput: a bad layout; with ``bad="error"``, any file that cannot be used (the first few
            named, with the count); with ``bad="skip"``, a class left with no usable image.
    """
    class_names, paths, labels = image_files(folder, spec)
    root_real = os.path.realpath(folder)

    def check(lo: int) -> list[str | None]:
        return [check_file(p, root_real) for p in paths[lo:lo + SCAN_CHUNK]]

    with ThreadPoolExecutor(max_workers=threads or _threads()) as pool:
        verdicts = [v for part in pool.map(check, range(0, len(paths), SCAN_CHUNK)) for v in part]
    bad = np.array([v is not None for v in verdicts], dtype=bool)
    problems = tuple((paths[i], verdicts[i]) for i in np.flatnonzero(bad))
    if problems and bad_rule == "error":
        first, why = problems[0]
        more = ""
        if len(problems) > 1:
            named = ", ".join(Path(p).name for p, _ in problems[1:LISTED])
            more = f" (and {len(problems) - 1} more: {named}{', ...' if len(problems) > LISTED else ''})"
        raise InvalidInput(f"{first}: cannot read this image: {why}{more}; fix or remove such files, or add "
                           "&bad=skip to the spec to leave them out")
    kept = [p for p, b in zip(paths, bad, strict=True) if not b]
    labels = labels[~bad]
    for i, name in enumerate(class_names):
        if not np.any(labels == i):
            raise InvalidInput(f"{folder / name}: class folder with no readable images "
                               f"({len(problems)} files were left out by bad=skip)")
    h = hashlib.blake2b(digest_size=16)
    for p, label in zip(kept, labels.tolist(), strict=True):
        st = os.stat(p)
        h.update(f"{p}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return Scan(class_names, tuple(kept), labels, problems, h.hexdigest())


def _threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(2, min(8, n))


# -- decoding, a batch at a time -----------------------------------------------------------------------
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="reuse-decode")
    return _POOL


def decode(path: str, size: tuple[int, int], color: str) -> np.ndarray:
    """One image file as float32 ``(H, W, C)`` pixels 0..255, resized bilinearly to ``size``.

    Raises:
        InvalidInput: the file cannot be decoded (named).
    """
    import keras
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # palette transparency notes on convert
            img = keras.utils.load_img(path, color_mode=color, target_size=size, interpolation="bilinear")
            return keras.utils.img_to_array(img, data_format="channels_last", dtype="float32")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"{path}: cannot read this image: {first_line(exc)}") from exc


class ImageRows(RowSource):
    """The images of a scanned folder as a row source: ``read(index)`` decodes those files."""

    def __init__(self, paths: tuple[str, ...], size: tuple[int, int], color: str, source: str,
                 digest: str = "") -> None:
        self.paths = paths
        self.size = size
        self.color = color
        self.source = source
        self.digest = digest  # of the scanned files' paths, labels, sizes and times
        self.shape = (len(paths), size[0], size[1], COLORS[color])
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        return f"{self.digest}\0{self.size}\0{self.color}"

    def read(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        out = np.empty((len(index), *self.shape[1:]), dtype=np.float32)

        def one(i: int) -> None:
            out[i] = decode(self.paths[int(index[i])], self.size, self.color)

        for f in [_pool().submit(one, i) for i in range(len(index))]:
            f.result()
        return out


def load(spec: str) -> Dataset:
    """The image folder that ``spec`` names as a data set whose features are decoded per batch.

    Raises:
        InvalidInput: a bad spec or folder layout, or (``bad=error``) a file that cannot be used.
    """
    folder, size, color, bad = parse_options(spec)
    found = scan(folder, spec, bad_rule=bad)
    rows: Any = ImageRows(found.paths, size, color, spec, found.fingerprint)
    skipped = tuple(f"{p}: {why}" for p, why in found.problems)
    return Dataset(x=rows, y=found.labels, source=spec, class_names=found.class_names, skipped=skipped)
