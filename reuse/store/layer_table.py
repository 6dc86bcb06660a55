"""The layer table of a stored model, with an optional scope dry run (``reuse layers``).

Rows cover the layers inside nested models too, named by path (``backbone/block_1_expand``) with their
depth, and say which layers each one reads, so the graph can be seen. The structure comes from the
stored architecture (one HDF5 attribute; no weight is read and no Keras is imported); shapes and
parameter counts come from the store's index.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from reuse.errors import InvalidInput, StoreCorrupt
from reuse.graph.arch import MODEL_CLASSES
from reuse.graph.select import Selection
from reuse.store import LayerInfo, ModelStore


@dataclass(frozen=True)
class LayerRow:
    index: int
    name: str
    class_name: str
    output_shape: list[int | None] | None
    params: int
    trainable: bool
    matched: bool | None  # None when no scope was given
    depth: int = 0
    inputs: tuple[str, ...] = ()
    op: bool = False  # an operation node (x + y, ops.mean): no weights, replayed like a layer


@dataclass(frozen=True)
class LayerTable:
    model: str
    rows: tuple[LayerRow, ...]
    selection: Selection | None
    selected: tuple[str, ...] = ()  # the leaf layers the scope selects (a nested model selects its layers)

    def to_dict(self) -> dict[str, Any]:
        sel = self.selection
        return {
            "model": self.model,
            "scope": sel.pattern if sel else None,
            "match": sel.match if sel else None,
            "layers": [{**asdict(r), "inputs": list(r.inputs)} for r in self.rows],
            "matched": list(sel.matched) if sel else None,
            "unmatched": list(sel.unmatched) if sel else None,
            "selected": list(self.selected) if sel else None,
        }

    @property
    def leaves(self) -> int:
        """How many rows are layers (not nested models)."""
        return sum(1 for r in self.rows if r.class_name not in MODEL_CLASSES)


def layer_table(store: ModelStore, ref: str, scope: str | None = None, match: str = "full") -> LayerTable:
    """The layers of ``ref`` (nested ones by path) with class, output shape, parameter count, trainable
    flag and inputs; with ``scope``, a dry run of the selection (no error when nothing matches).

    Raises:
        NotFound: no such model. InvalidPattern: a bad scope or match mode.
    """
    from reuse.graph.reader import parse_architecture
    from reuse.graph.subgraph import select_scope

    r = store.resolve(ref)
    infos = {i.name: i for i in store.layers(r) if i.class_name != "InputLayer"}
    nested = {row["path"]: row for row in store.nested_layers(r)}
    try:
        arch = parse_architecture(store.model_config(r))
    except (StoreCorrupt, InvalidInput):  # a model we cannot read as a graph still lists its top-level layers
        arch = None
    if arch is None:
        return _flat(r, list(infos.values()), scope, match)
    selection, leaves = (select_scope(arch, scope, match=match, require_match=False)
                         if scope is not None else (None, ()))
    chosen = set(leaves)
    recorded = _recorded_shapes(arch)
    rows = []
    for i, path in enumerate(arch.order):
        info = infos.get(path)
        container = arch.container(path)
        node = None if container is not None else arch.node(path)
        row = nested.get(path, {})
        rows.append(LayerRow(
            index=i, name=path,
            # a registered class of ours or a user's shows its registered name (reuse>Preprocess)
            class_name=container.class_name if container else (node.registered_name or node.class_name),
            output_shape=_list(info.output_shape) if info else row.get("output_shape", recorded.get(path)),
            params=info.params if info else int(row.get("params", 0)),
            trainable=info.trainable if info else bool(row.get("trainable", node is None or not node.op)),
            matched=(path in chosen or (container is not None and bool(container.leaves)
                                        and set(container.leaves) <= chosen)) if selection else None,
            depth=(container.depth if container else node.depth),
            inputs=() if container else node.inputs,
            op=node is not None and node.op,
        ))
    return LayerTable(str(r), tuple(rows), selection, leaves)


def _recorded_shapes(arch: Any) -> dict[str, list[int | None]]:
    """The output shape of each node's first call as the config records it where a later call reads it
    (operation nodes are not in the store's layer table, so this is where their shapes come from)."""
    from reuse.graph.arch import Ref

    out: dict[str, list[int | None]] = {}
    for call in arch.calls:
        spec = arch.specs.get(Ref(call=call.key))
        if call.layer not in out and spec is not None and spec.shape is not None:
            out[call.layer] = list(spec.shape)
    return out


def _list(shape: Any) -> Any:
    return list(shape) if shape is not None else None


def _flat(ref: Any, infos: list[LayerInfo], scope: str | None, match: str) -> LayerTable:
    from reuse.graph.select import select_layers

    names = [i.name for i in infos]
    selection = select_layers(names, scope, match=match, require_match=False) if scope is not None else None
    chosen = set(selection.matched) if selection else set()
    rows = tuple(LayerRow(index=i, name=x.name, class_name=x.class_name, output_shape=_list(x.output_shape),
                          params=x.params, trainable=x.trainable,
                          matched=(x.name in chosen) if selection else None) for i, x in enumerate(infos))
    return LayerTable(str(ref), rows, selection, tuple(selection.matched) if selection else ())
