"""Arrays that need not sit in memory: row sources read a batch of rows at a time.

A data set's feature array is either a NumPy array in memory or a *row source* (:class:`Rows`): it has a
``shape`` and a ``dtype`` like an array, and ``read(index)`` returns the rows at ``index`` as a new
in-memory array. Passes over data read sources batch by batch (:func:`read_rows`, :func:`batches`), so
the whole array is never in memory at once.

Sources here: :class:`FileRows` (a raw C-ordered array inside a file, read with positioned reads: an
``.npy`` file, an uncompressed member of an ``.npz``, the on-disk feature cache), :class:`H5Rows` (an
HDF5 dataset, read by slice) and :class:`IndexedRows` (a subset of another source, e.g. a validation
split). Image folders are a source too (:class:`reuse.data.images.ImageRows`). File sources reopen their
file after pickling, so a worker process can be handed one and read the same file.

Positioned reads (``os.pread``) rather than a memory map: the pages a memory map touches count towards
the process's resident memory until it is unmapped, so reading a 10 GB file through one would grow the
process by up to 10 GB; positioned reads go through the page cache and keep only the batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from reuse.errors import InvalidInput


@runtime_checkable
class Rows(Protocol):
    """A row-addressable array read a batch at a time (row ``i`` is sample ``i``)."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __len__(self) -> int: ...

    def read(self, index: np.ndarray) -> np.ndarray:
        """The rows at ``index`` (1-D integers, any order, repeats allowed) as a new array."""
        ...


class RowSource:
    """What every row source here shares: ``len``, ``ndim``, indexing like an array (``src[3]``,
    ``src[2:5]``, ``src[[0, 4]]`` read those rows) and conversion to an array (``np.asarray(src)`` reads
    every row, refused when that would not fit the memory budget). Subclasses set ``shape``, ``dtype``,
    ``source`` and implement ``read`` and ``fingerprint``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    source: str

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return len(self) * row_nbytes(self)

    def read(self, index: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.read(np.array([key % len(self) if key < 0 else key]))[0]
        if isinstance(key, slice):
            return self.read(np.arange(len(self), dtype=np.int64)[key])
        return self.read(np.arange(len(self), dtype=np.int64)[np.asarray(key)])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        from reuse.errors import ResourceExhausted
        from reuse.memory import fmt_bytes, process_budget

        budget = process_budget()
        if self.nbytes > budget.available() * 0.5:
            raise ResourceExhausted(f"{self.source}: reading all {len(self)} rows at once needs "
                                    f"{fmt_bytes(self.nbytes)}, more than the memory budget leaves "
                                    f"({budget.origin}); it is read a batch at a time instead")
        out = self.read(np.arange(len(self), dtype=np.int64))
        return out if dtype is None else out.astype(dtype, copy=False)


class _Reopens:
    """A source holding an open file handle (``_HANDLE``) behind a lock: pickled without either, so the
    process that unpickles it opens the file itself on first read."""

    _HANDLE = "_handle_obj"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state[self._HANDLE] = None
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def is_lazy(x: Any) -> bool:
    """Whether ``x`` is a row source rather than an array in memory."""
    return not isinstance(x, np.ndarray)


def read_rows(x: Any, index: np.ndarray) -> np.ndarray:
    """The rows of ``x`` (an array or a row source) at ``index``."""
    if isinstance(x, np.ndarray):
        return x[index]
    return x.read(np.asarray(index, dtype=np.int64))


def read_range(x: Any, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo`` to ``hi`` (exclusive) of ``x``."""
    if isinstance(x, np.ndarray):
        return x[lo:hi]
    return x.read(np.arange(lo, hi, dtype=np.int64))


def rows_of(x: Any) -> int:
    """Rows of one array/source, or of a tuple of them (the first one's)."""
    return int((x[0] if isinstance(x, tuple) else x).shape[0])


def row_nbytes(x: Any) -> int:
    """Bytes of one row of ``x`` (as stored)."""
    return int(np.prod(x.shape[1:], dtype=np.int64)) * np.dtype(x.dtype).itemsize


def fingerprint(x: Any) -> str:
    """A digest that names ``x``'s content: an array's bytes, or a source's file, position and stat (so
    another process computes the same one for the same data; a changed file gets a new one). A tuple of
    arrays (a model's several inputs) gets one digest of all."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(x, tuple):
        for a in x:
            h.update(fingerprint(a).encode())
    elif isinstance(x, np.ndarray):
        a = np.ascontiguousarray(x)
        h.update(f"array{a.shape}{a.dtype.str}".encode())
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")
    else:
        h.update(f"{type(x).__name__}{tuple(x.shape)}{np.dtype(x.dtype).str}".encode())
        h.update(x.fingerprint().encode())
    return h.hexdigest()


def _file_stat(path: Path) -> str:
    st = path.stat()
    return f"{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}"


def batches(n: int, rows: int) -> Iterator[tuple[int, int]]:
    """``(lo, hi)`` of consecutive batches of at most ``rows`` over ``n`` rows."""
    step = max(1, int(rows))
    for lo in range(0, n, step):
        yield lo, min(n, lo + step)


def _runs(sorted_unique: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive runs ``(first, last + 1)`` of sorted, unique row numbers."""
    if len(sorted_unique) == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_unique) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(sorted_unique)]])
    return [(int(sorted_unique[s]), int(sorted_unique[e - 1]) + 1) for s, e in zip(starts, ends, strict=True)]


def _check_index(index: np.ndarray, n: int, source: str) -> np.ndarray:
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    if len(index) and (index.min() < 0 or index.max() >= n):
        raise IndexError(f"{source}: row index out of range 0..{n - 1}")
    return index


class FileRows(_Reopens, RowSource):
    """A C-ordered array of ``shape`` and ``dtype`` stored raw in ``path`` from byte ``offset``."""

    def __init__(self, path: str | os.PathLike[str], offset: int, dtype: Any, shape: tuple[int, ...],
                 source: str | None = None) -> None:
        self.path = Path(path)
        self.offset = int(offset)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(d) for d in shape)
        self.source = source or str(path)
        self._fd: int | None = None
        self._lock = threading.Lock()
        need = self.offset + len(self) * row_nbytes(self)
        size = self.path.stat().st_size
        if size < need:
            raise InvalidInput(f"{self.source}: the file holds {size} bytes, fewer than the {need} its array "
                               "header promises (truncated?)")

    _HANDLE = "_fd"

    def _handle(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            return self._fd

    def fingerprint(self) -> str:
        return f"{_file_stat(self.path)}\0{self.offset}"

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:  # file descriptors are few; don't wait for the process to end
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def read(self, index: np.ndarray) -> np.ndarray:
        index = _check_index(index, len(self), self.source)
        width = row_nbytes(self)
        wanted, where = np.unique(index, return_inverse=True)
        out = np.empty((len(wanted), *self.shape[1:]), dtype=self.dtype)
        flat = out.reshape(-1).view(np.uint8) if out.size else np.empty(0, np.uint8)
        fd, pos = self._handle(), 0
        for lo, hi in _runs(wanted):
            nbytes = (hi - lo) * width
            view = memoryview(flat[pos:pos + nbytes])
            done = 0
            while done < nbytes:
                got = os.preadv(fd, [view[done:]], self.offset + lo * width + done)
                if got <= 0:
                    raise InvalidInput(f"{self.source}: the file ended early (truncated while in use?)")
                done += got
            pos += nbytes
        return out if len(wanted) == len(index) and np.array_equal(wanted, index) else out[where]


def npy_rows(path: str | os.PathLike[str], offset: int = 0, source: str | None = None) -> FileRows:
    """The array of the ``.npy`` data starting at ``offset`` in ``path``, as a :class:`FileRows`.

    Raises:
        InvalidInput: not an .npy stream, Python objects, Fortran order or a scalar.
    """
    src = source or str(path)
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            version = np.lib.format.read_magic(fh)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = reader(fh, max_header_size=100_000)
            start = fh.tell()
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{src}: cannot be read as a NumPy array: {exc}") from exc
    if dtype.hasobject:
        raise InvalidInput(f"{src}: holds Python objects; expected numbers")
    if not shape:
        raise InvalidInput(f"{src}: is a scalar; expected one row per sample")
    if fortran and len(shape) > 1:
        raise InvalidInput(f"{src}: is stored in Fortran order, which cannot be read by rows; save it "
                           "C-ordered (np.save(path, np.ascontiguousarray(x)))")
    return FileRows(path, start, dtype, shape, src)


def npz_member_offset(path: str | os.PathLike[str], info: zipfile.ZipInfo) -> int:
    """Where the bytes of an uncompressed (stored) member of a zip file start in the file."""
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise InvalidInput(f"{path}: damaged zip entry {info.filename!r}")
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len


class H5Rows(_Reopens, RowSource):
    """An HDF5 dataset of a file, read by slice (the file reopened after pickling)."""

    def __init__(self, path: str | os.PathLike[str], name: str, shape: tuple[int, ...], dtype: Any,
                 source: str | None = None) -> None:
        self.path, self.name = Path(path), name
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.source = source or f"{path}:{name}"
        self._file: Any = None
        self._lock = threading.Lock()

    _HANDLE = "_file"

    def fingerprint(self) -> str:
        return f"{_file_stat(self.path)}\0{self.name}"

    def read(self, index: np.ndarray) -> np.ndarray:
        import h5py

        index = _check_index(index, len(self), self.source)
        wanted, where = np.unique(index, return_inverse=True)
        with self._lock:
            if self._file is None:
                self._file = h5py.File(self.path, "r")
            ds = self._file[self.name]
            if len(wanted) == 0:
                out = np.empty((0, *self.shape[1:]), self.dtype)
            elif wanted[-1] - wanted[0] + 1 <= 4 * len(wanted):  # dense enough: one slice, then pick
                block = ds[int(wanted[0]):int(wanted[-1]) + 1]
                out = block[wanted - wanted[0]]
            else:
                out = np.concatenate([ds[lo:hi] for lo, hi in _runs(wanted)])
        return out[where]


class IndexedRows(RowSource):
    """The rows ``index`` of another source, renumbered 0..len(index)-1 (a split of a data set)."""

    def __init__(self, base: Any, index: np.ndarray) -> None:
        self.base = base
        self.index = np.asarray(index, dtype=np.int64)
        self.shape = (len(self.index), *base.shape[1:])
        self.dtype = np.dtype(base.dtype)
        self.source = getattr(base, "source", "data")

    def __len__(self) -> int:
        return len(self.index)

    def fingerprint(self) -> str:
        return fingerprint(self.base) + hashlib.blake2b(self.index.tobytes(), digest_size=16).hexdigest()

    def read(self, index: np.ndarray) -> np.ndarray:
        return read_rows(self.base, self.index[_check_index(index, len(self), self.source)])
