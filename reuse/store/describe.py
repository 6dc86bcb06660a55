"""A model version described for clients: metadata, versions, layers, and an optional scope preview.

Layers (nested ones by path, with their inputs) and the scope preview come from
:func:`reuse.store.layer_table.layer_table`: no weights are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reuse.graph.select import Selection
from reuse.store import LayerInfo, ModelInfo, ModelStore


@dataclass(frozen=True)
class ModelDescription:
    info: ModelInfo
    versions: tuple[int, ...]
    layers: tuple[LayerInfo, ...]
    selection: Selection | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"model": self.info.to_dict(), "versions": list(self.versions),
                             "layers": [layer.to_dict() for layer in self.layers]}
        if self.selection is not None:
            d["scope"] = {"pattern": self.selection.pattern, "match": self.selection.match,
                          "matched": list(self.selection.matched),
                          "unmatched": list(self.selection.unmatched)}
        return d


def describe(store: ModelStore, ref: str, *,
             scope: str | None = None, match: str = "full") -> ModelDescription:
    """Describe ``ref``; with ``scope``, preview the layers it selects (no error when none match).

    Raises:
        NotFound: unknown model or version. InvalidPattern: a bad scope or match mode.
    """
    from reuse.store.layer_table import layer_table

    info = store.info(ref)
    table = layer_table(store, info.ref, scope, match)
    versions = tuple(v.version for v in store.versions(info.name))
    layers = tuple(LayerInfo(name=r.name, class_name=r.class_name, output_shape=r.output_shape,
                             params=r.params, trainable=r.trainable, depth=r.depth,
                             inputs=tuple(r.inputs)) for r in table.rows)
    return ModelDescription(info=info, versions=versions, layers=layers, selection=table.selection)
