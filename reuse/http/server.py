"""The HTTP server: aiohttp's, on an event loop we run.

``reuse serve --http-port`` starts it on the gRPC server's loop (reuse.grpc.server), so REST inference
requests queue in the same loop batchers as gRPC ones and use the same model cache. ``reuse ui`` runs it
alone on a loop of its own (:func:`run_ui`). Why aiohttp rather than an ASGI framework and server: it is
both in one, runs on a loop it is given with no signal handling of its own, and caps what a request may
send before any handler runs (request line and each header 8 KiB, 128 headers: 400; the body:
``client_max_size``, 413); uvicorn's fast parser (httptools) has no header cap (measured: it took a 200
MB header line without answering), and aiohttp answered about as many small POSTs per second as
uvicorn + Starlette on this machine.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from reuse.errors import FailedPrecondition, InvalidInput
from reuse.http.app import make_app
from reuse.http.context import HttpContext

log = logging.getLogger(__name__)
KEEPALIVE_S = 75.0  # an idle connection is closed after this (aiohttp's default is an hour)
# After refusing a body unread (413, or 400 before reading it), read and drop what the client still sends for
# this long before closing, so that it reads the answer rather than a reset (aiohttp's default is 10 s).
LINGER_S = 2.0


class _ClientErrors(logging.LoggerAdapter):
    """aiohttp logs a malformed request (a client's fault, already answered 400) as an error with a
    traceback; here it is a debug line."""

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        self.logger.debug("%s: %s", msg, exc_info if not isinstance(exc_info, bool) else "", **kwargs)


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The server's TLS context from the PEM files ``reuse serve`` takes for gRPC (None: plaintext)."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise InvalidInput("TLS needs both --tls-cert and --tls-key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(f"cannot read the TLS files: {exc}") from exc
    return context


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A socket bound to ``host:port`` (0: a free port), not yet listening.

    Raises:
        FailedPrecondition: the address is taken or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FailedPrecondition(f"cannot listen on {host}:{port} for HTTP: {exc}") from exc
    return sock


class HttpServer:
    """The application of ``ctx`` served on ``host:port``; start and stop on the loop that serves it."""

    def __init__(
        self,
        ctx: HttpContext,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        grace_s: float = 10.0,
    ) -> None:
        self.ctx, self.host, self.tls, self.grace_s = ctx, host, tls, grace_s
        self._sock = bind(host, port, reuse_port)
        self.port: int = self._sock.getsockname()[1]
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def start(self) -> int:
        runner = web.AppRunner(
            make_app(self.ctx),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=self.grace_s,
            keepalive_timeout=KEEPALIVE_S,
            lingering_time=LINGER_S,
            logger=_ClientErrors(logging.getLogger("reuse.http.protocol"), {}),
        )
        await runner.setup()
        self._runner = runner
        await web.SockSite(runner, self._sock, ssl_context=self.tls, shutdown_timeout=self.grace_s).start()
        return self.port

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the grace period), close."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            # A connection handler still lingering over a refused body whose client has gone is no longer
            # one the runner waits for; end it here, or it would be destroyed pending with the loop.
            lingering = [
                t
                for t in asyncio.all_tasks()
                if t is not asyncio.current_task()
                and getattr(t.get_coro(), "__qualname__", "") == "RequestHandler.start"
            ]
            for t in lingering:
                t.cancel()
            await asyncio.gather(*lingering, return_exceptions=True)
        self._sock.close()


def run_ui(
    ctx: HttpContext,
    host: str,
    port: int,
    tls: ssl.SSLContext | None = None,
    on_ready: Callable[[HttpServer], None] | None = None,
) -> int:
    """``reuse ui``: serve until SIGTERM or SIGINT on a loop of this thread; returns the exit status."""
    server = HttpServer(ctx, host, port, tls=tls, grace_s=5.0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        await server.start()
        if on_ready:
            on_ready(server)
        await done.wait()
        await server.stop()

    asyncio.run(main())
    ctx.service.close()
    return 0
