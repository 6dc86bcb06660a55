"""ONNX Runtime as a served version's forward pass, and the ONNX files it runs, cached per version.

The ONNX file of a version is derived from the stored version, never a second source of truth: it lives
in the store's private folder, ``.reuse/onnx/<name>/v<N>-<key>.onnx``, where the key hashes the version
file's own checksums (config, metadata, every weight) and the exporter's versions. A missing file is
rebuilt; a version file replaced on disk has a new key, so its old ONNX file is never used (and is
removed when the new one is written); deleting a version removes its files. Every file is written to a
temp file beside it and renamed into place (:mod:`reuse.atomic`), so no reader sees half of one.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from reuse.atomic import atomic_path
from reuse.store.layout import pid_alive

log = logging.getLogger(__name__)
CACHE_DIR = "onnx"
_TEMP_RE = re.compile(r"\..+\.tmp-([0-9]+)-[0-9a-f]{32}\.onnx")


class OnnxForward:
    """An ONNX Runtime session called like :class:`~reuse.backend.compiled.CompiledForward`: a list of
    row-aligned numpy inputs in, a list of numpy outputs out; any batch size, no padding, no retrace."""

    polymorphic = True
    traces = 0

    def __init__(self, session: Any, model: Any = None) -> None:
        self.session = session
        self.model = model
        self._names = [i.name for i in session.get_inputs()]
        self._run = session.run

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if len(arrays) == 1:
            return self._run(None, {self._names[0]: arrays[0]})
        return self._run(None, dict(zip(self._names, arrays, strict=True)))


class OnnxCache:
    """The ONNX files of a store's versions under ``<store>/.reuse/onnx``."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / CACHE_DIR

    def path(self, name: str, version: int, checksum: str, exporter: str) -> Path:
        key = hashlib.sha256(f"{checksum}\n{exporter}".encode()).hexdigest()[:32]
        return self.root / name / f"v{version}-{key}.onnx"

    def get(self, name: str, version: int, checksum: str, exporter: str,
            build: Callable[[Path], None]) -> tuple[Path, bool]:
        """The file for this version's content, built by ``build(tmp_path)`` when missing.

        Returns:
            (path, built): built is True when this call wrote the file.
        """
        path = self.path(name, version, checksum, exporter)
        if path.is_file():
            return path, False
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".onnx") as tmp:
            build(tmp)
        self._remove(name, version, keep=path)
        return path, True

    def forget(self, name: str, version: int) -> list[Path]:
        """Remove every ONNX file of ``name:version`` (after it was deleted from the store)."""
        return self._remove(name, version, keep=None)

    def _remove(self, name: str, version: int, keep: Path | None) -> list[Path]:
        folder = self.root / name
        removed = []
        for p in folder.glob(f"v{version}-*.onnx"):
            if p != keep:
                p.unlink(missing_ok=True)
                removed.append(p)
        for p in folder.glob(".*.onnx"):  # temp files of writers that were killed
            m = _TEMP_RE.fullmatch(p.name)
            if m and not pid_alive(int(m.group(1))):
                p.unlink(missing_ok=True)
        return removed
