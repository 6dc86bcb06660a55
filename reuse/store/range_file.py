"""A read-only file-like view of one object, read by HTTP range requests, for ``h5py.File(fileobj)``.

HDF5 reads a file as many small metadata reads (object headers, B-tree nodes, heaps, attributes) and one
large read per contiguous dataset. Small reads go through a cache of aligned blocks (``BLOCK`` bytes,
at most ``MAX_BLOCKS`` kept), so the metadata of a layer costs a few requests; a read larger than a
block is fetched exactly as asked, uncached. Opening a version and reading its architecture and a few
layers therefore moves those layers' bytes plus some blocks of metadata, not the whole object.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from typing import Protocol

BLOCK = 64 * 1024
MAX_BLOCKS = 256  # 16 MiB of metadata blocks at most


class RangeSource(Protocol):
    def get_range(self, key: str, start: int, end: int) -> bytes: ...


class RangeFile(io.RawIOBase):
    """``size`` bytes of object ``key``, fetched on demand from ``source``."""

    def __init__(self, source: RangeSource, key: str, size: int) -> None:
        super().__init__()
        self.source, self.key, self.size = source, key, size
        self.pos = 0
        self.blocks: OrderedDict[int, bytes] = OrderedDict()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._read_at(self.pos, min(len(view), max(0, self.size - self.pos)))
        view[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n is None or n < 0 else min(n, max(0, self.size - self.pos))
        data = self._read_at(self.pos, n)
        self.pos += len(data)
        return data

    def _read_at(self, start: int, n: int) -> bytes:
        if n <= 0:
            return b""
        end = start + n
        if n > BLOCK:  # dataset contents: exactly what was asked
            return self.source.get_range(self.key, start, end)
        first, last = start // BLOCK, (end - 1) // BLOCK
        parts = [self._block(i) for i in range(first, last + 1)]
        joined = b"".join(parts)
        off = start - first * BLOCK
        return joined[off:off + n]

    def _block(self, i: int) -> bytes:
        data = self.blocks.get(i)
        if data is not None:
            self.blocks.move_to_end(i)
            return data
        start = i * BLOCK
        data = self.source.get_range(self.key, start, min(self.size, start + BLOCK))
        self.blocks[i] = data
        if len(self.blocks) > MAX_BLOCKS:
            self.blocks.popitem(last=False)
        return data
