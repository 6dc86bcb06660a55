"""The one way files are written: a temporary file in the destination's folder, fsync, then a rename
(``os.replace``) or, where an existing file must not be replaced, a no-clobber hard link; the folder
is fsynced after, so the rename survives a crash. A reader sees the old file or the whole new one.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reuse.errors import AlreadyExists


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_beside(path: Path, suffix: str = "") -> Path:
    """A fresh hidden temporary name in ``path``'s folder (same file system, so the rename is atomic).

    ``suffix`` lets writers that pick their format by the name (NumPy, Keras) see the right ending.
    """
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex}{suffix}")


def put_in_place(tmp: Path, path: Path, *, overwrite: bool = True) -> None:
    """fsync ``tmp``, move it to ``path`` and fsync the folder.

    Raises:
        AlreadyExists: ``path`` exists (or appears meanwhile) and not ``overwrite``.
    """
    fsync_path(tmp)
    if overwrite:
        os.replace(tmp, path)
    else:
        _link_no_clobber(tmp, path)
    fsync_path(path.parent)


def _link_no_clobber(tmp: Path, out: Path) -> None:
    """Put ``tmp`` at ``out`` only if ``out`` does not exist, atomically where the filesystem allows."""
    try:
        os.link(tmp, out)
    except FileExistsError as exc:
        raise AlreadyExists(f"{out} exists; pass overwrite (--force) to replace it") from exc
    except OSError:  # no hard links here (some network and FAT filesystems): check, then rename
        if out.exists():
            raise AlreadyExists(f"{out} exists; pass overwrite (--force) to replace it") from None
        os.replace(tmp, out)


@contextmanager
def atomic_path(path: Path, *, suffix: str = "", overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on a clean exit it is put at ``path`` (see :func:`put_in_place`),
    on an exception it is removed and ``path`` is left as it was."""
    tmp = temp_beside(path, suffix)
    try:
        yield tmp
        put_in_place(tmp, path, overwrite=overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON (sorted keys) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, sort_keys=True)
