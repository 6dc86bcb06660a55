"""Layer selection by regular-expression scope: the one place where patterns meet layer names.

Patterns come from untrusted clients, so they are compiled with RE2, whose matching time is linear in
the length of the name whatever the pattern (no catastrophic backtracking).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import re2

from reuse.errors import InvalidPattern, NoLayersMatched
from reuse.text import cut, echo

MatchMode = Literal["full", "prefix"]
MATCH_MODES: tuple[str, ...] = ("full", "prefix")
MAX_PATTERN_LENGTH = 1000


@dataclass(frozen=True)
class Selection:
    """The outcome of matching a scope against a model's layer names, in the model's order."""

    pattern: str
    match: str
    matched: tuple[str, ...]
    unmatched: tuple[str, ...]


def compile_scope(pattern: str) -> re2._Regexp:
    """Compile a scope pattern with RE2, or raise :class:`InvalidPattern` repeating the pattern."""
    if not isinstance(pattern, str) or not pattern:
        raise InvalidPattern(f"invalid scope pattern {echo(pattern)}: expected a non-empty regular "
                             "expression")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidPattern(
            f"scope pattern too long ({len(pattern)} characters, at most {MAX_PATTERN_LENGTH}): "
            f"{echo(pattern, 60)}"
        )
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise InvalidPattern(f"invalid scope pattern {echo(pattern)}: {cut(detail, 300)}") from exc


def scope_matches(regex: re2._Regexp, name: str, match: str = "full") -> bool:
    """Whether ``name`` is in scope: the whole name (``full``) or a match from its start (``prefix``,
    the behaviour of TensorFlow 1's ``get_collection(..., scope=...)``)."""
    if match == "full":
        return regex.fullmatch(name) is not None
    if match == "prefix":
        return regex.match(name) is not None
    raise InvalidPattern(f"invalid match mode {echo(match)}: expected one of {', '.join(MATCH_MODES)}")


def select_layers(names: Sequence[str], pattern: str, *, match: str = "full",
                  require_match: bool = True) -> Selection:
    """Split ``names`` into those the scope ``pattern`` selects and the rest, keeping their order.

    Args:
        names: layer names in model order.
        pattern: a regular expression (RE2 syntax).
        match: ``"full"`` (default; the whole name must match) or ``"prefix"``.
        require_match: raise :class:`NoLayersMatched` when nothing matches (set False for a dry run).

    Raises:
        InvalidPattern: the pattern is empty, too long or not a valid expression, or ``match`` is unknown.
        NoLayersMatched: nothing matched and ``require_match`` is set; the message lists the layer names.
    """
    regex = compile_scope(pattern)
    matched = tuple(n for n in names if scope_matches(regex, n, match))
    if require_match and not matched:
        raise NoLayersMatched(
            f"scope {echo(pattern)} ({match} match) matched no layer; layers are: "
            f"{cut(', '.join(names), 1000) or '(none)'}"
        )
    chosen = set(matched)
    return Selection(pattern, match, matched, tuple(n for n in names if n not in chosen))
