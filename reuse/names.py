"""Model names and references (``name`` or ``name:version``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from reuse.errors import InvalidName
from reuse.text import echo

# Anchored, ASCII only: no separators, no "..", nothing that can leave the store folder.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and "١" (which int() reads as 1).
VERSION_RE = re.compile(r"[0-9]{1,18}")


def parse_version(text: str) -> int | None:
    """The version number ``text`` spells (ASCII digits, at least 1), or None when it is not one.

    The one parser of versions, for ``NAME:VERSION`` refs and the v2 protocol's version strings alike.
    """
    if not isinstance(text, str) or not VERSION_RE.fullmatch(text):
        return None
    number = int(text)
    return number if number >= 1 else None


def is_model_name(name: str) -> bool:
    """Whether ``name`` is a valid model name (a folder of the store, rather than a stray)."""
    return isinstance(name, str) and bool(NAME_RE.fullmatch(name)) and ".." not in name


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`InvalidName`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidName(
            f"invalid model name {echo(name)}: expected 1-64 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit, and no '..'"
        )
    return name


class Versioned:
    """A record of one stored version, by its ``name`` and ``version``: its reference ``NAME:VERSION``."""

    name: str
    version: int

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class ModelRef:
    """A model name and an optional version (``None`` means the latest)."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str | ModelRef) -> ModelRef:
        """Parse ``NAME`` or ``NAME:VERSION``."""
        if isinstance(text, ModelRef):
            return text
        name, sep, ver = str(text).partition(":")
        version: int | None = None
        if sep:
            version = parse_version(ver)
            if version is None:
                raise InvalidName(f"invalid version in {echo(str(text))}: expected a positive integer "
                                  "after ':'")
        return cls(check_name(name), version)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"
