"""Build and run the gRPC server: inference, management, health and reflection on one port.

``run_server`` is what ``reuse serve`` calls: it serves until SIGTERM or SIGINT, then stops accepting
calls, lets in-flight ones finish (``grace_s``), marks running jobs interrupted, and returns 0.
``start_in_thread`` runs the same server on a background event loop (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reuse.errors import FailedPrecondition, InvalidInput
from reuse.grpc._proto import inference_pb2, inference_pb2_grpc, reuse_v1_pb2, reuse_v1_pb2_grpc
from reuse.grpc.interceptor import ServerInterceptor
from reuse.grpc.servicers import InferenceServicer, ReuseServicer
from reuse.service import Service

log = logging.getLogger(__name__)
SERVICE_NAMES = (
    inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    reuse_v1_pb2.DESCRIPTOR.services_by_name["ReuseService"].full_name,
)


@dataclass(frozen=True)
class ServerConfig:
    """Transport settings of one server (the service carries the batching and job settings)."""

    host: str = "127.0.0.1"
    port: int = 8500
    max_message_bytes: int = 64 * 1024 * 1024
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    grace_s: float = 10.0
    threads: int = 32


def _credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert and not config.tls_key:
        return None
    if not (config.tls_cert and config.tls_key):
        raise InvalidInput("TLS needs both --tls-cert and --tls-key")
    try:
        key, cert = Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the TLS files: {exc}") from exc
    return grpc.ssl_server_credentials([(key, cert)])


async def build_server(service: Service, config: ServerConfig) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Create and start the server; returns it, the bound port and its health servicer."""
    limit = int(config.max_message_bytes)
    server = grpc.aio.server(
        interceptors=[ServerInterceptor(config.token)],
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
                 ("grpc.so_reuseport", 0)],
    )
    inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(service), server)
    reuse_v1_pb2_grpc.add_ReuseServiceServicer_to_server(ReuseServicer(service), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{config.host}:{config.port}"
    creds = _credentials(config)
    try:
        port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise FailedPrecondition(f"cannot listen on {address}: {exc}") from exc
    if not port:
        raise FailedPrecondition(f"cannot listen on {address}")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer


async def serve(service: Service, config: ServerConfig, stop: asyncio.Event,
                on_ready: Callable[[int], None] | None = None) -> list[str]:
    """Serve until ``stop`` is set, then shut down gracefully; returns the ids of interrupted jobs."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(config.threads, thread_name_prefix="rpc"))
    server, port, health_servicer = await build_server(service, config)
    if on_ready:
        on_ready(port)
    await stop.wait()
    await health_servicer.enter_graceful_shutdown()
    stopping = asyncio.ensure_future(server.stop(config.grace_s))  # refuses new calls at once
    interrupted = await asyncio.to_thread(service.close)  # ends job streams so watchers finish
    await stopping
    return interrupted


def run_server(service: Service, config: ServerConfig, on_ready: Callable[[int], None] | None = None) -> int:
    """Serve in the foreground until SIGTERM/SIGINT; returns the exit status (0 after a clean stop)."""

    async def main() -> list[str]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await serve(service, config, stop, on_ready)

    interrupted = asyncio.run(main())
    if interrupted:
        log.warning("marked %d running job(s) interrupted: %s", len(interrupted), ", ".join(interrupted))
    return 0


class RunningServer:
    """A server on a background thread with its own event loop. Use as a context manager."""

    def __init__(self, service: Service, config: ServerConfig) -> None:
        self.service = service
        self.config = config
        self.port = 0
        self.interrupted: list[str] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="grpc-server", daemon=True)

    @property
    def target(self) -> str:
        return f"{self.config.host}:{self.port}"

    def _main(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

            def ready(port: int) -> None:
                self.port = port
                self._ready.set()

            self.interrupted = await serve(self.service, self.config, self._stop, ready)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            self._error = exc
        finally:
            self._ready.set()

    def start(self) -> RunningServer:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self if self._thread.ident is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(service: Service, config: ServerConfig | None = None) -> RunningServer:
    """Start a server on 127.0.0.1 (port 0 picks a free one) in a background thread."""
    return RunningServer(service, config or ServerConfig(port=0)).start()
