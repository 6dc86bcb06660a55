"""Settings from ``REUSE_*`` environment variables; command-line flags override them."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from reuse.errors import InvalidInput
from reuse.text import echo

DEFAULT_STORE = Path("models")
ENV_STORE = "REUSE_STORE"
ENV_TOKEN = "REUSE_TOKEN"
ENV_SERVER = "REUSE_SERVER"


# ``SCHEME://`` at the start of a store location: a URL, never a folder name (``a:b`` stays a folder).
_URL_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
STORE_KINDS = "a folder path"


def store_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The store location: the explicit value, else ``$REUSE_STORE``, else ``./models``.

    Raises:
        InvalidInput: a ``SCHEME://`` URL whose scheme is not supported (checked before anything is
            written, so ``gs://b/p`` never becomes a folder named ``gs:``).
    """
    value = os.fspath(explicit) if explicit else os.environ.get(ENV_STORE) or ""
    if not value:
        return DEFAULT_STORE
    m = _URL_RE.match(value)
    if m:
        raise InvalidInput(f"unsupported store URL scheme {m.group(1)!r} in {echo(value)}; "
                           f"supported: {STORE_KINDS}")
    return Path(value)


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8500
    max_message_bytes: int = 64 * 1024 * 1024
    max_batch_size: int = 64
    max_batch_delay_ms: float = 1.0
    workers: int = 2
    cache_mb: int = 1024
    max_upload_mb: int = 2048
