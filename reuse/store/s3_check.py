"""``reuse store check [--repair]`` for an ``s3://`` store: verify every version object against its sidecar.

Each visible version's object is downloaded once (to a temp file in the state folder) and checked: its
whole SHA-256 and size against the sidecar, then the metadata, the config and every weight's checksum,
as for a folder. Found besides: sidecars that disagree with their object (``mismatched``), sidecars
whose object is gone (``stale``), leftovers of killed writers (a claim and maybe an ``.h5`` without a
sidecar) and of interrupted deletes (notes, not damage), and objects the layout does not know (strays).

``--repair`` rewrites disagreeing sidecars from their objects, tombstones versions whose object is gone,
deletes the leftovers of writers that are gone and aborts their unfinished multipart uploads. Damaged
version objects are never deleted, only reported.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from reuse.errors import NotFound, StoreCorrupt
from reuse.store import h5file
from reuse.store.index import Key
from reuse.store.layout import pid_alive, temp_file
from reuse.store.records import CheckReport, FileCheck
from reuse.store.s3_layout import parse_sidecar

# A claim of a writer on another machine (whose process we cannot see) counts as abandoned after this.
CLAIM_MAX_AGE_S = 3600.0
CLAIM_MAX_BYTES = 64 * 1024  # ours are under 200 bytes


def _ref(key: Key) -> str:
    return f"{key[0]}:{key[1]}"


def _abandoned(store: Any, key: Key, parts: dict[str, Any]) -> bool:
    """Whether the writer of a version without a sidecar is gone (same host and dead pid, or too old)."""
    claim = parts.get("claim")
    if claim is None:
        return True  # an object without a claim was not written by a reuse writer in progress
    try:  # a claim is read from the bucket: untrusted, so anything odd counts as no claim body
        body = json.loads(store.bucket.get(f"{key[0]}/v{key[1]}.claim", limit=CLAIM_MAX_BYTES,
                                           what="a claim"))
        host, pid, started = str(body["host"]), int(body["pid"]), float(body["started"])
        if host == socket.gethostname() and not pid_alive(pid):
            return True
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError, NotFound, StoreCorrupt):
        return time.time() - claim.mtime_ns / 1e9 > CLAIM_MAX_AGE_S
    return time.time() - started > CLAIM_MAX_AGE_S


def _verify(store: Any, key: Key, parts: dict[str, Any]) -> tuple[FileCheck, bytes | None]:
    """The verdict on one version object, and the sidecar it calls for when it differs from the current
    one."""
    where = store._where(key)
    tmp = temp_file(store._staging(key[0]))
    try:
        store.bucket.download(f"{key[0]}/v{key[1]}.h5", tmp)
        try:
            want = store.sidecar_from_object(key, tmp)
            nbytes = h5file.verify_file(tmp, where)
        except (StoreCorrupt, NotFound) as exc:
            return FileCheck(_ref(key), where, False, str(exc).replace(str(tmp), where)), None
        return FileCheck(_ref(key), where, True, None, nbytes), want if _disagrees(
            store, key, parts, want
        ) else None
    finally:
        tmp.unlink(missing_ok=True)


def _disagrees(store: Any, key: Key, parts: dict[str, Any], want: bytes) -> bool:
    """Whether the sidecar is unreadable or says other than the object does (the object is the truth)."""
    try:
        have = store._sidecar(key, parts["json"])
    except (StoreCorrupt, NotFound):
        return True
    return not have.same(parse_sidecar(want, key, store.bucket.url_of(f"{key[0]}/v{key[1]}.json")))


def _leftover(store: Any, key: Key, kind: str) -> str:
    """How a leftover is named in the report: its URL (an unfinished upload says so)."""
    if kind == "upload":
        return f"{store.bucket.url_of(f'{key[0]}/v{key[1]}.h5')} (unfinished multipart upload)"
    return store.bucket.url_of(f"{key[0]}/v{key[1]}.{kind}")


def check_s3_store(store: Any, *, repair: bool = False) -> CheckReport:
    grouped, strays = store.objects()
    uploads = store.bucket.uploads()
    files: list[FileCheck] = []
    mismatched: list[str] = []
    stale: list[str] = []
    leftovers: list[tuple[Key, list[str]]] = []  # keys of killed writers and interrupted deletes
    fixes: dict[Key, bytes] = {}
    for key, parts in sorted(grouped.items()):
        if "deleted" in parts:
            extra = [k for k in ("json", "h5") if k in parts]
            if extra:
                leftovers.append((key, extra))
            continue
        if "json" not in parts:
            h5 = f"{key[0]}/v{key[1]}.h5"
            kinds = (["h5"] if "h5" in parts else []) + (["upload"] if h5 in uploads else [])
            if kinds and _abandoned(store, key, parts):
                leftovers.append((key, kinds))
            continue
        if "h5" not in parts:
            stale.append(_ref(key))
            continue
        fc, want = _verify(store, key, parts)
        files.append(fc)
        if want is not None:
            mismatched.append(_ref(key))
            fixes[key] = want
    notes = [_leftover(store, k, kind) for k, kinds in leftovers for kind in kinds]
    removed: list[str] = []
    if repair:
        for key, body in fixes.items():
            store.bucket.put(f"{key[0]}/v{key[1]}.json", body)
        for ref in stale:
            name, _, v = ref.rpartition(":")
            store.bucket.put(f"{name}/v{v}.deleted", b"", create=True)
            store.bucket.delete(f"{name}/v{v}.json")
        for key, kinds in leftovers:
            for kind in kinds:
                rel = f"{key[0]}/v{key[1]}.{'h5' if kind == 'upload' else kind}"
                if kind == "upload":
                    for upload_id in uploads.get(rel, []):
                        store.bucket.abort(rel, upload_id)
                else:
                    store.bucket.delete(rel)
                removed.append(_leftover(store, key, kind))
    return CheckReport(
        root=store.root,
        files=tuple(files),
        stale_in_index=tuple(stale),
        mismatched_in_index=tuple(mismatched),
        temp_files=tuple(notes),
        stray_files=tuple(store.bucket.url_of(s) for s in strays),
        repaired=repair,
        removed_temp_files=tuple(removed),
    )


def rebuild_sidecars(store: Any) -> int:
    """Rewrite each visible version's sidecar from its object where they disagree; return the count."""
    report = check_s3_store(store, repair=True)
    return sum(1 for f in report.files if f.ok)
