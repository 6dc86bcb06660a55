"""The metadata kept with every stored version (the ``reuse/meta`` JSON; see docs/store-format.md)."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
from dataclasses import astuple, dataclass, fields
from typing import Any

from reuse.errors import InvalidInput
from reuse.store import keras_io


def _pkg_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _json_ready(label: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{label} must be JSON-serialisable: {exc}") from exc


def check_tags(tags: dict[str, str] | None) -> dict[str, str]:
    """Tags as a plain dict of non-empty string keys to string values, or InvalidInput."""
    tags = dict(tags or {})
    for k, v in tags.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise InvalidInput(f"invalid tag {k!r}={v!r}: expected a non-empty string key and a string value")
    return tags


@dataclass(frozen=True)
class VersionMeta:
    """What a caller records with a new version: the one list of metadata keywords, used by
    :meth:`reuse.store.ModelStore.register` and when a stored file is registered again."""

    description: str = ""
    tags: dict[str, str] | None = None
    class_names: list[str] | None = None
    metrics: dict[str, Any] | None = None
    history: dict[str, list[float]] | None = None
    lineage: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    source: dict[str, Any] | None = None  # where the model came from (set when registering a file)

    @classmethod
    def carried(cls, meta: dict[str, Any]) -> VersionMeta:
        """The fields of a stored version's metadata that a new version can keep."""
        return cls(**{f.name: meta[f.name] for f in fields(cls) if meta.get(f.name) is not None})


def build_meta(model: Any, given: VersionMeta) -> dict[str, Any]:
    """Everything we record about a new version, validated before anything is written.

    Raises:
        InvalidInput: not a built Keras model, bad tags, or values that are not JSON.
    """
    import keras

    from reuse.graph.applications import recognise, rows_of_meta
    from reuse.layers.preprocess import stage_record

    description, tags, class_names, metrics, history, lineage, settings, source = astuple(given)
    try:
        hist = {str(k): [float(x) for x in v] for k, v in (history or {}).items()}
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"history must map names to lists of numbers: {exc}") from exc
    described = keras_io.describe_model(model)
    family = recognise(rows_of_meta(described))
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
        "description": str(description or ""),
        "tags": check_tags(tags),
        "class_names": [str(c) for c in class_names] if class_names is not None else None,
        "metrics": _json_ready("metrics", dict(metrics or {})),
        "history": hist,
        "lineage": _json_ready("lineage", dict(lineage or {})),
        "settings": _json_ready("settings", dict(settings or {})),
        "source": _json_ready("source", source) if source is not None else None,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "tensorflow_version": _pkg_version("tensorflow"),
        # The stage that makes the model take raw pixels, and the keras.applications architecture it
        # looks like with the preprocessing that expects (docs/store-format.md).
        "preprocess": stage_record(model),
        "base_family": family.to_dict() if family is not None else None,
        **described,
    }
