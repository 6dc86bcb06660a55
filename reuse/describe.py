"""A model version described for clients: metadata, versions, layers, and an optional scope preview.

Everything comes from the store's index (``ModelStore.layers``, and :func:`reuse.layer_table.layer_table`
for the scope preview): no weights are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reuse.select import Selection
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
                          "matched": list(self.selection.matched), "unmatched": list(self.selection.unmatched)}
        return d


def describe(store: ModelStore, ref: str, *, scope: str = "", match: str = "full") -> ModelDescription:
    """Describe ``ref``; with ``scope``, preview the layers it selects (no error when none match).

    Raises:
        NotFound: unknown model or version. InvalidPattern: a bad scope or match mode.
    """
    from reuse.layer_table import layer_table

    info = store.info(ref)
    selection = layer_table(store, info.ref, scope, match).selection if scope else None
    versions = tuple(v.version for v in store.versions(info.name))
    return ModelDescription(info=info, versions=versions, layers=tuple(store.layers(info.ref)), selection=selection)
