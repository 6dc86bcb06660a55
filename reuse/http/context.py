"""What every HTTP handler of one server shares: the service, the thread pool, limits, token, readiness."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from reuse.http.body import Limits
from reuse.service import Service

T = TypeVar("T")


@dataclass(frozen=True)
class HttpContext:
    """``pool``: where loads and store reads run (the gRPC server's pool when both serve; None: the loop's
    default executor). ``ready``: KServe readiness (false until every process listens, and once the server
    stops). ``grpc_target``: the gRPC address beside it, shown on the dashboard (None: ``reuse ui``)."""

    service: Service
    pool: Executor | None = None
    limits: Limits = field(default_factory=Limits)
    token: str | None = None
    tls: bool = False
    ready: Callable[[], bool] = lambda: True
    grpc_target: str | None = None

    @staticmethod
    def of(request: web.Request) -> HttpContext:
        return request.app[CONTEXT]

    async def in_pool(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the pool: store reads and model loads never block the event loop."""
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, functools.partial(fn, *args, **kwargs)
        )


CONTEXT = web.AppKey("reuse_context", HttpContext)
