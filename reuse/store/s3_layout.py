"""The names and small objects of an ``s3://`` store (docs/store-format.md): per model ``NAME/`` and version
number N, ``vN.claim`` (a writer's claim on the number), ``vN.h5`` (the version file), ``vN.json`` (the
sidecar: the version's row, checksum and architecture, whose conditional creation makes the version
exist) and ``vN.deleted`` (a tombstone)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reuse.errors import StoreCorrupt
from reuse.names import is_model_name
from reuse.store import h5file
from reuse.store.index import IndexRow, Key
from reuse.store.records import layers_from_meta
from reuse.store.s3_objects import ObjectInfo
from reuse.text import cut, echo

SIDECAR_FORMAT = 1
MAX_SIDECAR_BYTES = 64 * 1024**2  # a sidecar is metadata: the largest architectures' configs are a few MB
SHA256_RE = re.compile(r"[0-9a-f]{64}")
OBJECT_RE = re.compile(r"([^/]+)/v([1-9][0-9]{0,17})\.(h5|json|claim|deleted)")
Objects = dict[Key, dict[str, ObjectInfo]]  # (name, N) -> {"h5"|"json"|"claim"|"deleted": object}


def object_key(key: Key, kind: str) -> str:
    return f"{key[0]}/v{key[1]}.{kind}"


def group_objects(objs: dict[str, ObjectInfo]) -> tuple[Objects, list[str]]:
    """The store's objects by version, and the keys that are no part of the layout (strays)."""
    grouped: Objects = {}
    strays = []
    for rel, info in objs.items():
        m = OBJECT_RE.fullmatch(rel)
        if m and is_model_name(m.group(1)):
            grouped.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = info
        else:
            strays.append(rel)
    return grouped, sorted(strays)


def visible(parts: dict[str, ObjectInfo]) -> bool:
    return "json" in parts and "deleted" not in parts


@dataclass(frozen=True)
class Sidecar:
    """What a version's ``vN.json`` holds: its row, the object's SHA-256 and its architecture."""

    row: IndexRow
    sha256: str
    model_config: str
    model_config_sha256: str

    def same(self, other: Sidecar) -> bool:
        """Whether two sidecars say the same of a version (the time they were written aside)."""
        def facts(s: Sidecar) -> tuple[Any, ...]:
            return (s.row.size, s.sha256, s.model_config, s.model_config_sha256,
                    json.dumps(s.row.meta, sort_keys=True))
        return facts(self) == facts(other)


def sidecar_text(key: Key, local: Path, meta: dict[str, Any]) -> bytes:
    """The sidecar of the finished version file ``local`` (its size, checksum, config and metadata)."""
    with h5file.open_read(local) as f:
        config = h5file.model_config_text(f, local)
    body = {"format": SIDECAR_FORMAT, "name": key[0], "version": key[1], "size": local.stat().st_size,
            "sha256": h5file.file_sha256(local), "mtime_ns": time.time_ns(), "model_config": config,
            "model_config_sha256": h5file.sha256_bytes(config.encode()),
            "meta": {**meta, "name": key[0], "version": key[1]}}
    return json.dumps(body, sort_keys=True).encode()


def parse_sidecar(text: bytes, key: Key, url: str, *, limit: int = MAX_SIDECAR_BYTES) -> Sidecar:
    """A sidecar read from the bucket: untrusted input, so anything but the shape we write (of at most
    ``limit`` bytes) is StoreCorrupt."""
    if len(text) > limit:
        raise StoreCorrupt(f"{url}: {len(text)} bytes, more than a sidecar may have ({limit})")
    try:
        body = json.loads(text)
        if not isinstance(body, dict) or not isinstance(body.get("meta"), dict):
            raise TypeError("not a JSON object with a 'meta' object")
        size, sha = int(body["size"]), str(body["sha256"])
        if size < 0 or not SHA256_RE.fullmatch(sha):
            raise ValueError(f"size {echo(body['size'], 40)} or sha256 {echo(sha, 80)} is not a size or "
                             "a SHA-256")
        side = Sidecar(IndexRow(key[0], key[1], size, int(body.get("mtime_ns", 0)), body["meta"]),
                       sha, str(body["model_config"]), str(body["model_config_sha256"]))
        layers_from_meta(side.row.meta)  # the rows `reuse layers` and `show` make of it
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        raise StoreCorrupt(f"{url}: unreadable sidecar metadata: {cut(str(exc), 200)}") from None
    if (side.row.meta.get("name"), side.row.meta.get("version")) != key:
        raise StoreCorrupt(f"{url}: the sidecar names {echo(side.row.meta.get('name'), 80)}:"
                           f"{echo(side.row.meta.get('version'), 40)}, but lies where "
                           f"{key[0]}:{key[1]} belongs")
    return side

