"""The layer table of a stored model, with an optional scope dry run (``reuse layers``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from reuse.select import Selection, select_layers
from reuse.store import ModelStore


@dataclass(frozen=True)
class LayerRow:
    index: int
    name: str
    class_name: str
    output_shape: list[int | None] | None
    params: int
    trainable: bool
    matched: bool | None  # None when no scope was given


@dataclass(frozen=True)
class LayerTable:
    model: str
    rows: tuple[LayerRow, ...]
    selection: Selection | None

    def to_dict(self) -> dict[str, Any]:
        sel = self.selection
        return {
            "model": self.model,
            "scope": sel.pattern if sel else None,
            "match": sel.match if sel else None,
            "layers": [asdict(r) for r in self.rows],
            "matched": list(sel.matched) if sel else None,
            "unmatched": list(sel.unmatched) if sel else None,
        }


def layer_table(store: ModelStore, ref: str, scope: str | None = None, match: str = "full") -> LayerTable:
    """The layers of ``ref`` with class, output shape, parameter count and trainable flag (from the
    store's index: no model file is opened); with ``scope``, a dry run of the selection (no error when
    nothing matches).

    Raises:
        NotFound: no such model. InvalidPattern: a bad scope or match mode.
    """
    r = store.resolve(ref)
    infos = [i for i in store.layers(r) if i.class_name != "InputLayer"]
    names = [i.name for i in infos]
    selection = select_layers(names, scope, match=match, require_match=False) if scope is not None else None
    chosen = set(selection.matched) if selection else set()
    rows = tuple(
        LayerRow(
            index=i,
            name=info.name,
            class_name=info.class_name,
            output_shape=list(info.output_shape) if info.output_shape is not None else None,
            params=info.params,
            trainable=info.trainable,
            matched=(info.name in chosen) if selection else None,
        )
        for i, info in enumerate(infos)
    )
    return LayerTable(str(r), rows, selection)
