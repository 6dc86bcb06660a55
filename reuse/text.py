"""Plain-text formatting shared by the CLI, the quickstart and error messages: tables, sizes, shapes, echoed
values, an exception's first line (no Click)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The most characters of a user's value that an error message repeats (names, patterns, paths, ...).
ECHO_LIMIT = 200


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell, separated by two spaces; ``right`` lists right-aligned columns."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
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


def first_line(exc: BaseException, *, named: bool = False) -> str:
    """The first line of an exception's message (Keras' and others' run on for many lines), or its type's
    name when the message is empty; ``named``: after the type's name, e.g. ``ValueError: bad value``."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    line = lines[0].rstrip()
    return f"{type(exc).__name__}: {line}" if named else line


def cut(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start, an ellipsis and the full length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def echo(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` as an error message repeats a value a client sent, cut after ``limit`` characters.

    Every message that quotes user input goes through this, so a 10,000-character name cannot make a
    10 kB message (a gRPC status is a header; clients refuse headers over 8 KiB).
    """
    return cut(repr(value), limit)
