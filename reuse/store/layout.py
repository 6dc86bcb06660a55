"""The names of the files in a model's folder (docs/store-format.md), in one place: ``v<N>.h5`` version
files, ``v<N>.deleted`` tombstones, and ``.tmp-<pid>-<hex>.h5`` files of writers still at work (or killed
before they finished: the next write to the folder sweeps those)."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

VERSION_FILE_RE = re.compile(r"v([1-9][0-9]{0,17})\.h5")
TOMBSTONE_RE = re.compile(r"v([1-9][0-9]{0,17})\.deleted")
TEMP_PREFIX = ".tmp-"
TEMP_FILE_RE = re.compile(r"\.tmp-([0-9]+)-[0-9a-f]{32}\.h5")


def version_file(folder: Path, version: int) -> Path:
    return folder / f"v{version}.h5"


def tombstone(folder: Path, version: int) -> Path:
    return folder / f"v{version}.deleted"


def temp_file(folder: Path) -> Path:
    """A fresh temp file name for this process; its pid tells the sweeper whether the writer is alive."""
    return folder / f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}.h5"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files in one model folder whose writer process is gone; call with the store lock.

    A killed writer leaves its partial temp file behind. That is not damage (nothing visible refers to
    it), so the next write to the folder removes it. Only a dead pid counts here, never age: a live
    writer may take long. Returns the removed files.
    """
    removed = []
    for p in folder.glob(".tmp-*.h5"):
        m = TEMP_FILE_RE.fullmatch(p.name)
        if m and not pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
