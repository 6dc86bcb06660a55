"""The KServe v2 tensor rules both wire adapters apply (gRPC: reuse.grpc.convert; HTTP: reuse.http.codec).

Datatype names and their numpy dtypes, the model reference of a (name, version) pair, and the checks of a
received tensor against the model's signature: shape, size (no tensor larger than a message can carry)
and finite values. Each refusal is :class:`InvalidInput` naming what was received and what was expected,
so both wires answer a bad request with the same words.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from reuse.errors import InvalidInput
from reuse.graph.signature import ModelSignature, TensorSpec
from reuse.names import parse_version
from reuse.text import ECHO_LIMIT, cut, echo

NP_OF: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
V2_OF: dict[np.dtype, str] = {dt: v2 for v2, dt in NP_OF.items()}
V2_OF.update({dt.newbyteorder("="): v2 for v2, dt in NP_OF.items()})
# Datatypes a request may name: the numeric ones and BYTES (strings or encoded images, variable length).
DATATYPES = frozenset({*NP_OF, "BYTES"})


@functools.lru_cache(maxsize=64)
def _v2_of_name(dtype: str) -> str:
    try:
        return V2_OF[np.dtype(dtype)]
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"dtype {dtype} has no KServe v2 datatype") from exc


def v2_datatype(dtype: str | np.dtype) -> str:
    """The v2 datatype name of a numpy dtype (or its name)."""
    v2 = V2_OF.get(dtype) if isinstance(dtype, np.dtype) else None
    return v2 or _v2_of_name(str(dtype))


def model_ref(name: str, version: str) -> str:
    """``name`` and the v2 version string (empty: latest) as ``NAME`` or ``NAME:VERSION``."""
    if not name:
        raise InvalidInput("model name is empty; expected the name of a model in the store")
    if not version:
        return name
    number = parse_version(version)
    if number is None:
        raise InvalidInput(
            f"model version {echo(version)}: expected a positive integer, or empty for the latest"
        )
    return f"{name}:{number}"


def wire_shape(spec: TensorSpec) -> list[int]:
    """A signature's shape as the wire writes it: -1 for a dimension of any size."""
    return [-1 if d is None else d for d in spec.shape]


def check_shape(spec: TensorSpec, shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as received, checked against ``spec`` (rank, fixed dimensions, at least one row)."""
    want = spec.shape
    ok = (
        len(shape) == len(want)
        and shape[0] >= 1
        and all(d >= 0 and (w is None or w == d) for w, d in zip(want, shape, strict=True))
    )
    if not ok:
        raise InvalidInput(
            f"input {spec.name!r}: shape {echo(list(shape))}, expected {wire_shape(spec)} "
            "(-1: any size, at least 1 row)"
        )
    return tuple(int(d) for d in shape)


def element_count(spec: TensorSpec, shape: tuple[int, ...], itemsize: int, max_bytes: int) -> int:
    """The number of values of ``shape``, counted in Python integers (numpy's int64 product wraps).

    Raises:
        InvalidInput: the tensor would be larger than ``max_bytes``, the most one message can carry.
    """
    count = math.prod(shape)
    if count * itemsize > max_bytes:
        raise InvalidInput(
            f"input {spec.name!r}: shape {list(shape)} has {count} values ({count * itemsize} bytes), "
            f"above the message size limit of {max_bytes} bytes"
        )
    return count


def check_finite(spec: TensorSpec, arr: np.ndarray) -> None:
    """Refuse NaN and infinite inputs: an answer computed from them is meaningless."""
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(arr.size - np.count_nonzero(finite))
            raise InvalidInput(
                f"input {spec.name!r}: {bad} non-finite values (NaN or infinity) of {arr.size}; "
                "expected finite numbers"
            )


def check_datatype(spec: TensorSpec, datatype: str) -> str:
    """The v2 datatype ``spec`` takes, if ``datatype`` (as received) is it.

    Raises:
        InvalidInput: another datatype (BYTES included, for a model that takes numbers).
    """
    want = v2_datatype(spec.dtype)
    if datatype != want:
        got = cut(datatype, ECHO_LIMIT) if datatype else "(empty)"
        raise InvalidInput(f"input {spec.name!r}: datatype {got}, expected {want}")
    return want


def check_input_names(sig: ModelSignature, names: Sequence[str]) -> None:
    """Every input of the model once, none other (any order)."""
    expected = [s.name for s in sig.inputs]
    if len(set(names)) != len(names) or set(names) != set(expected):
        raise InvalidInput(f"model {sig.ref} takes inputs {expected}; got {echo(list(names))}")


def check_rows(
    sig: ModelSignature, spec: TensorSpec, shape: tuple[int, ...], first: np.ndarray | None
) -> None:
    """Inputs of one request have one row count."""
    if first is not None and shape[0] != first.shape[0]:
        raise InvalidInput(
            f"inputs have different row counts ({first.shape[0]} and {shape[0]}); expected "
            f"equal (input {sig.inputs[0].name!r} has {first.shape[0]} rows, "
            f"{spec.name!r} {shape[0]})"
        )


def select_outputs(sig: ModelSignature, names: Sequence[str]) -> list[int]:
    """Indices of the outputs asked for by name (none named: all of them, in the model's order)."""
    have = [s.name for s in sig.outputs]
    if not names:
        return list(range(len(have)))
    picked = []
    for name in names:
        if name not in have:
            raise InvalidInput(f"unknown output {echo(name)}; model {sig.ref} has outputs {have}")
        picked.append(have.index(name))
    return picked
