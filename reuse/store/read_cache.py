"""A size-bounded local cache of whole version files, keyed by their SHA-256 and verified on every use.

A server that restarts, or loads a version a second time, reads it from this machine's disk instead of
the network. Entries are ``<sha256>.h5`` files written atomically (a temp file, fsync, rename); one whose
content no longer hashes to its name is deleted and fetched again. Past the size limit the least
recently used entries go (by modification time, refreshed on each use).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from reuse.atomic import put_in_place, temp_beside
from reuse.config import ENV_S3_CACHE_MB, env_number
from reuse.errors import StoreCorrupt
from reuse.store.h5file import file_sha256
from reuse.store.layout import pid_alive
from reuse.text import echo

log = logging.getLogger(__name__)
DEFAULT_CACHE_MB = 4096
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_TEMP_PID_RE = re.compile(r"\.tmp-([0-9]{1,9})-")  # reuse.atomic.temp_beside names


def cache_limit_bytes() -> int:
    """``REUSE_S3_CACHE_MB`` (default 4096) in bytes; 0 keeps nothing past its use."""
    return int(env_number(ENV_S3_CACHE_MB, DEFAULT_CACHE_MB, "megabytes", zero_ok=True) * 1024**2)


class ReadCache:
    """Whole files under ``folder``, at most ``limit`` bytes in all (the newest entry is always kept).

    Several processes may share the folder (one ``REUSE_STATE``): each use gets a private hard link to
    the entry (:meth:`use`), so another process trimming or replacing the entry cannot pull the file away.
    """

    def __init__(self, folder: Path, limit: int | None = None) -> None:
        self.folder = folder
        self.limit = cache_limit_bytes() if limit is None else limit

    def path(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
            raise ValueError(f"a cache key is a hex SHA-256; {echo(sha256, 80)} is not a SHA-256")
        return self.folder / f"{sha256}.h5"

    @contextmanager
    def use(self, sha256: str, fetch: Callable[[Path], None], what: str) -> Iterator[Path]:
        """A private, verified local file with content ``sha256`` for the duration of the block."""
        mine = self.get(sha256, fetch, what, private=True)
        try:
            yield mine
        finally:
            mine.unlink(missing_ok=True)

    def get(self, sha256: str, fetch: Callable[[Path], None], what: str, *, private: bool = False) -> Path:
        """The verified local file with content ``sha256``; ``fetch(dest)`` writes it when missing. With
        ``private``, a hard link of it only this caller uses (the caller removes it).

        Raises:
            StoreCorrupt: the fetched content does not hash to ``sha256`` (``what`` names the source).
        """
        p = self.path(sha256)
        self.folder.mkdir(parents=True, exist_ok=True)
        mine = temp_beside(p, ".h5")
        try:
            if _link(p, mine):
                if file_sha256(mine) == sha256:
                    os.utime(p if p.exists() else mine)
                    return mine if private else p
                log.warning("cached copy %s is damaged; fetching %s again", p, what)
                if _same_file(p, mine):
                    p.unlink(missing_ok=True)
                mine.unlink()
            fetch(mine)
            got = file_sha256(mine)
            if got != sha256:
                raise StoreCorrupt(f"{what}: checksum mismatch (object sha256 {got[:12]}..., its "
                                   f"metadata says {sha256[:12]}...); the object is damaged")
            tmp = temp_beside(p, ".h5")
            _link(mine, tmp)
            put_in_place(tmp, p)
        except BaseException:
            mine.unlink(missing_ok=True)
            raise
        self._trim(keep=p)
        if private:
            return mine
        mine.unlink(missing_ok=True)
        return p

    def _trim(self, keep: Path) -> None:
        entries = []
        for q in self.folder.glob("*.h5"):
            if len(q.stem) != 64:  # a temp file of a fetch in progress, or a link in use
                m = _TEMP_PID_RE.search(q.name)
                if m and not pid_alive(int(m.group(1))):  # its process was killed: free the space
                    q.unlink(missing_ok=True)
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


def _link(src: Path, dest: Path) -> bool:
    """Hard-link ``src`` as ``dest`` (a copy where the file system has no hard links); False when there
    is no ``src``."""
    try:
        os.link(src, dest)
    except FileNotFoundError:
        return False
    except OSError:
        try:
            shutil.copyfile(src, dest)
        except FileNotFoundError:
            return False
    return True


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except FileNotFoundError:
        return False
