"""Thread-pool servicers on the asyncio server: each call of a sync handler runs in a worker thread.

The server is ``grpc.aio`` (see reuse.grpc.server for why). ModelInfer is a coroutine on its event loop;
the other calls (store, jobs, uploads, model metadata, which may load a model or wait for a build) keep
their plain servicers and the error mapping (:func:`~reuse.grpc.interceptor.map_errors`), and run in
a thread pool as before, through :func:`threaded`:

- unary calls: the handler runs in a pool thread and the loop awaits it;
- request streams (uploads): the handler reads the stream through an iterator that asks the loop for
  each message;
- response streams (WatchJob): each ``next`` of the handler's generator runs in a pool thread; the
  call's ``is_active()`` turns false once the client is gone, so the generator ends.

:class:`ThreadContext` is the part of ``grpc.ServicerContext`` those handlers use. ``abort`` records
the status and raises; the coroutine then ends the call with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

import grpc

_END = object()


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class ThreadContext:
    """A call's context as a handler running in a pool thread sees it."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._metadata = context.invocation_metadata()
        self._peer = context.peer()
        self._code: grpc.StatusCode | None = None
        self.active = True

    def invocation_metadata(self) -> Any:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def is_active(self) -> bool:
        return self.active

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._code = code
        raise _Aborted(code, details)


class _ThreadIterator(Iterator):
    """A request stream read from a pool thread: each message is awaited on the loop."""

    def __init__(self, requests: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._requests = requests.__aiter__()
        self._loop = loop

    async def _next(self) -> Any:
        try:
            return await self._requests.__anext__()
        except StopAsyncIteration:
            return _END

    def __next__(self) -> Any:
        item = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
        if item is _END:
            raise StopIteration
        return item


def threaded(handler: grpc.RpcMethodHandler, pool: Executor) -> grpc.RpcMethodHandler:
    """The same call as ``handler`` (a sync one) for the asyncio server, run in ``pool``."""
    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        raise ValueError("bidirectional streams are not bridged; write them as coroutines")

    if handler.response_streaming:
        behavior = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            ctx = ThreadContext(context)
            loop = asyncio.get_running_loop()
            responses = behavior(request, ctx)
            try:
                while (item := await loop.run_in_executor(pool, next, responses, _END)) is not _END:
                    yield item
            except _Aborted as exc:
                await context.abort(exc.code, exc.details)
            finally:
                ctx.active = False  # a generator still running in its thread sees the call is over

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kw)

    if handler.request_streaming:
        behavior = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            ctx = ThreadContext(context)
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(pool, behavior, _ThreadIterator(requests, loop), ctx)
            except _Aborted as exc:
                await context.abort(exc.code, exc.details)
            finally:
                ctx.active = False

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kw)

    behavior = handler.unary_unary

    async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        ctx = ThreadContext(context)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, behavior, request, ctx)
        except _Aborted as exc:
            await context.abort(exc.code, exc.details)
        finally:
            ctx.active = False

    return grpc.unary_unary_rpc_method_handler(unary_unary, **kw)


class _Collector:
    """Stands in for a server while a generated ``add_*_to_server`` registers a servicer's handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers arrive by name below

    def add_registered_method_handlers(self, service: str,
                                       handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.handlers[service] = dict(handlers)


def method_handlers(add_to_server: Any, servicer: Any) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
    """A servicer's handlers by service name and method name, as its generated ``add_*_to_server`` makes
    them."""
    collector = _Collector()
    add_to_server(servicer, collector)
    return collector.handlers
