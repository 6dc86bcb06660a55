"""Build and run the gRPC server: inference, management, health and reflection on one port.

The server is ``grpc.aio`` on an event loop of its own thread. ModelInfer is a coroutine on that loop
and concurrent requests merge in the model's loop batcher, with no thread per request: measured with
bench/serve.py on the 2-core benchmark machine at concurrency 32, an empty-handler asyncio server
answered about 1.5x the calls of grpc's thread-pool one, and our ModelInfer on the thread pool (a thread
blocked per request, a batcher thread) cost 647 us of server CPU per call against 290 us here. The other calls
keep their plain servicers and run in a thread pool (reuse.grpc.aio_bridge).

``run_server`` is what ``reuse serve`` calls: it serves until SIGTERM or SIGINT, then stops accepting
calls, lets in-flight ones finish (``grace_s``), marks running jobs interrupted, and returns 0.
``start_in_thread`` starts the same server without signal handling (tests, benchmarks).
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
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reuse.errors import FailedPrecondition, InvalidInput
from reuse.grpc._proto import inference_pb2, inference_pb2_grpc, reuse_v1_pb2, reuse_v1_pb2_grpc
from reuse.grpc.aio_bridge import method_handlers, threaded
from reuse.grpc.interceptor import TokenGate, map_errors
from reuse.grpc.servicers import MODEL_INFER, InferenceServicer, LoopInfer, ReuseServicer
from reuse.service import Service

log = logging.getLogger(__name__)
SERVICE_NAMES = (
    inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    reuse_v1_pb2.DESCRIPTOR.services_by_name["ReuseService"].full_name,
)


@dataclass(frozen=True)
class ServerConfig:
    """Transport settings of one server (the service carries the batching and job settings).

    ``threads``: the pool that runs the calls other than ModelInfer (each WatchJob stream holds a thread
    while it waits for events); more wait for a free thread. ``reuse_port``: let other processes listen on the
    same port (SO_REUSEPORT; the kernel spreads connections over them: ``reuse serve --processes``).
    """

    host: str = "127.0.0.1"
    port: int = 8500
    max_message_bytes: int = 64 * 1024 * 1024
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    grace_s: float = 10.0
    threads: int = 64
    reuse_port: bool = False
    http_port: int | None = None


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


class RunningServer:
    """A started server: its port, and a graceful ``stop`` (also as a context manager).

    The asyncio server runs on its own event loop in a thread of this process; ``start``, ``set_serving``
    and ``stop`` may be called from any other thread.
    """

    def __init__(self, service: Service, config: ServerConfig) -> None:
        self.service = service
        self.config = config
        self.interrupted: list[str] = []
        self.ready = False  # KServe ServerReady and health: SERVING once start() (or set_serving()) says so
        self._pool = ThreadPoolExecutor(config.threads, thread_name_prefix="rpc")
        self.http: Any = None  # reuse.http.server.HttpServer, with config.http_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop", daemon=True)
        self._thread.start()
        try:
            self.port = self._call(self._build())
        except BaseException:
            self._end_loop()
            raise
        self._stopped = False

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _build(self) -> int:
        config, service = self.config, self.service
        limit = int(config.max_message_bytes)
        self.server = grpc.aio.server(
            interceptors=[TokenGate(config.token)] if config.token else None,
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
                     ("grpc.so_reuseport", int(config.reuse_port))],
        )
        servicers = ((inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
                      InferenceServicer(service, limit, ready=lambda: self.ready)),
                     (reuse_v1_pb2_grpc.add_ReuseServiceServicer_to_server, ReuseServicer(service)))
        for add, servicer in servicers:
            for name, methods in method_handlers(add, servicer).items():
                handlers = {
                    m: threaded(map_errors(h, f"/{name}/{m}"), self._pool) for m, h in methods.items()
                }
                if f"/{name}/ModelInfer" == MODEL_INFER:
                    sync = methods["ModelInfer"]
                    handlers["ModelInfer"] = grpc.unary_unary_rpc_method_handler(
                        LoopInfer(service, limit, self._pool).infer,
                        request_deserializer=sync.request_deserializer,
                        response_serializer=sync.response_serializer)
                self.server.add_registered_method_handlers(name, handlers)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                            self.server)
        address = f"{config.host}:{config.port}"
        creds = _credentials(config)
        try:
            port = (
                self.server.add_secure_port(address, creds)
                if creds
                else self.server.add_insecure_port(address)
            )
        except RuntimeError as exc:
            raise FailedPrecondition(f"cannot listen on {address}: {exc}") from exc
        if not port:
            raise FailedPrecondition(f"cannot listen on {address}")
        if config.http_port is not None:
            self.http = self._http(port)
        return port

    def _http(self, grpc_port: int) -> Any:
        """The HTTP server beside gRPC, bound (it answers from :meth:`start`)."""
        from reuse.http.body import Limits
        from reuse.http.context import HttpContext
        from reuse.http.server import HttpServer, tls_context

        config = self.config
        ctx = HttpContext(self.service, pool=self._pool, limits=Limits(int(config.max_message_bytes)),
                          token=config.token, tls=bool(config.tls_cert), ready=lambda: self.ready,
                          grpc_target=f"{config.host}:{grpc_port}")
        tls = tls_context(config.tls_cert, config.tls_key)
        return HttpServer(ctx, config.host, int(config.http_port or 0), tls=tls,
                          reuse_port=config.reuse_port, grace_s=config.grace_s)

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http is not None else None

    @property
    def target(self) -> str:
        return f"{self.config.host}:{self.port}"

    def start(self, *, serving: bool = True) -> RunningServer:
        """Start answering; health says SERVING now, or (``serving=False``) from :meth:`set_serving`."""
        self._call(self.server.start())
        if self.http is not None:
            self._call(self.http.start())
        self.set_serving(serving)
        return self

    def set_serving(self, serving: bool = True) -> None:
        self.ready = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )

        async def set_all() -> None:
            for name in ("", *SERVICE_NAMES):
                await self.health.set(name, status)

        self._call(set_all())

    async def _begin_stop(self) -> asyncio.Task:
        await self.health.enter_graceful_shutdown()
        stops = [self.server.stop(self.config.grace_s)]
        if self.http is not None:
            stops.append(self.http.stop())
        stopping = asyncio.ensure_future(asyncio.gather(*stops))
        await asyncio.sleep(0)  # the stop has begun: new calls are refused
        return stopping

    def stop(self) -> list[str]:
        """Refuse new calls, end job streams by interrupting running jobs, let in-flight calls finish."""
        if self._stopped:
            return self.interrupted
        self._stopped = True
        self.ready = False
        stopping = self._call(self._begin_stop())
        self.interrupted = self.service.state.close()  # marks running jobs interrupted; their watchers finish

        async def finish() -> None:
            await stopping

        self._call(finish())
        self._end_loop()
        return self.interrupted

    def _end_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._pool.shutdown(wait=False)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(service: Service, config: ServerConfig | None = None) -> RunningServer:
    """Start a server (default: 127.0.0.1, a free port); grpc serves it on its own threads."""
    return RunningServer(service, config or ServerConfig(port=0)).start()


def run_server(service: Service, config: ServerConfig,
               on_ready: Callable[[RunningServer], None] | None = None) -> int:
    """Serve in the foreground until SIGTERM/SIGINT; returns the exit status (0 after a clean stop)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = RunningServer(service, config).start()
    if on_ready:
        on_ready(server)
    stop.wait()
    interrupted = server.stop()
    if interrupted:
        log.warning("marked %d running job(s) interrupted: %s", len(interrupted), ", ".join(interrupted))
    return 0
