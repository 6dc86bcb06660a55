"""Page-cache helper shared by the benchmarks that time cold reads."""

from __future__ import annotations

import os
from pathlib import Path


def evict(path: Path) -> bool:
    """Drop the file's pages from the page cache (clean pages only; no root needed).

    Returns False where the platform has no ``posix_fadvise`` (the read is then warm, not cold).
    """
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True
