"""Settings from ``REUSE_*`` environment variables; command-line flags override them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STORE = Path("models")
ENV_STORE = "REUSE_STORE"
ENV_TOKEN = "REUSE_TOKEN"
ENV_SERVER = "REUSE_SERVER"


def store_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The store folder: the explicit value, else ``$REUSE_STORE``, else ``./models``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_STORE)
    return Path(env) if env else DEFAULT_STORE


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
