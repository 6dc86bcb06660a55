"""Model names and references (``name`` or ``name:version``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from reuse.errors import InvalidName

# Anchored, ASCII only: no separators, no "..", nothing that can leave the store folder.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`InvalidName`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidName(
            f"invalid model name {name!r}: expected 1-64 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit, and no '..'"
        )
    return name


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
            if not ver.isdigit() or int(ver) < 1:
                raise InvalidName(f"invalid version in {text!r}: expected a positive integer after ':'")
            version = int(ver)
        return cls(check_name(name), version)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"
