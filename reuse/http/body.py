"""Request bodies under caps: one body at most ``max_body_bytes`` (413 above it, refused from the
Content-Length before a byte is read), and large bodies together at most ``in_flight_bytes`` in memory
(a large request waits until earlier ones are done with theirs; an unread body stays in the socket,
whose reading the server pauses)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from reuse.http.status import BodyTooLarge

SMALL_BODY = 1 << 16  # bodies up to this are read without taking from the in-flight budget


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * 2**20
    in_flight_factor: int = 4  # large bodies held at once, in units of max_body_bytes

    @property
    def in_flight_bytes(self) -> int:
        return self.max_body_bytes * self.in_flight_factor


class Budget:
    """Bytes of large bodies held at once, on one event loop."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._cond: asyncio.Condition | None = None

    @asynccontextmanager
    async def hold(self, n: int) -> AsyncIterator[None]:
        n = min(n, self.limit)
        if self._cond is None:
            self._cond = asyncio.Condition()
        cond = self._cond
        async with cond:
            await cond.wait_for(lambda: self.used + n <= self.limit)
            self.used += n
        try:
            yield
        finally:
            async with cond:
                self.used -= n
                cond.notify_all()


def too_large(length: int | None, cap: int) -> BodyTooLarge:
    size = f"{length} bytes" if length is not None else "more"
    return BodyTooLarge(f"request body of {size}: above the limit of {cap} bytes (--max-message-mb)")


@asynccontextmanager
async def read_body(
    request: web.Request, limits: Limits, budget: Budget | None = None
) -> AsyncIterator[bytes]:
    """The whole body, while the caller uses it.

    Raises:
        BodyTooLarge: a Content-Length, or a body read, above ``limits.max_body_bytes``.
    """
    cap, length = limits.max_body_bytes, request.content_length
    if length is not None and length > cap:
        raise too_large(length, cap)
    budget = budget or request.app[BUDGET]
    if length is not None and length <= SMALL_BODY:
        yield await _read(request, cap)
        return
    async with budget.hold(length if length is not None else cap):
        yield await _read(request, cap)


async def _read(request: web.Request, cap: int) -> bytes:
    chunks, total = [], 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if total > cap:
            raise too_large(request.content_length, cap)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_small(request: web.Request, cap: int = 4096) -> bytes:
    """A small form body (the login), refused above ``cap`` bytes."""
    if request.content_length is not None and request.content_length > cap:
        raise too_large(request.content_length, cap)
    return await _read(request, cap)


BUDGET = web.AppKey("body_budget", Budget)
