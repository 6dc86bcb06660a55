"""Parsing head specs (:mod:`reuse.heads.spec`, the new layers put on top of reused ones) from a short
string or a JSON/YAML file.

String grammar (see docs/building.md)::

    head     := layer ("," layer)*
    layer    := "dense:" UNITS (":" dense_field)*
              | "batchnorm" (":" ("momentum=" F | "epsilon=" F))*
              | "dropout:" RATE
              | "maxout:" UNITS
              | "flatten"                          (Flatten: (batch, d1, ..., dn) -> (batch, d1*...*dn))
              | "gap" | "gmp"                      (global average / max pooling over the steps or
                                                    spatial axes; 1-D, 2-D or 3-D by the rank of the
                                                    tensor it receives: rank 3, 4 or 5)
              | ACTIVATION                         (a standalone activation layer)
    dense_field := ACTIVATION | INITIALIZER | "l2=" F | "maxnorm=" F
    ACTIVATION  := relu | leaky_relu["=" SLOPE] | prelu | elu | selu | tanh | sigmoid
                 | hard_sigmoid | softmax | linear

File: a mapping ``{"layers": [{"type": "dense", "units": 64, "activation": "relu", ...}, ...]}`` whose
entries carry the same fields by name (``slope``, ``initializer``, ``l2``, ``max_norm``, ``momentum``,
``epsilon``, ``rate``); ``{"type": "flatten"}``, ``{"type": "gap"}`` and ``{"type": "gmp"}`` take no
fields. Both forms parse to the same :class:`HeadSpec`.

Where a head comes from: :func:`read_head` for a caller that names the form (the CLI's ``--head`` or
``--head-file``), :func:`head_from_text` for text that may hold either (``BuildRequest.head``, a job's
``head`` parameter), by the one rule stated there.

Which Keras pooling class ``gap``/``gmp`` become depends on the rank of their input, so the spec only
says "global average/max pooling"; :func:`reuse.heads.layers.apply_head` picks the class while building.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from reuse.errors import InvalidInput
from reuse.heads.spec import (
    LAYER_TYPES,
    ActivationSpec,
    BatchNormSpec,
    DenseSpec,
    DropoutSpec,
    HeadSpec,
    LayerSpec,
    MaxoutSpec,
    is_int,
)
from reuse.text import first_line

ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "tanh", "sigmoid", "hard_sigmoid", "softmax",
               "linear")
INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal")
DEFAULT_SLOPE = 0.2
MAX_HEAD_LAYERS = 64
MAX_HEAD_FILE_BYTES = 1024 * 1024
# Layers written as a bare word with no fields.
_BARE = ("flatten", "gap", "gmp")


# -- validation shared by both forms -----------------------------------------------------------
def _where(token: str) -> str:
    return f" in head layer {token!r}"


def _positive_int(value: Any, what: str, token: str) -> int:
    number = int(value) if isinstance(value, str) and value.strip().isdigit() else value
    if not is_int(number) or number < 1:
        raise InvalidInput(f"invalid {what} {value!r}{_where(token)}: expected a positive integer")
    return int(number)


def _float(value: Any, what: str, token: str, *, low: float = 0.0, high: float = math.inf,
           high_open: bool = False, low_open: bool = True) -> float:
    try:
        f = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        f = math.nan
    ok = math.isfinite(f) and (f > low if low_open else f >= low) and (f < high if high_open else f <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open or high == math.inf else "]"
        raise InvalidInput(f"invalid {what} {value!r}{_where(token)}: expected a number in {lo}{low}, "
                           f"{high}{hi}")
    return f


def _activation(value: Any, slope: Any, token: str) -> tuple[str, float | None]:
    if value not in ACTIVATIONS:
        raise InvalidInput(f"unknown activation {value!r}{_where(token)}: expected one of "
                           f"{', '.join(ACTIVATIONS)}")
    if value == "leaky_relu":
        return value, _float(DEFAULT_SLOPE if slope is None else slope, "leaky_relu slope", token,
                             low=0.0, high=1.0, high_open=True, low_open=False)
    if slope is not None:
        raise InvalidInput(f"a slope is only allowed with leaky_relu{_where(token)}")
    return value, None


def _initializer(value: Any, token: str) -> str:
    if value not in INITIALIZERS:
        raise InvalidInput(f"unknown initializer {value!r}{_where(token)}: expected one of "
                           f"{', '.join(INITIALIZERS)}")
    return value


def _make(kind: str, values: dict[str, Any], token: str) -> LayerSpec:
    """Validate the named fields of one layer (both input forms end here)."""
    cls = LAYER_TYPES.get(kind)
    if cls is None:
        raise InvalidInput(f"unknown head layer {kind!r}{_where(token)}: expected dense, batchnorm, dropout, "
                           f"maxout, flatten, gap, gmp or an activation ({', '.join(ACTIVATIONS)})")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "no fields"
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}{_where(token)}: {kind} takes {takes}")
    v = dict(values)
    if cls is DenseSpec:
        if "units" not in v:
            raise InvalidInput(f"missing units{_where(token)}: expected e.g. dense:64")
        v["units"] = _positive_int(v["units"], "units", token)
        v["activation"], v["slope"] = _activation(v.get("activation", "linear"), v.get("slope"), token)
        v["initializer"] = _initializer(v.get("initializer", "glorot_uniform"), token)
        if v.get("l2") is not None:
            v["l2"] = _float(v["l2"], "l2 factor", token, low_open=False)
        if v.get("max_norm") is not None:
            v["max_norm"] = _float(v["max_norm"], "max-norm", token)
    elif cls is BatchNormSpec:
        if "momentum" in v:
            v["momentum"] = _float(v["momentum"], "momentum", token, low_open=False, high=1.0, high_open=True)
        if "epsilon" in v:
            v["epsilon"] = _float(v["epsilon"], "epsilon", token)
    elif cls is DropoutSpec:
        if "rate" not in v:
            raise InvalidInput(f"missing rate{_where(token)}: expected e.g. dropout:0.2")
        v["rate"] = _float(v["rate"], "dropout rate", token, low_open=False, high=1.0, high_open=True)
    elif cls is MaxoutSpec:
        if "units" not in v:
            raise InvalidInput(f"missing units{_where(token)}: expected e.g. maxout:32")
        v["units"] = _positive_int(v["units"], "units", token)
    elif cls is ActivationSpec:
        if "activation" not in v:
            raise InvalidInput(f"missing activation{_where(token)}")
        v["activation"], v["slope"] = _activation(v["activation"], v.get("slope"), token)
    return cls(**v)


def _finish(layers: list[LayerSpec]) -> HeadSpec:
    if len(layers) > MAX_HEAD_LAYERS:
        raise InvalidInput(f"head has {len(layers)} layers; at most {MAX_HEAD_LAYERS} are allowed")
    return HeadSpec(tuple(layers))


# -- the short string --------------------------------------------------------------------------
def _split_activation(field: str) -> tuple[str, str | None]:
    name, sep, slope = field.partition("=")
    return name, (slope if sep else None)


def _parse_token(token: str) -> LayerSpec:
    parts = [p.strip() for p in token.split(":")]
    kind = parts[0].lower()
    rest = parts[1:]
    if kind == "dense":
        if not rest or not rest[0]:
            raise InvalidInput(f"missing units{_where(token)}: expected e.g. dense:64")
        values: dict[str, Any] = {"units": rest[0]}
        for field in rest[1:]:
            key, sep, val = field.partition("=")
            key = key.lower()
            if key in ACTIVATIONS:
                if "activation" in values:
                    raise InvalidInput(f"two activations{_where(token)}")
                values["activation"] = key
                if sep:
                    values["slope"] = val
            elif key in INITIALIZERS and not sep:
                if "initializer" in values:
                    raise InvalidInput(f"two initializers{_where(token)}")
                values["initializer"] = key
            elif sep and key in ("l2", "maxnorm", "max_norm"):
                values["l2" if key == "l2" else "max_norm"] = val
            elif key == "maxout":
                raise InvalidInput(f"maxout is a layer, not a dense activation{_where(token)}: "
                                   "write e.g. dense:128,maxout:32")
            else:
                raise InvalidInput(
                    f"unknown field {field!r}{_where(token)}: expected an activation "
                    f"({', '.join(ACTIVATIONS)}), an initializer ({', '.join(INITIALIZERS)}), l2=F or "
                    "maxnorm=F"
                )
        return _make("dense", values, token)
    if kind == "batchnorm":
        values = {}
        for field in rest:
            key, sep, val = field.partition("=")
            if not sep:
                raise InvalidInput(f"unknown field {field!r}{_where(token)}: expected momentum=F or "
                                   "epsilon=F")
            values[key.lower()] = val
        return _make("batchnorm", values, token)
    if kind in ("dropout", "maxout"):
        if len(rest) != 1 or not rest[0]:
            example = "dropout:0.2" if kind == "dropout" else "maxout:32"
            raise InvalidInput(f"{kind} takes exactly one value{_where(token)}: expected e.g. {example}")
        return _make(kind, {"rate" if kind == "dropout" else "units": rest[0]}, token)
    if kind in _BARE:
        if rest:
            raise InvalidInput(f"{kind} takes no ':' fields{_where(token)}: write just {kind}")
        return _make(kind, {}, token)
    name, slope = _split_activation(kind)
    if name in ACTIVATIONS:
        if rest:
            raise InvalidInput(f"an activation layer takes no ':' fields{_where(token)} "
                               "(a leaky_relu slope is written leaky_relu=0.1)")
        return _make("activation", {"activation": name, "slope": slope}, token)
    return _make(kind, {}, token)


def parse_head(text: str) -> HeadSpec:
    """Parse the short form, e.g. ``dense:64:relu:he_normal,batchnorm,dropout:0.2,dense:5:softmax`` or, on
    a convolutional or sequence base, ``gap,dense:64:relu``.

    An empty string is an empty head (useful with an appended output layer).

    Raises:
        InvalidInput: naming the bad token and what was expected.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"invalid head spec {text!r}: expected a string")
    if not text.strip():
        return HeadSpec()
    tokens = [t.strip() for t in text.split(",")]
    layers = []
    for i, token in enumerate(tokens, start=1):
        if not token:
            raise InvalidInput(f"empty layer at position {i} in head spec {text!r}")
        layers.append(_parse_token(token))
    return _finish(layers)


# -- the file form -----------------------------------------------------------------------------
def head_from_dict(data: Any) -> HeadSpec:
    """Parse the file form (already decoded from JSON or YAML).

    Raises:
        InvalidInput: the document is not ``{"layers": [...]}`` or an entry is invalid (named by position).
    """
    if not isinstance(data, dict) or set(data) != {"layers"} or not isinstance(data["layers"], list):
        raise InvalidInput('invalid head file: expected a mapping with exactly one key, "layers", '
                           'holding a list')
    layers = []
    for i, entry in enumerate(data["layers"], start=1):
        where = f"layer {i}"
        if not isinstance(entry, dict) or "type" not in entry:
            raise InvalidInput(f'invalid head {where} {entry!r}: expected a mapping with a "type"')
        values = {k: v for k, v in entry.items() if k != "type"}
        kind = str(entry["type"]).lower()
        token = f"{where} ({kind})"
        layers.append(_make(kind, values, token))
    return _finish(layers)


def is_head_document(text: str) -> bool:
    """Whether ``text`` is a head file's document (JSON or YAML) rather than the short spec.

    The rule: a document starts with ``{`` (a JSON object, or a YAML flow mapping) or holds ``layers:``
    (the key of a YAML head file). It decides, rather than guesses: no valid short spec starts with ``{``
    or holds ``layers:`` (``layers`` is no layer type), so no text valid in one form is read in the other.
    """
    stripped = text.strip()
    return stripped.startswith("{") or "layers:" in stripped


def head_from_text(text: str, *, where: str = "head") -> HeadSpec:
    """A head from text in either form (:func:`is_head_document` says which): what
    ``BuildRequest.head`` and the ``head`` parameter of a build or advise job carry.

    Args:
        text: the short spec, or the JSON/YAML text of a head file.
        where: names the text in errors, e.g. ``build job: parameter 'head'``.

    Raises:
        InvalidInput: a document over :data:`MAX_HEAD_FILE_BYTES` or not valid JSON/YAML, or an invalid head.
    """
    if not is_head_document(text):
        return parse_head(text)
    if len(text.encode()) > MAX_HEAD_FILE_BYTES:
        raise InvalidInput(f"{where} is larger than {MAX_HEAD_FILE_BYTES} bytes")
    try:
        data = yaml.safe_load(text.strip())  # JSON is YAML
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{where} is neither a head spec nor valid JSON/YAML: {first_line(exc)}") from exc
    return head_from_dict(data)


def read_head(head: str | HeadSpec | None = None,
              head_file: str | os.PathLike[str] | None = None) -> HeadSpec:
    """The head a caller names: a short spec (or a parsed :class:`HeadSpec`) or a head file, not both
    (the CLI's ``--head`` and ``--head-file``); neither is the empty head.

    Raises:
        InvalidInput: both were given, or the spec or the file is invalid.
    """
    if head is not None and head_file is not None:
        raise InvalidInput("give either a head spec or a head file, not both")
    if head_file is not None:
        return load_head_file(head_file)
    return head if isinstance(head, HeadSpec) else parse_head(head or "")


def load_head_file(path: str | os.PathLike[str]) -> HeadSpec:
    """Read a head spec from a ``.json``, ``.yaml`` or ``.yml`` file.

    Raises:
        InvalidInput: the file is missing, too large, not parseable, or holds an invalid spec.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_HEAD_FILE_BYTES:
            raise InvalidInput(f"head file {p} is larger than {MAX_HEAD_FILE_BYTES} bytes")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read head file {p}: {exc}") from exc
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise InvalidInput(f"head file {p}: expected a .json, .yaml or .yml file")
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(f"head file {p} is not valid {suffix[1:].upper()}: {first_line(exc)}") from exc
    return head_from_dict(data)

