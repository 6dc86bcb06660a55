"""How the walk-through talks: step headings, indented lines and tables, through one ``say`` callable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from reuse.text import table

Say = Callable[[str], None]


class Out:
    """Formats the walk-through's output; the caller decides where lines go (``say``)."""

    def __init__(self, say: Say, steps: int) -> None:
        self.say = say
        self.steps = steps

    def heading(self, number: int, title: str) -> None:
        self.say("")
        self.say(f"[{number}/{self.steps}] {title}")

    def line(self, text: str = "") -> None:
        self.say(f"  {text}" if text else "")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
              right: Sequence[int] = ()) -> None:
        for line in table(headers, rows, right=right).splitlines():
            self.say(f"    {line}")


def pct(x: float | None) -> str:
    """An accuracy as a percentage with one decimal (``-`` when missing)."""
    return "-" if x is None else f"{100.0 * x:.1f}%"
