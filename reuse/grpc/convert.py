"""Wire <-> core conversion for the KServe v2 messages, both ways, with every wire-level check.

The server decodes requests and encodes responses and metadata; the client encodes requests
(:func:`infer_request`) and decodes responses (:func:`decode_outputs`) and metadata
(:func:`signature_of`). Requests are checked against the model's signature before any work: input names,
datatypes, shapes (and that their size fits in a message at all), typed-content counts, raw byte lengths and
finite floating-point values, each refused with :class:`InvalidInput` naming what was received and what was
expected. Raw requests get raw answers (stock clients read only those).

Images: an image input (:func:`reuse.serving.image_inputs.image_target`) also takes ``BYTES`` (one encoded
PNG/JPEG/BMP/GIF per element; raw contents as KServe serialises them, a 4-byte little-endian length
before each element) and ``UINT8`` pixels of any height and width; the elements are checked here and
decoded and resized by :func:`reuse.serving.image_inputs.decode_images`. Classification (Triton's
extension): a requested output with the parameter ``classification`` = k comes back as ``BYTES``
``[n, k]``, each element ``"score:index:label"`` (``"score:index"`` without class names), best first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import numpy as np

from reuse.errors import InvalidInput
from reuse.graph.signature import ModelSignature, TensorSpec
from reuse.grpc._proto import inference_pb2 as pb
from reuse.grpc.convert_images import (
    classification,
    classification_strings,
    image_tensor,
    join_bytes,
    split_bytes,
)
from reuse.serving.image_inputs import IMAGE_DATATYPES, image_target
from reuse.serving.v2 import (  # noqa: F401 - NP_OF, V2_OF, model_ref, element_count: this module's API too
    NP_OF,
    V2_OF,
    check_finite,
    check_shape,
    element_count,
    model_ref,
    v2_datatype,
    wire_shape,
)
from reuse.serving.v2 import select_outputs as _select_outputs
from reuse.text import ECHO_LIMIT, cut, echo

# The server's default gRPC message limit; a tensor larger than the message carrying it cannot be valid.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

# The typed-contents field of each datatype; FP16 travels only as raw bytes.
FIELD_OF: dict[str, str] = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}
# The tensor rules HTTP applies too live in reuse.serving.v2 (one set of checks and words for both wires).
_wire_shape, _check_shape, _check_finite = wire_shape, check_shape, check_finite


def decode_request(request: pb.ModelInferRequest, sig: ModelSignature, *,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[list[np.ndarray], list[int]]:
    """The input arrays in the model's order, and the indices of the outputs to return.

    ``max_bytes`` is the server's message size limit: no input can be larger.

    Raises:
        InvalidInput: anything about the request that does not fit the model.
    """
    fast = _decode_one_raw(request, sig, max_bytes)
    if fast is not None:
        return [fast], select_outputs(request, sig)
    by_name = {t.name: i for i, t in enumerate(request.inputs)}
    expected = [s.name for s in sig.inputs]
    if len(by_name) != len(request.inputs) or set(by_name) != set(expected):
        raise InvalidInput(f"model {sig.ref} takes inputs {expected}; got "
                           f"{echo([t.name for t in request.inputs])}")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"raw_input_contents has {len(raw)} entries; expected one per input "
                           f"({len(request.inputs)})")
    arrays: list[np.ndarray] = []
    for spec in sig.inputs:
        i = by_name[spec.name]
        tensor = request.inputs[i]
        want_dt = v2_datatype(spec.dtype)
        if (
            tensor.datatype in IMAGE_DATATYPES
            and tensor.datatype != want_dt
            and image_target(spec) is not None
        ):
            arr = image_tensor(tensor, raw[i] if raw else None, spec, max_bytes)
            if arrays and arr.shape[0] != arrays[0].shape[0]:
                raise InvalidInput(f"inputs have different row counts ({arrays[0].shape[0]} and "
                                   f"{arr.shape[0]}); expected equal")
            arrays.append(arr)
            continue
        if tensor.datatype != want_dt:
            got = cut(tensor.datatype, ECHO_LIMIT) if tensor.datatype else "(empty)"
            also = f" (or images as {' or '.join(IMAGE_DATATYPES)})" if image_target(spec) is not None else ""
            raise InvalidInput(f"input {spec.name!r}: datatype {got}, expected {want_dt}{also}")
        shape = _check_shape(spec, tensor.shape)
        if arrays and shape[0] != arrays[0].shape[0]:
            raise InvalidInput(f"inputs have different row counts ({arrays[0].shape[0]} and {shape[0]}); "
                               f"expected equal (input {sig.inputs[0].name!r} has {arrays[0].shape[0]} rows, "
                               f"{spec.name!r} {shape[0]})")
        dtype = NP_OF[want_dt]
        count = element_count(spec, shape, dtype.itemsize, max_bytes)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(f"input {spec.name!r}: has contents although raw_input_contents is used; "
                                   "expected one or the other")
            data = raw[i]
            if len(data) != count * dtype.itemsize:
                raise InvalidInput(f"input {spec.name!r}: raw content has {len(data)} bytes, expected "
                                   f"{count * dtype.itemsize} (shape {list(shape)} of {want_dt})")
            arr = np.frombuffer(data, dtype=dtype).reshape(shape)
        else:
            field = FIELD_OF.get(want_dt)
            values = getattr(tensor.contents, field) if field else ()
            if field is None or len(values) != count:
                where = field or "raw_input_contents (FP16 has no typed field)"
                raise InvalidInput(f"input {spec.name!r}: {len(values)} values in contents.{field or '?'}, "
                                   f"expected {count} in {where} (shape {list(shape)} of {want_dt})")
            arr = np.asarray(values, dtype=dtype).reshape(shape)
        _check_finite(spec, arr)
        arrays.append(arr)
    return arrays, select_outputs(request, sig)


def _decode_one_raw(request: pb.ModelInferRequest, sig: ModelSignature, max_bytes: int) -> np.ndarray | None:
    """The common case, one input sent as raw bytes, decoded with the fewest steps; None when the request
    is anything else or its byte count is wrong (the general path then decodes it or says what is wrong)."""
    if len(sig.inputs) != 1 or len(request.inputs) != 1 or len(request.raw_input_contents) != 1:
        return None
    spec, tensor = sig.inputs[0], request.inputs[0]
    want_dt = v2_datatype(spec.dtype)
    if tensor.name != spec.name or tensor.datatype != want_dt or tensor.HasField("contents"):
        return None
    # Shape and size are checked as the general path checks them, with its errors (it would raise the same).
    shape = _check_shape(spec, tensor.shape)
    dtype = NP_OF[want_dt]
    data = request.raw_input_contents[0]
    if len(data) != element_count(spec, shape, dtype.itemsize, max_bytes) * dtype.itemsize:
        return None
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    _check_finite(spec, arr)
    return arr


def select_outputs(request: pb.ModelInferRequest, sig: ModelSignature) -> list[int]:
    """The indices of the outputs to return (all when none is named); checks their parameters."""
    if not request.outputs:
        return list(range(len(sig.outputs)))
    picked = _select_outputs(sig, [o.name for o in request.outputs])
    for out, i in zip(request.outputs, picked, strict=True):
        classification(out, sig.outputs[i])
    return picked


def encode_response(request: pb.ModelInferRequest, sig: ModelSignature, outputs: list[np.ndarray],
                    picked: list[int]) -> pb.ModelInferResponse:
    """The v2 response: raw bytes when the request was raw, typed contents otherwise; an output asked for
    with ``classification`` = k as its top-k class strings (BYTES)."""
    resp = pb.ModelInferResponse(model_name=sig.name, model_version=str(sig.version), id=request.id)
    arrays, dts = [], []
    for j, i in enumerate(picked):
        k = classification(request.outputs[j], sig.outputs[i]) if request.outputs else 0
        arrays.append(classification_strings(outputs[i], k, sig.class_names) if k else outputs[i])
        dts.append("BYTES" if k else v2_datatype(outputs[i].dtype))
    raw = bool(request.raw_input_contents) or any(dt not in FIELD_OF and dt != "BYTES" for dt in dts)
    for i, dt, arr in zip(picked, dts, arrays, strict=True):
        tensor = resp.outputs.add(name=sig.outputs[i].name, datatype=dt, shape=arr.shape)
        if dt == "BYTES":
            if raw:
                resp.raw_output_contents.append(join_bytes(arr.ravel()))
            else:
                tensor.contents.bytes_contents.extend(arr.ravel().tolist())
        elif raw:
            resp.raw_output_contents.append(np.ascontiguousarray(arr, dtype=NP_OF[dt]).tobytes())
        else:
            getattr(tensor.contents, FIELD_OF[dt]).extend(arr.ravel().tolist())
    return resp


def _strings(values: Mapping[str, str]) -> dict[str, pb.InferParameter]:
    return {k: pb.InferParameter(string_param=v) for k, v in values.items()}


def metadata_response(sig: ModelSignature, versions: Sequence[int], platform: str,
                      parameters: dict[str, str] | None = None) -> pb.ModelMetadataResponse:
    """ModelMetadata: the tensors (an image input with the forms it also takes, as its parameters), and
    the model's parameters (``parameters`` given, plus ``class_names`` as a JSON list when known)."""

    def meta(
        spec: TensorSpec, extra: dict[str, str] | None = None
    ) -> pb.ModelMetadataResponse.TensorMetadata:
        return pb.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=v2_datatype(spec.dtype),
                                                       shape=_wire_shape(spec),
                                                       parameters=_strings(extra or {}))

    def input_meta(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
        target = image_target(spec)
        return meta(spec, target.parameters(sig.preprocess) if target is not None else None)

    params = dict(parameters or {})
    if sig.class_names:
        params["class_names"] = json.dumps(list(sig.class_names))
    return pb.ModelMetadataResponse(name=sig.name, versions=[str(v) for v in versions], platform=platform,
                                    inputs=[input_meta(s) for s in sig.inputs],
                                    outputs=[meta(s) for s in sig.outputs], parameters=_strings(params))


def signature_of(meta: pb.ModelMetadataResponse, version: str = "") -> ModelSignature:
    """The signature a ModelMetadata answer describes (``version`` asked for; empty: the latest listed),
    with the class names and the preprocessing it advertises."""
    def spec(t: pb.ModelMetadataResponse.TensorMetadata) -> TensorSpec:
        return TensorSpec(t.name, NP_OF[t.datatype].name, tuple(None if d < 0 else int(d) for d in t.shape))

    served = int(version) if version else max(int(v) for v in meta.versions)
    names = meta.parameters["class_names"].string_param if "class_names" in meta.parameters else ""
    try:
        class_names = tuple(str(c) for c in json.loads(names)) if names else ()
    except (ValueError, TypeError):
        class_names = ()
    preprocess = next(
        (t.parameters["preprocess"].string_param for t in meta.inputs if "preprocess" in t.parameters), ""
    )
    return ModelSignature(meta.name, served, tuple(spec(t) for t in meta.inputs),
                          tuple(spec(t) for t in meta.outputs), class_names,
                          "" if preprocess == "none" else preprocess)


def infer_request(model: str, version: str, inputs: Mapping[str, np.ndarray | Sequence[bytes]], *,
                  raw: bool = True,
                  outputs: Sequence[str] = (), classification: int = 0) -> pb.ModelInferRequest:
    """A ModelInfer request for inputs by name: numpy arrays as raw little-endian bytes or typed contents;
    a list of ``bytes`` (encoded images) as a BYTES tensor ``[n]``. ``classification``: ask each output in
    ``outputs`` for its top-k class strings."""
    extra = {"classification": pb.InferParameter(int64_param=classification)} if classification else {}
    req = pb.ModelInferRequest(
        model_name=model,
        model_version=version,
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=n, parameters=extra) for n in outputs],
    )
    for name, value in inputs.items():
        if isinstance(value, (list, tuple)) and all(isinstance(v, (bytes, bytearray)) for v in value):
            tensor = req.inputs.add(name=name, datatype="BYTES", shape=[len(value)])
            if raw:
                req.raw_input_contents.append(join_bytes(value))
            else:
                tensor.contents.bytes_contents.extend(bytes(v) for v in value)
            continue
        arr = np.asarray(value)
        dt = v2_datatype(arr.dtype)
        tensor = req.inputs.add(name=name, datatype=dt, shape=arr.shape)
        if raw:
            req.raw_input_contents.append(np.ascontiguousarray(arr, NP_OF[dt]).tobytes())
        else:
            getattr(tensor.contents, FIELD_OF[dt]).extend(arr.ravel().tolist())
    return req


def decode_outputs(resp: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Outputs of a v2 response by name, from raw bytes or typed contents; BYTES outputs as object arrays
    of ``bytes``."""
    out = {}
    for i, t in enumerate(resp.outputs):
        shape = tuple(t.shape)
        if t.datatype == "BYTES":
            count = math.prod(shape)
            values = (split_bytes(resp.raw_output_contents[i], count, t.name) if resp.raw_output_contents
                      else list(t.contents.bytes_contents))
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            out[t.name] = arr.reshape(shape)
            continue
        dtype = NP_OF[t.datatype]
        if resp.raw_output_contents:
            arr = np.frombuffer(resp.raw_output_contents[i], dtype=dtype)
        else:
            arr = np.asarray(getattr(t.contents, FIELD_OF[t.datatype]), dtype=dtype)
        out[t.name] = arr.reshape(shape)
    return out
