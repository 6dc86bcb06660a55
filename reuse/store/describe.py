"""A model version described for clients: metadata, versions, layers, and an optional scope preview.

Layers (nested ones by path, with their inputs) and the scope preview come from
:func:`reuse.store.layer_table.layer_table`: no weights are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reuse.graph.arch import MODEL_CLASSES
from reuse.graph.select import Selection
from reuse.store import LayerInfo, ModelInfo, ModelStore

if TYPE_CHECKING:
    from reuse.store.layer_table import LayerTable


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


def table_of(d: ModelDescription, scope: str | None = None, match: str = "full") -> LayerTable:
    """The layer table ``d`` was made from (a client rebuilds it from a server's description): the
    non-input layers, with the scope's dry run when ``scope`` is given."""
    from reuse.store.layer_table import LayerRow, LayerTable

    if scope is not None and d.selection is None:  # an empty scope: the server previews nothing
        d = ModelDescription(d.info, d.versions, d.layers, Selection(scope, match, (), tuple(
            x.name for x in d.layers if x.class_name != "InputLayer")))
    chosen = set(d.selection.matched) if d.selection else set()
    rows = tuple(LayerRow(index=i, name=x.name, class_name=x.class_name,
                          output_shape=list(x.output_shape) if x.output_shape is not None else None,
                          params=x.params, trainable=x.trainable,
                          matched=(x.name in chosen or _held(x, chosen)) if d.selection else None,
                          depth=x.depth, inputs=tuple(x.inputs))
                 for i, x in enumerate(x for x in d.layers if x.class_name != "InputLayer"))
    selected = tuple(r.name for r in rows if r.matched and r.class_name not in MODEL_CLASSES)
    return LayerTable(d.info.ref, rows, d.selection, selected)


def _held(row: LayerInfo, matched: set[str]) -> bool:
    """Whether a matched nested model holds ``row`` (a nested model's path selects what it holds)."""
    return any(row.name.startswith(m + "/") for m in matched)
