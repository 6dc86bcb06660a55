"""Plain-text formatting shared by the CLI and the quickstart: aligned tables, sizes, shapes (no Click)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell, separated by two spaces; ``right`` lists right-aligned columns."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def shape(value: Any) -> str:
    """``[None, 16]`` as ``(None, 16)``; nested lists (several outputs) as a comma-separated list."""
    if value is None:
        return "?"
    if isinstance(value, list) and value and isinstance(value[0], list):
        return ", ".join(shape(v) for v in value)
    if isinstance(value, list):
        inner = ", ".join("None" if d is None else str(d) for d in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return str(value)


def short_time(iso: str | None) -> str:
    """An ISO timestamp to the second, without the offset (stored times are UTC)."""
    if not iso:
        return "-"
    return iso.replace("T", " ")[:19]
