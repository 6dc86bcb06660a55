"""Where each box and line of a lineage graph goes, for the SVG the version page draws on the server.

Versions are boxes in columns by generation (a version one column right of the latest of its bases),
each with its header (name:version, the operation that made it) and one row per layer that takes part in
a copy: reused layers carry their marks. Lines join a base's header to the version made from it, and each
copied layer's row in the base to its row in the copy. Rows past ``MAX_ROWS`` fold into one "... more"
row, whose lines start at the header instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BOX_W, HEADER_H, ROW_H, COL_GAP, BOX_GAP, PAD = 230, 38, 18, 130, 26, 16
MAX_ROWS = 24


@dataclass
class Row:
    name: str
    y: float
    reused: bool = False
    frozen: bool | None = None
    via: str | None = None


@dataclass
class Box:
    id: str
    name: str
    version: int
    operation: str | None
    missing: bool
    x: float = 0.0
    y: float = 0.0
    rows: list[Row] = field(default_factory=list)
    hidden_rows: int = 0
    root: bool = False

    @property
    def height(self) -> float:
        return HEADER_H + ROW_H * (len(self.rows) + (1 if self.hidden_rows else 0)) + 6

    def anchor(self, layer: str | None, side: str) -> tuple[float, float]:
        """Where a line meets this box: the layer's row, or the header (also for a folded row)."""
        x = self.x + (BOX_W if side == "out" else 0)
        for r in self.rows:
            if r.name == layer:
                return x, r.y
        return x, self.y + HEADER_H / 2


@dataclass
class Line:
    path: str
    kind: str  # "version", "layer" or "architecture"
    label: str = ""
    label_x: float = 0.0
    label_y: float = 0.0


@dataclass
class Layout:
    boxes: list[Box]
    lines: list[Line]
    width: float
    height: float
    truncated: bool


def _generations(graph: dict[str, Any]) -> dict[str, int]:
    parents: dict[str, list[str]] = {v["id"]: [] for v in graph["versions"]}
    for e in graph["edges"]:
        if e["to"] in parents and e["from"] in parents:
            parents[e["to"]].append(e["from"])
    depth: dict[str, int] = {}

    def gen(v: str, seen: frozenset[str] = frozenset()) -> int:
        if v not in depth:
            ps = [p for p in parents[v] if p not in seen]
            depth[v] = 1 + max((gen(p, seen | {v}) for p in ps), default=-1)
        return depth[v]

    for v in parents:
        gen(v)
    return depth


def _curve(a: tuple[float, float], b: tuple[float, float]) -> str:
    dx = max(40.0, (b[0] - a[0]) / 2)
    return (
        f"M{a[0]:.1f},{a[1]:.1f} C{a[0] + dx:.1f},{a[1]:.1f} {b[0] - dx:.1f},{b[1]:.1f} {b[0]:.1f},{b[1]:.1f}"
    )


def layout(graph: dict[str, Any]) -> Layout:
    """Place ``graph`` (reuse.store.lineage.lineage_graph's answer)."""
    depth = _generations(graph)
    columns: dict[int, list[Box]] = {}
    boxes: dict[str, Box] = {}
    for v in graph["versions"]:
        box = Box(
            v["id"], v["name"], v["version"], v["operation"], v["missing"], root=v["id"] == graph["root"]
        )
        layers = v["layers"]
        for lay in layers[:MAX_ROWS]:
            box.rows.append(
                Row(lay["name"], 0.0, lay.get("reused", False), lay.get("frozen"), lay.get("via"))
            )
        box.hidden_rows = max(0, len(layers) - MAX_ROWS)
        boxes[v["id"]] = box
        columns.setdefault(depth[v["id"]], []).append(box)
    height = 0.0
    for col, items in sorted(columns.items()):
        y = PAD
        for box in items:
            box.x, box.y = PAD + col * (BOX_W + COL_GAP), y
            for i, row in enumerate(box.rows):
                row.y = y + HEADER_H + ROW_H * i + ROW_H / 2 + 2
            y += box.height + BOX_GAP
        height = max(height, y)
    lines = []
    for e in graph["edges"]:
        a, b = boxes.get(e["from"]), boxes.get(e["to"])
        if a is None or b is None:
            continue
        p, q = a.anchor(None, "out"), b.anchor(None, "in")
        kind = "architecture" if e["op"] == "architecture" else "version"
        lines.append(Line(_curve(p, q), kind, e["op"], (p[0] + q[0]) / 2, (p[1] + q[1]) / 2 - 4))
    for e in graph["layer_edges"]:
        a, b = boxes.get(e["from"][0]), boxes.get(e["to"][0])
        if a is not None and b is not None:
            lines.append(Line(_curve(a.anchor(e["from"][1], "out"), b.anchor(e["to"][1], "in")), "layer"))
    width = PAD * 2 + (max(columns) + 1) * BOX_W + max(columns) * COL_GAP if columns else 0
    return Layout(list(boxes.values()), lines, width, height + PAD, graph["truncated"])
