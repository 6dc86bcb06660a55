"""The frozen-feature cache: a network's frozen, deterministic leading part computed once over the data.

:func:`reuse.train.train` splits a network where its frozen part ends (:mod:`reuse.train.network`) and
trains only the rest, on the frozen part's output for every row: the *features*. They are computed in
one streaming pass (:func:`feature_pass`: batches sized from the memory budget, read ahead, with
progress events) and kept

- **in memory** when they take at most :data:`IN_MEMORY_SHARE` of what the memory budget leaves, else
- **on disk**, as ``.npy`` files in the cache's folder (a temporary folder removed afterwards, unless a
  folder to keep them in was given), read back by rows: epochs then read features, never the images;
- **nowhere** when they would not fit the disk either (free space less :data:`DISK_RESERVE`):
  :meth:`FeatureCache.features` returns ``None`` and training runs the frozen part every epoch.

One cache serves several runs: the seeds of one candidate, or the frozen and fine-tuned variants of one
reuse depth in the advisor. An entry is found only for the same data (by content: see
:func:`reuse.data.rows.fingerprint`) and prefix layers with the same names *and* weight values, so a run
whose frozen layers hold other weights never reads another's features. Entries on disk are shared
between processes (the advisor's workers) through the folder: the first process computes an entry under
a file lock, the others wait and read it.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reuse.data.rows import fingerprint, npy_rows, rows_of
from reuse.errors import Cancelled
from reuse.memory import fmt_bytes, process_budget
from reuse.train.events import FeaturePass, ProgressCallback
from reuse.train.footprint import output_bytes

IN_MEMORY_SHARE = 0.25
DISK_RESERVE = 1024**3
PROGRESS_SECONDS = 0.5


def weights_digest(layers: Sequence[Any]) -> str:
    """A digest of the layers' names and the shapes and values of their weights (not of random seed
    states: the cached part is deterministic, and Keras names seed generators by a process-wide count)."""
    from keras import ops

    from reuse.train.network import seed_generator_states

    h = hashlib.blake2b(digest_size=16)
    for layer in layers:
        seeds = {id(s) for s in seed_generator_states(layer)}
        h.update(layer.name.encode())
        for i, v in enumerate(v for v in layer.variables if id(v) not in seeds):
            arr = np.ascontiguousarray(ops.convert_to_numpy(v.value))
            h.update(str((i, arr.shape, arr.dtype.str)).encode())
            h.update(arr.tobytes())
    return h.hexdigest()


@dataclass
class Features:
    """The frozen part's outputs for the training rows (``x``) and validation rows (``xv``): one array
    or row source per cut tensor (a tuple when there are several), in memory or on disk."""

    x: Any
    xv: Any
    on_disk: bool
    nbytes: int
    seconds: float = 0.0


class FeatureCache:
    """Features of frozen prefixes, in memory or in ``folder`` on disk, shared by the runs given it.

    Args:
        folder: where feature files go; default a temporary folder made on first need.
        keep: leave the files in ``folder`` when the cache is closed (and reuse files found there).
        on_disk: put every entry on disk (entries shared between processes).
    """

    def __init__(self, folder: str | Path | None = None, *, keep: bool = False,
                 on_disk: bool = False) -> None:
        self._folder = Path(folder) if folder is not None else None
        self.keep = keep
        self.on_disk = on_disk or keep
        self._made: Path | None = None
        self._entries: dict[str, Features | None] = {}
        self._fps: dict[int, tuple[Any, str]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def folder(self) -> Path:
        """The folder feature files go to (made now if it is a temporary one)."""
        if self._folder is not None:
            self._folder.mkdir(parents=True, exist_ok=True)
            return self._folder
        if self._made is None:
            self._made = Path(tempfile.mkdtemp(prefix="reuse-features-"))
            # Removed by close(), or when the cache is dropped or the process exits, whichever is first.
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._made, True)
        return self._made

    def _fingerprint(self, x: Any) -> str:
        # An array in memory is hashed once per object (runs share the objects).
        if x is None:
            return ""
        with self._lock:
            held = self._fps.get(id(x))
            if held is not None and held[0] is x:
                return held[1]
        fp = fingerprint(x)
        with self._lock:
            self._fps[id(x)] = (x, fp)
        return fp

    def key(self, layers: Sequence[Any], x: Any, xv: Any, view: Any = None) -> str:
        parts = (self._fingerprint(x), self._fingerprint(xv), tuple(v.name for v in layers),
                 weights_digest(layers))
        if view is not None:
            augmenter, k = view
            parts += (augmenter.spec.to_string(), augmenter.seed, k)
        return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()

    def features(self, prefix: Any, layers: Sequence[Any], x: Any, xv: Any, *,
                 progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
                 phase: Any = None, view: tuple[Any, int] | None = None) -> Features | None:
        """The features of ``prefix`` (a model from the inputs to the cut) on ``x`` and ``xv``: found,
        or computed now; ``None`` when they fit neither memory nor disk. ``view``: ``(augmenter, k)``
        computes the ``k``-th augmented view of ``x`` (and no ``xv``) instead.

        Raises:
            ResourceExhausted: not even one row of the prefix's pass fits the memory budget.
            Cancelled: ``cancel`` was set during the pass.
        """
        key = self.key(layers, x, xv, view)
        with self._lock:
            if key in self._entries:
                self.hits += 1
                return self._entries[key]
        got = self._from_disk(key)
        if got is None:
            self.misses += 1
            got = self._compute(key, prefix, x, xv, progress, cancel, phase, view)
        else:
            self.hits += 1
        with self._lock:
            self._entries[key] = got
        return got

    def _entry_dir(self, key: str) -> Path:
        return self.folder / key

    def _from_disk(self, key: str) -> Features | None:
        if not self.on_disk:
            return None
        d = self._entry_dir(key)
        if not (d / "done").exists():
            return None
        return _open_entry(d)

    def _compute(self, key: str, prefix: Any, x: Any, xv: Any, progress: Any, cancel: Any,
                 phase: Any, view: Any = None) -> Features | None:
        n, nv = rows_of(x), (rows_of(xv) if xv is not None else 0)
        width = output_bytes(prefix)
        need = (n + nv) * width
        budget = process_budget()
        part = "train" if view is None else f"augmented view {view[1] + 1}"
        if not self.on_disk and need <= budget.available() * IN_MEMORY_SHARE:
            with budget.reserve(need):
                t0 = time.perf_counter()
                fx = feature_pass(prefix, x, None, progress=progress, cancel=cancel, phase=phase, part=part,
                                  view=view)
                fxv = (feature_pass(prefix, xv, None, progress=progress, cancel=cancel,
                                    phase=phase, part="val")
                       if xv is not None else None)
                return Features(fx, fxv, False, need, time.perf_counter() - t0)
        folder = self.folder
        free = shutil.disk_usage(folder).free
        if need > free - DISK_RESERVE:
            if progress:
                progress(FeaturePass(0, n, 0.0, 0.0, f"not cached: the features need {fmt_bytes(need)} on "
                                     f"disk, {fmt_bytes(max(0, free - DISK_RESERVE))} is free in {folder}; "
                                     "running the frozen part every epoch", **_phase(phase)))
            return None
        import filelock

        d = self._entry_dir(key)
        with filelock.FileLock(str(folder / f"{key}.lock")):
            if (d / "done").exists():  # another process computed it meanwhile
                return _open_entry(d)
            if d.exists():
                shutil.rmtree(d)  # a half-written entry of a process that stopped
            d.mkdir(parents=True)
            t0 = time.perf_counter()
            feature_pass(prefix, x, d / "train", progress=progress, cancel=cancel, phase=phase,
                         part=part, view=view)
            if xv is not None:
                feature_pass(prefix, xv, d / "val", progress=progress, cancel=cancel, phase=phase, part="val")
            (d / "done").write_text(f"{time.perf_counter() - t0:.3f}\n")
        return _open_entry(d)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._fps.clear()

    def close(self) -> None:
        """Forget every entry; remove the feature files unless they are to be kept."""
        self.clear()
        if self._made is not None:
            self._finalizer()
            self._made = None

    def __len__(self) -> int:
        return len(self._entries)


def feature_cache(config: Any) -> FeatureCache:
    """The cache a run with ``config`` uses: in ``config.features_dir``, kept, when one is given."""
    folder = getattr(config, "features_dir", None)
    return FeatureCache(folder, keep=True) if folder else FeatureCache()


def _phase(phase: Any) -> dict[str, int]:
    return {"phase": getattr(phase, "phase", 1), "phases": getattr(phase, "phases", 1)}


def _open_entry(d: Path) -> Features:
    def part(prefix: str) -> Any:
        files = sorted(d.glob(f"{prefix}-*.npy"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        if not files:
            return None
        got = tuple(npy_rows(f) for f in files)
        return got if len(got) > 1 else got[0]

    x, xv = part("train"), part("val")
    nbytes = sum(f.stat().st_size for f in d.glob("*.npy"))
    return Features(x, xv, True, nbytes)


def feature_pass(prefix: Any, x: Any, dest: Path | None, *, progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None, phase: Any = None, part: str = "train",
                 view: tuple[Any, int] | None = None) -> Any:
    """``prefix``'s outputs for every row of ``x``, in one streaming pass: into memory (``dest`` None)
    or into ``dest-<i>.npy`` files (one per output), returned as row sources over them. ``view``:
    ``(augmenter, k)`` augments each batch of VIEW_ROWS rows first, its random state set from ``(k,
    batch number)``, so a view does not depend on the memory budget (unless not even VIEW_ROWS fit).

    Raises:
        ResourceExhausted: not even one row fits the memory budget.
        Cancelled: ``cancel`` was set.
    """
    from reuse.backend import active
    from reuse.train.infer import Predictor, rows_for_pass

    n = rows_of(x)
    rows = rows_for_pass(prefix)
    if view is not None:  # one draw of the augmentation per VIEW_ROWS rows: the same views at any budget
        from reuse.train.augment import VIEW_ROWS

        rows = min(rows, VIEW_ROWS)
    # A single short pass is cheaper eager on backends that trace slowly; a long one compiled.
    compiled = not active().EAGER_ONE_SHOT or n > 2 * rows
    forward, before = None, None
    if view is not None:
        from reuse.train.augment import ViewForward

        augmenter, k = view
        forward = ViewForward(prefix, augmenter)

        def before(i: int, augmenter: Any = augmenter, k: int = k) -> None:
            augmenter.reseed(k, i)

    predictor = Predictor(prefix, batch_size=rows, compiled=compiled or view is not None, forward=forward)
    shapes = [tuple(int(d) for d in t.shape[1:]) for t in prefix.outputs]
    dtypes = [np.dtype(str(t.dtype)) for t in prefix.outputs]
    where = "memory" if dest is None else str(dest.parent)
    outs: list[Any] = []
    files: list[Any] = []
    if dest is None:
        outs = [np.empty((n, *s), dt) for s, dt in zip(shapes, dtypes, strict=True)]
    else:
        for i, (s, dt) in enumerate(zip(shapes, dtypes, strict=True)):
            fh = open(f"{dest}-{i}.npy", "wb")  # noqa: SIM115 - closed below, after the pass
            np.lib.format.write_array_header_2_0(fh, {"descr": np.lib.format.dtype_to_descr(dt),
                                                       "fortran_order": False, "shape": (n, *s)})
            files.append(fh)
    t0 = last = time.perf_counter()
    label = f"frozen features ({part})"
    if progress:
        progress(FeaturePass(0, n, 0.0, 0.0, f"{label} -> {where}", **_phase(phase)))
    try:
        for lo, hi, got in predictor.batches(x, before):
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled while computing frozen features; nothing was registered")
            for i, arr in enumerate(got):
                arr = np.ascontiguousarray(arr, dtype=dtypes[i])
                if dest is None:
                    outs[i][lo:hi] = arr
                else:
                    files[i].write(arr.tobytes())
            now = time.perf_counter()
            if progress and (now - last >= PROGRESS_SECONDS or hi == n):
                last = now
                rate = hi / max(now - t0, 1e-9)
                progress(FeaturePass(hi, n, now - t0, (n - hi) / rate, f"{label} -> {where}",
                                     **_phase(phase)))
    finally:
        for fh in files:
            fh.close()
    if dest is None:
        return tuple(outs) if len(outs) > 1 else outs[0]
    got = tuple(npy_rows(f"{dest}-{i}.npy") for i in range(len(shapes)))
    return got if len(got) > 1 else got[0]
