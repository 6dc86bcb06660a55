"""A model version described for clients: metadata, versions, layers, and an optional scope preview."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reuse.select import Selection, select_layers
from reuse.store import ModelInfo, ModelStore


@dataclass(frozen=True)
class LayerInfo:
    name: str
    class_name: str
    output_shape: Any
    params: int
    trainable: bool


@dataclass(frozen=True)
class ModelDescription:
    info: ModelInfo
    versions: tuple[int, ...]
    layers: tuple[LayerInfo, ...]
    selection: Selection | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"model": self.info.to_dict(), "versions": list(self.versions),
                             "layers": [dict(vars(layer)) for layer in self.layers]}
        if self.selection is not None:
            d["scope"] = {"pattern": self.selection.pattern, "match": self.selection.match,
                          "matched": list(self.selection.matched), "unmatched": list(self.selection.unmatched)}
        return d


def _output_shape(layer: Any) -> Any:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return None
    return [None if d is None else int(d) for d in shape]


def layer_table(model: Any) -> tuple[LayerInfo, ...]:
    """Name, class, output shape, parameter count and trainability of each layer, in model order."""
    return tuple(
        LayerInfo(name=layer.name, class_name=type(layer).__name__, output_shape=_output_shape(layer),
                  params=int(sum(np.prod(w.shape, dtype=np.int64) for w in layer.weights)),
                  trainable=bool(layer.trainable))
        for layer in model.layers)


def describe(store: ModelStore, ref: str, *, scope: str = "", match: str = "full") -> ModelDescription:
    """Describe ``ref``; with ``scope``, preview the layers it selects (no error when none match).

    Raises:
        NotFound: unknown model or version. InvalidPattern: a bad scope or match mode.
    """
    info = store.info(ref)
    model = store.load(info.ref)
    layers = layer_table(model)
    selection = None
    if scope:
        selection = select_layers([layer.name for layer in layers], scope, match=match, require_match=False)
    versions = tuple(v.version for v in store.versions(info.name))
    return ModelDescription(info=info, versions=versions, layers=layers, selection=selection)
