"""Images as model inputs: encoded files (KServe ``BYTES``) or pixel arrays (``UINT8``) decoded and resized
to an image model's input, the same way the training data path reads image folders.

An *image model* is one whose input is ``(batch, height, width, channels)`` of floats with a fixed height
and width and 1, 3 or 4 channels (grayscale, RGB, RGBA): :func:`image_target` says. :func:`decode_images`
turns one tensor of such images into the float batch the model takes, pixels 0..255 as
``keras.utils.load_img`` + ``img_to_array`` give them (``images:DIR`` in :mod:`reuse.data.images`): the
color mode converted (an alpha channel dropped for RGB, a color image made grayscale for one channel),
then resized bilinearly to the model's height and width when it differs (a 1x1 image is scaled up like any
other). The model's own preprocessing stage, if it has one, then does the rest.

Limits, checked before anything is decoded: each encoded image at most ``max_image_bytes`` and all of a
request's at most ``max_request_bytes``; an image's pixel count at most Pillow's decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``; Pillow itself refuses twice that when it reads the header); the decoded
batch at most ``max_batch_bytes``. Only PNG, JPEG, BMP and GIF are read. Each failure is an
:class:`InvalidInput` naming the input and the element index. At most :data:`DECODE_SLOTS` images are
decoded at once in a process (one per core, at least two): an image may take up to Pillow's limit of
pixels while it is decoded (89.5 million: about 270 MB as RGB), so concurrent requests must not multiply
that.

The gRPC wire conversion (reuse.grpc.convert) and the REST adapter call :func:`decode_images` with the
tensor's datatype, shape and elements.
"""

from __future__ import annotations

import io
import math
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reuse.errors import InvalidInput
from reuse.graph.signature import TensorSpec
from reuse.text import cut, echo, first_line

IMAGE_DATATYPES = ("BYTES", "UINT8")
FORMATS = ("PNG", "JPEG", "BMP", "GIF")
COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}
MiB = 1024 * 1024
DECODE_SLOTS = max(2, os.cpu_count() or 2)
_decoding = threading.BoundedSemaphore(DECODE_SLOTS)


@dataclass(frozen=True)
class ImageLimits:
    """The most one request may make the server decode (see the module docstring)."""

    max_image_bytes: int = 16 * MiB
    max_request_bytes: int = 64 * MiB
    max_batch_bytes: int = 256 * MiB
    max_pixels: int | None = None  # None: Pillow's MAX_IMAGE_PIXELS at the time of the call


DEFAULT_LIMITS = ImageLimits()


@dataclass(frozen=True)
class ImageTarget:
    """What an image input takes: height, width, channels and the float dtype of its values."""

    height: int
    width: int
    channels: int
    dtype: str

    @property
    def color_mode(self) -> str:
        return COLOR_MODES[self.channels]

    def parameters(self, preprocess: str = "") -> dict[str, str]:
        """The input's ModelMetadata parameters: the other forms it accepts and what it resizes to."""
        return {"image_datatypes": ",".join(IMAGE_DATATYPES), "image_formats": ",".join(FORMATS),
                "image_size": f"{self.height},{self.width}", "image_channels": str(self.channels),
                "color_mode": self.color_mode, "bytes_shape": "[-1]",
                "uint8_shape": f"[-1,-1,-1,{self.channels}]", "preprocess": preprocess or "none"}


def image_target(spec: TensorSpec) -> ImageTarget | None:
    """The image form of an input, or None when it is not an image input (see the module docstring)."""
    shape = spec.shape
    if len(shape) != 4 or not str(spec.dtype).startswith(("float", "bfloat")):
        return None
    _, h, w, c = shape
    if h is None or w is None or c not in COLOR_MODES:
        return None
    return ImageTarget(int(h), int(w), int(c), str(spec.dtype))


def image_input(sig: Any) -> tuple[TensorSpec, ImageTarget]:
    """The one image input of a model's signature, and its form.

    Raises:
        InvalidInput: the model has several inputs, or its input is not an image input.
    """
    if len(sig.inputs) != 1 or image_target(sig.inputs[0]) is None:
        shapes = ", ".join(f"{s.name} {[-1 if d is None else d for d in s.shape]} "
                           f"{s.dtype}" for s in sig.inputs)
        raise InvalidInput(f"model {sig.ref} takes {shapes}; images need one input of shape [-1, "
                           "height, width, channels] of floats, with a fixed height and width and 1, 3 or 4 "
                           "channels")
    return sig.inputs[0], image_target(sig.inputs[0])  # type: ignore[return-value]


def _max_pixels(limits: ImageLimits) -> int:
    if limits.max_pixels is not None:
        return limits.max_pixels
    from PIL import Image

    return int(Image.MAX_IMAGE_PIXELS or 2**62)


def _fail(name: str, index: int, what: str) -> InvalidInput:
    return InvalidInput(f"input {name!r}: element {index}: {what}")


def _decode_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    # What Pillow raises on a file that is not an image, is truncated or damaged, or is a decompression bomb.
    return (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error,
            Image.DecompressionBombError)


def _reason(exc: BaseException) -> str:
    return cut(first_line(exc), 160)


def check_image(data: bytes, *, name: str = "input", index: int = 0,
                limits: ImageLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """The ``(width, height)`` an encoded image's header gives, after the checks that need no decoding.

    Raises:
        InvalidInput: empty or over the byte limit, not a PNG/JPEG/BMP/GIF, or more pixels than the
            decompression-bomb limit; the message names ``name`` and ``index``.
    """
    from PIL import Image, UnidentifiedImageError

    if len(data) > limits.max_image_bytes:
        raise _fail(name, index,
                    f"{len(data)} bytes; the most one image may have is {limits.max_image_bytes}")
    if not data:
        raise _fail(name, index, "empty; expected an encoded PNG, JPEG, BMP or GIF image")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as probe:  # reads the header only
            width, height = probe.size
    except Image.DecompressionBombError as exc:
        raise _fail(name, index, f"refused as a decompression bomb ({_reason(exc)})") from None
    except UnidentifiedImageError:
        raise _fail(name, index,
                    f"not a {'/'.join(FORMATS)} image (Pillow does not recognise its bytes)") from None
    except _decode_errors() as exc:
        raise _fail(name, index, f"not a readable {'/'.join(FORMATS)} image ({_reason(exc)})") from None
    most = _max_pixels(limits)
    if width * height > most:
        raise _fail(name, index, f"{width}x{height} pixels, more than the decompression-bomb limit of {most}")
    return width, height


def decode_image(data: bytes, target: ImageTarget, *, name: str = "input", index: int = 0,
                 limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """One encoded image as the float array ``(height, width, channels)`` the model takes.

    Raises:
        InvalidInput: what :func:`check_image` refuses, or an image that is truncated or damaged; the
            message names ``name`` and ``index``.
    """
    import keras

    width, height = check_image(data, name=name, index=index, limits=limits)
    try:
        with _decoding:  # the full-size pixels exist only inside this block
            img = keras.utils.load_img(io.BytesIO(data), color_mode=target.color_mode,
                                       target_size=(target.height, target.width), interpolation="bilinear")
            arr = keras.utils.img_to_array(img, data_format="channels_last", dtype="float32")
    except _decode_errors() as exc:
        raise _fail(name, index, f"cannot decode the {width}x{height} image ({_reason(exc)})") from None
    return arr


def resize_pixels(pixels: np.ndarray, target: ImageTarget) -> np.ndarray:
    """One ``(h, w, channels)`` uint8 image resized as :func:`decode_image` resizes (Pillow, bilinear)."""
    h, w = pixels.shape[:2]
    if (h, w) == (target.height, target.width):
        return pixels.astype("float32")
    from PIL import Image

    mode = {1: "L", 3: "RGB", 4: "RGBA"}[target.channels]
    img = Image.fromarray(pixels[..., 0] if target.channels == 1 else pixels, mode=mode)
    out = np.asarray(img.resize((target.width, target.height), Image.Resampling.BILINEAR), dtype="float32")
    return out.reshape(target.height, target.width, target.channels)


def _batch_bytes(count: int, target: ImageTarget, name: str, limits: ImageLimits) -> None:
    need = count * target.height * target.width * target.channels * 4
    if need > limits.max_batch_bytes:
        raise InvalidInput(f"input {name!r}: {count} images of "
                           f"{target.height}x{target.width}x{target.channels} need {need} bytes decoded, "
                           f"above the limit of {limits.max_batch_bytes}; send fewer per request")


def decode_images(datatype: str, shape: Sequence[int], elements: Sequence[bytes] | np.ndarray,
                  target: ImageTarget, *, name: str = "input",
                  limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """The float batch ``(n, height, width, channels)`` for one tensor of images.

    Args:
        datatype: ``BYTES`` (one encoded image per element) or ``UINT8`` (pixels).
        shape: the tensor's shape: ``[n]`` or ``[n, 1]`` for BYTES; ``[n, h, w, channels]`` for UINT8
            (any h and w; the channels the model's).
        elements: BYTES: the ``n`` encoded images; UINT8: the pixels as a uint8 array of ``shape``.
        target: the model input's form (:func:`image_target`).
        name: the input's name, for messages.

    Raises:
        InvalidInput: a wrong datatype, shape or element count, an element over a limit or not an image
            (naming its index), or a decoded batch over ``max_batch_bytes``.
    """
    dims = [int(d) for d in shape]
    if datatype == "BYTES":
        if len(dims) not in (1, 2) or dims[0] < 1 or (len(dims) == 2 and dims[1] != 1):
            raise InvalidInput(f"input {name!r}: BYTES shape {echo(dims)}; expected [n] or [n, 1]: one "
                               "encoded image per element")
        if len(elements) != dims[0]:
            raise InvalidInput(f"input {name!r}: {len(elements)} BYTES elements for shape {dims}; expected "
                               f"{dims[0]}")
        total = sum(len(e) for e in elements)
        if total > limits.max_request_bytes:
            raise InvalidInput(f"input {name!r}: {total} bytes of images; the most one request may carry is "
                               f"{limits.max_request_bytes}")
        _batch_bytes(dims[0], target, name, limits)
        for i, data in enumerate(elements):  # every header first: refuse before decoding any
            check_image(bytes(data), name=name, index=i, limits=limits)
        out = np.empty((dims[0], target.height, target.width, target.channels), dtype=target.dtype)
        for i, data in enumerate(elements):
            out[i] = decode_image(bytes(data), target, name=name, index=i, limits=limits)
        return out
    if datatype == "UINT8":
        pixels = _uint8_pixels(dims, elements, target, name, limits)
        out = np.empty((dims[0], target.height, target.width, target.channels), dtype=target.dtype)
        for i in range(dims[0]):
            out[i] = resize_pixels(pixels[i], target)
        return out
    raise InvalidInput(f"input {name!r}: datatype {echo(datatype)} is not an image form; expected one of "
                       f"{', '.join(IMAGE_DATATYPES)}")


def _uint8_pixels(dims: list[int], elements: Any, target: ImageTarget, name: str,
                  limits: ImageLimits) -> np.ndarray:
    want = f"[n, height, width, {target.channels}]"
    if len(dims) != 4 or dims[0] < 1 or dims[1] < 1 or dims[2] < 1 or dims[3] != target.channels:
        raise InvalidInput(f"input {name!r}: UINT8 shape {echo(dims)}; expected {want} ({target.color_mode} "
                           "pixels, any height and width: they are resized)")
    most = _max_pixels(limits)
    if dims[1] * dims[2] > most:
        raise InvalidInput(f"input {name!r}: UINT8 images of {dims[2]}x{dims[1]} pixels, more than the "
                           f"decompression-bomb limit of {most}")
    _batch_bytes(dims[0], target, name, limits)
    pixels = np.asarray(elements)
    if pixels.dtype != np.uint8 or list(pixels.shape) != dims:
        raise InvalidInput(f"input {name!r}: UINT8 pixels of shape {list(pixels.shape)} and dtype "
                           f"{pixels.dtype}; expected uint8 of shape {dims}")
    return pixels


def decode_wire_images(datatype: str, shape: Sequence[int], target: ImageTarget, *, name: str, max_bytes: int,
                       elements: Sequence[bytes] | None = None, raw: bytes | memoryview | None = None,
                       values: Any = None) -> np.ndarray:
    """An image input as a wire gives it (gRPC or REST), checked and decoded to the model's batch.

    Args:
        datatype: ``BYTES`` or ``UINT8``; shape: the tensor's shape as sent.
        elements: BYTES: the encoded images (one per element).
        raw: UINT8 pixels as raw bytes; values: UINT8 pixels as typed values (one of the two).
        max_bytes: the most one message may carry (a UINT8 tensor larger than that cannot be valid).

    Raises:
        InvalidInput: as :func:`decode_images`, or a malformed shape, a byte count or value count that
            does not fit the shape, values outside 0..255; each naming the input.
    """
    dims = [int(d) for d in shape]
    if not dims or any(d < 0 for d in dims):
        want = "[n] or [n, 1]" if datatype == "BYTES" else f"[n, height, width, {target.channels}]"
        raise InvalidInput(f"input {name!r}: {datatype} shape {echo(dims)}; expected {want}")
    if datatype == "BYTES":
        return decode_images("BYTES", dims, list(elements or ()), target, name=name)
    count = math.prod(dims)
    if count > max_bytes:
        raise InvalidInput(f"input {name!r}: UINT8 shape {dims} has {count} values, above the message "
                           f"size limit of {max_bytes} bytes")
    if raw is not None:
        if len(raw) != count:
            raise InvalidInput(f"input {name!r}: raw content has {len(raw)} bytes, expected {count} (shape "
                               f"{dims} of UINT8)")
        pixels = np.frombuffer(raw, dtype=np.uint8)
    else:
        got = np.asarray(values if values is not None else [])
        if got.size != count:
            raise InvalidInput(f"input {name!r}: {got.size} UINT8 values, expected {count} (shape {dims})")
        if got.size and (got.dtype.kind not in "iu" or int(got.min()) < 0 or int(got.max()) > 255):
            raise InvalidInput(f"input {name!r}: UINT8 values must be whole numbers 0..255")
        pixels = got.astype(np.uint8)
    if len(dims) != 4:
        return decode_images("UINT8", dims, pixels, target, name=name)  # refuses the shape, naming it
    return decode_images("UINT8", dims, pixels.reshape(dims), target, name=name)
