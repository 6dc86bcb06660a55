"""Thin fallbacks for store methods that issue 2 adds (``ModelStore.delete``); removed once it lands.

Each function calls the store's own method when it exists and otherwise does the smallest correct
thing through the store's public paths and its lock file.
"""

from __future__ import annotations

import os

from filelock import FileLock

from reuse.store import ModelStore


def delete_version(store: ModelStore, ref: str) -> str:
    """Delete one version; returns ``NAME:VERSION``. Raises NotFound."""
    resolved = str(store.resolve(ref))
    delete = getattr(store, "delete", None)
    if delete is not None:
        delete(resolved)
        return resolved
    path = store.path(resolved)
    store.state_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store.state_dir / "lock")):
        path.unlink()
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return resolved
