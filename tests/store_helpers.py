"""Shared helpers for the store tests: genuine tf.keras 2 files, byte flipping, concurrent registrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py

WORKER = Path(__file__).with_name("store_worker.py")
_LEGACY: dict[str, Path] = {}


def legacy_dir(tmp_path_factory) -> Path:
    """A folder with tf.keras 2 .h5 files written by the tf-keras package in a separate process."""
    if "dir" not in _LEGACY:
        out = tmp_path_factory.mktemp("tf2")
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run([sys.executable, str(WORKER), "legacy", str(out)], env=env,
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip().startswith("2."), proc.stdout  # really tf.keras 2
        _LEGACY["dir"] = out
    return _LEGACY["dir"]


def flip_byte(path: Path, dataset: str, at: int = 0) -> None:
    """Flip one byte of a dataset's raw data inside the file, found through HDF5's own offset."""
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    assert offset is not None
    with open(path, "r+b") as fh:
        fh.seek(offset + at)
        b = fh.read(1)
        fh.seek(offset + at)
        fh.write(bytes([b[0] ^ 0x40]))


def concurrent_registers(root: str, name: str, per_process: int, processes: int,
                         env: dict[str, str] | None = None, timeout: float = 300) -> list[str]:
    """Start ``processes`` store_worker.py registrations of ``per_process`` versions each at once on
    ``root`` (a folder or an s3:// URL); return every reference they printed."""
    procs = [subprocess.Popen([sys.executable, str(WORKER), "register", root, name, str(per_process)],
                              env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    refs: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-2000:]
        refs += out.split()
    return refs
