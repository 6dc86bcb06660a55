"""A size-bounded local cache of whole version files, keyed by their SHA-256 and verified on every use.

A server that restarts, or loads a version a second time, reads it from this machine's disk instead of
the network. Entries are ``<sha256>.h5`` files written atomically (a temp file, fsync, rename); one whose
content no longer hashes to its name is deleted and fetched again. Past the size limit the least
recently used entries go (by modification time, refreshed on each use).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from reuse.atomic import put_in_place, temp_beside
from reuse.config import ENV_S3_CACHE_MB
from reuse.errors import InvalidInput, StoreCorrupt
from reuse.store.h5file import file_sha256

log = logging.getLogger(__name__)
DEFAULT_CACHE_MB = 4096


def cache_limit_bytes() -> int:
    """``REUSE_S3_CACHE_MB`` (default 4096) in bytes; 0 keeps nothing past its use."""
    raw = os.environ.get(ENV_S3_CACHE_MB, "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_CACHE_MB
    except ValueError:
        raise InvalidInput(f"{ENV_S3_CACHE_MB} must be a number of megabytes; received {raw!r}") from None
    if mb < 0:
        raise InvalidInput(f"{ENV_S3_CACHE_MB} must not be negative; received {raw!r}")
    return int(mb * 1024**2)


class ReadCache:
    """Whole files under ``folder``, at most ``limit`` bytes in all (the newest entry is always kept)."""

    def __init__(self, folder: Path, limit: int | None = None) -> None:
        self.folder = folder
        self.limit = cache_limit_bytes() if limit is None else limit

    def path(self, sha256: str) -> Path:
        return self.folder / f"{sha256}.h5"

    def get(self, sha256: str, fetch: Callable[[Path], None], what: str) -> Path:
        """The verified local file with content ``sha256``; ``fetch(dest)`` writes it when missing.

        Raises:
            StoreCorrupt: the fetched content does not hash to ``sha256`` (``what`` names the source).
        """
        p = self.path(sha256)
        if p.is_file():
            if file_sha256(p) == sha256:
                os.utime(p)
                return p
            log.warning("cached copy %s is damaged; fetching %s again", p, what)
            p.unlink(missing_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(p, ".h5")
        try:
            fetch(tmp)
            got = file_sha256(tmp)
            if got != sha256:
                raise StoreCorrupt(f"{what}: checksum mismatch (object sha256 {got[:12]}..., its metadata says "
                                   f"{sha256[:12]}...); the object is damaged")
            put_in_place(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)
        self._trim(keep=p)
        return p

    def _trim(self, keep: Path) -> None:
        entries = []
        for q in self.folder.glob("*.h5"):
            if len(q.stem) != 64:  # a temp file of a fetch in progress
                continue
            try:
                st = q.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime_ns, st.st_size, q))
        total = sum(size for _, size, _ in entries)
        for _, size, q in sorted(entries):
            if total <= self.limit:
                break
            if q != keep:
                q.unlink(missing_ok=True)
                total -= size
