"""The layer table of a stored model, with an optional scope dry run (``reuse layers``).

Reads the architecture and the weight datasets' shapes (HDF5 metadata), never the weights themselves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from reuse.arch import Architecture, new_layer, parse_architecture
from reuse.errors import ReuseError
from reuse.select import Selection, select_layers
from reuse.store import ModelStore, h5file


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


def _param_counts(store: ModelStore, ref: Any, names: list[str]) -> dict[str, int]:
    """Parameter counts from the weight datasets' shapes; no weight is read."""
    path = store.path(ref)
    with h5file.open_read(path) as f:
        present = set(h5file.layer_names(f))
        return {name: sum(math.prod(ds.shape) for ds in h5file.layer_weight_datasets(f, name, path))
                if name in present else 0 for name in names}


def output_shapes(arch: Architecture) -> dict[str, tuple | None]:
    """Each layer's output shape (batch dimension first), or None where it cannot be worked out.

    Functional configs record the shape of every tensor a layer consumes; the rest is computed with
    ``compute_output_shape`` on unbuilt layers, so no weights are created.
    """
    recorded: dict[str, tuple] = {}
    for node in arch.layers:
        if node.input_shape is not None and len(node.inputs) == 1:
            recorded.setdefault(node.inputs[0], node.input_shape)
    shapes: dict[str, tuple | None] = dict(arch.inputs)
    for node in arch.layers:
        if node.name in recorded:
            shapes[node.name] = recorded[node.name]
            continue
        ins = [shapes.get(i) for i in node.inputs]
        if not ins or any(s is None for s in ins):
            shapes[node.name] = None
            continue
        try:
            out = new_layer(node).compute_output_shape(ins[0] if len(ins) == 1 else ins)
            shapes[node.name] = tuple(out) if all(d is None or isinstance(d, int) for d in out) else None
        except (ReuseError, NotImplementedError, ValueError, TypeError, AttributeError):
            shapes[node.name] = None
    return shapes


def layer_table(store: ModelStore, ref: str, scope: str | None = None, match: str = "full") -> LayerTable:
    """The layers of ``ref`` (inputs left out) with class, output shape, parameter count and trainable
    flag; with ``scope``, a dry run of the selection (no error when nothing matches).

    Raises:
        NotFound: no such model. InvalidPattern: a bad scope or match mode.
    """
    r = store.resolve(ref)
    arch = parse_architecture(store.model_config(r))
    selection = select_layers(arch.names, scope, match=match, require_match=False) if scope is not None else None
    chosen = set(selection.matched) if selection else set()
    params = _param_counts(store, r, arch.names)
    shapes = output_shapes(arch)
    rows = tuple(
        LayerRow(
            index=i,
            name=n.name,
            class_name=n.class_name,
            output_shape=list(shapes[n.name]) if shapes.get(n.name) is not None else None,
            params=params.get(n.name, 0),
            trainable=bool(n.config.get("trainable", True)),
            matched=(n.name in chosen) if selection else None,
        )
        for i, n in enumerate(arch.layers)
    )
    return LayerTable(str(r), rows, selection)
