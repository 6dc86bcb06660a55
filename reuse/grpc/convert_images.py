"""The image forms of the KServe v2 wire: BYTES and UINT8 inputs of image models, and classification outputs.

Part of the wire conversion (:mod:`reuse.grpc.convert` calls it): the elements of an image tensor are
checked here (raw BYTES content split at its length prefixes, UINT8 counts and values) and handed to
:func:`reuse.serving.image_inputs.decode_images`, which decodes and resizes them; an output requested with
the parameter ``classification`` = k (Triton's classification extension) becomes ``BYTES`` ``[n, k]`` of
``"score:index:label"`` strings (``"score:index"`` when the model has no class names), best first.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np

from reuse.errors import InvalidInput
from reuse.graph.signature import TensorSpec
from reuse.grpc._proto import inference_pb2 as pb
from reuse.serving.classes import TopClass, top_k
from reuse.serving.image_inputs import IMAGE_DATATYPES, decode_wire_images, image_target
from reuse.text import echo


# -- images in --------------------------------------------------------------------------------------
def has_images(request: pb.ModelInferRequest) -> bool:
    """Whether the request carries images to decode (BYTES or UINT8 inputs): work for a thread, not the
    loop."""
    return any(t.datatype in IMAGE_DATATYPES for t in request.inputs)


def split_bytes(data: bytes, count: int, name: str) -> list[bytes]:
    """The elements of a raw BYTES tensor: each a 4-byte little-endian length, then that many bytes.

    Raises:
        InvalidInput: a length running past the end, a different element count, or bytes left over.
    """
    out, pos, view = [], 0, memoryview(data)
    while pos < len(data):
        if len(out) == count or pos + 4 > len(data):
            raise InvalidInput(f"input {name!r}: raw BYTES content has {len(data) - pos} bytes after element "
                               f"{len(out) - 1}; expected {count} length-prefixed elements and nothing more")
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if pos + n > len(data):
            raise InvalidInput(f"input {name!r}: element {len(out)} says {n} bytes but only "
                               f"{len(data) - pos} remain in its raw content")
        out.append(bytes(view[pos:pos + n]))
        pos += n
    if len(out) != count:
        raise InvalidInput(f"input {name!r}: raw BYTES content holds {len(out)} elements; the shape "
                           f"says {count}")
    return out


def image_tensor(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, spec: TensorSpec,
                 max_bytes: int) -> np.ndarray:
    """An image input sent as BYTES or UINT8, read off the wire and decoded to the model's batch
    (:func:`reuse.serving.image_inputs.decode_wire_images`, which REST uses too)."""
    target = image_target(spec)
    assert target is not None
    name, shape = spec.name, [int(d) for d in tensor.shape]
    if raw is not None and tensor.HasField("contents"):
        raise InvalidInput(f"input {name!r}: has contents although raw_input_contents is used; "
                           "expected one or the other")
    if tensor.datatype == "BYTES":
        count = shape[0] if shape and shape[0] >= 0 else 0
        elements = split_bytes(raw, count, name) if raw is not None else list(tensor.contents.bytes_contents)
        return decode_wire_images("BYTES", shape, target, name=name, max_bytes=max_bytes, elements=elements)
    return decode_wire_images("UINT8", shape, target, name=name, max_bytes=max_bytes, raw=raw,
                              values=None if raw is not None else np.asarray(tensor.contents.uint_contents,
                                                                               dtype=np.int64))


# -- classification ---------------------------------------------------------------------------------
def classification(out: pb.ModelInferRequest.InferRequestedOutputTensor, spec: TensorSpec) -> int:
    """The ``classification`` count asked of an output (0: none).

    Raises:
        InvalidInput: a count that is not a positive integer, or asked of an output that is not
            (batch, classes).
    """
    if "classification" not in out.parameters:
        return 0
    param = out.parameters["classification"]
    kind = param.WhichOneof("parameter_choice")
    k = getattr(param, kind) if kind in ("int64_param", "uint64_param") else None
    if k is None and kind == "string_param" and param.string_param.strip().isdigit():
        k = int(param.string_param)
    if not isinstance(k, int) or k < 1:
        raise InvalidInput(f"output {out.name!r}: parameter classification must be a positive integer "
                           "(the number of classes to return); got "
                           f"{echo(getattr(param, kind) if kind else None)}")
    if len(spec.shape) != 2:
        raise InvalidInput(f"output {out.name!r}: classification needs an output of shape [batch, "
                           f"classes]; this one has {[-1 if d is None else d for d in spec.shape]}")
    return k


def classification_strings(scores: np.ndarray, k: int, class_names: Sequence[str]) -> np.ndarray:
    """``[n, min(k, classes)]`` of ``b"score:index:label"`` (``b"score:index"`` without names), best first,
    as Triton's classification extension writes them."""

    rows = top_k(scores, k)
    out = np.empty((scores.shape[0], rows.shape[1]), dtype=object)
    for r in range(scores.shape[0]):
        for j, idx in enumerate(rows[r]):
            label = f":{class_names[idx]}" if idx < len(class_names) else ""
            out[r, j] = f"{float(scores[r, idx]):f}:{int(idx)}{label}".encode()
    return out


def join_bytes(values: Iterable[bytes]) -> bytes:
    """BYTES elements as raw content: each a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(v)) + bytes(v) for v in values)




def parse_classification(values: np.ndarray) -> list[list[TopClass]]:
    """A classification output (``[n, k]`` of ``b"score:index[:label]"``) as each row's top classes."""
    rows = np.asarray(values, dtype=object)
    rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
    out = []
    for row in rows:
        top = []
        for item in row:
            text = item.decode() if isinstance(item, (bytes, bytearray)) else str(item)
            score, _, rest = text.partition(":")
            index, _, label = rest.partition(":")
            try:
                top.append(TopClass(int(index), float(score), label))
            except ValueError:
                raise InvalidInput(f"classification element {echo(text)}: expected "
                                   "score:index[:label]") from None
        out.append(top)
    return out
