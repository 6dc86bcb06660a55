"""Bearer-token auth and the error-to-status mapping, for every RPC.

Servicers raise our exceptions; :func:`status_details` maps them along the exception's MRO
(reuse.grpc.status). Anything else becomes INTERNAL with a generic message, and its traceback goes to
the server log. On the asyncio server, :class:`TokenGate` checks the token of every call before its
handler runs; :func:`map_errors` wraps each plain (thread-pool) handler with the error mapping, and the
ModelInfer coroutine maps its errors itself.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

import grpc

from reuse.errors import Unauthenticated
from reuse.grpc.status import status_of
from reuse.text import cut

log = logging.getLogger(__name__)
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
# Status details travel as a header, and clients refuse headers over 8 KiB (the reply then arrives as
# RESOURCE_EXHAUSTED "Stream removed"); messages echo user values clipped, and this caps the rest.
MAX_DETAILS = 4000


def check_token(token: bytes, metadata: Any) -> None:
    """Raise Unauthenticated unless ``metadata`` carries ``authorization: Bearer <token>``."""
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, given = str(value).partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token):
                return
            raise Unauthenticated("invalid bearer token")
    raise Unauthenticated("missing bearer token: send metadata 'authorization: Bearer <token>'")


def status_details(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    """The status code and details a call that raised ``exc`` ends with (unexpected errors are logged)."""
    code = status_of(exc)
    if code is None:
        log.error("unexpected error in %s", method, exc_info=exc)
        return grpc.StatusCode.INTERNAL, "internal error; the server log has the details"
    return code, cut(str(exc) or type(exc).__name__, MAX_DETAILS)


def map_errors(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """``handler`` of ``method`` ending with the status :func:`status_details` gives when it raises."""
    behavior = (handler.unary_unary or handler.unary_stream or handler.stream_unary
                or handler.stream_stream)

    def abort(context: grpc.ServicerContext, exc: Exception) -> None:
        if context.code() is None:  # not already aborted by grpc itself
            context.abort(*status_details(exc, method))

    if handler.response_streaming:
        def wrapped(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from behavior(request_or_iterator, context)
            except Exception as exc:  # noqa: BLE001 - this is the one place errors become statuses
                abort(context, exc)
                raise
    else:
        def wrapped(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            try:
                return behavior(request_or_iterator, context)
            except Exception as exc:  # noqa: BLE001 - this is the one place errors become statuses
                abort(context, exc)
                raise

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return make(wrapped, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class TokenGate(grpc.aio.ServerInterceptor):
    """The bearer-token check of the asyncio server, before any handler runs (health stays open)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        try:
            check_token(self._token, details.invocation_metadata)
        except Unauthenticated as exc:
            return _refusal(handler, str(exc))
        return handler


def _refusal(handler: grpc.RpcMethodHandler, details: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that ends every call UNAUTHENTICATED."""
    code = grpc.StatusCode.UNAUTHENTICATED
    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}
    if handler.response_streaming:
        async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(code, details)
            yield  # an async generator, as a response-streaming handler must be

        make = (grpc.stream_stream_rpc_method_handler if handler.request_streaming
                else grpc.unary_stream_rpc_method_handler)
        return make(refuse_stream, **kw)

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, details)

    make = (
        grpc.stream_unary_rpc_method_handler
        if handler.request_streaming
        else grpc.unary_unary_rpc_method_handler
    )
    return make(refuse, **kw)
