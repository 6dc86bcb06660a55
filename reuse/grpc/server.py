"""Build and run the gRPC server: inference, management, health and reflection on one port.

The server is grpc's thread-pool server: each call gets a thread, and a ModelInfer thread blocks on
its batch while the model's batcher thread runs the forward pass. Measured on the 2-core benchmark
machine this served more inferences per CPU second than grpc.aio (whose per-call task machinery cost
more than the threads), and it formed larger batches (bench/serve.py).

``run_server`` is what ``reuse serve`` calls: it serves until SIGTERM or SIGINT, then stops accepting
calls, lets in-flight ones finish (``grace_s``), marks running jobs interrupted, and returns 0.
``start_in_thread`` starts the same server without signal handling (tests, benchmarks).
"""

from __future__ import annotations

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
    """Transport settings of one server (the service carries the batching and job settings).

    ``threads`` bounds the calls served at once (each WatchJob stream holds one while it lasts); more
    wait in grpc's queue. ``reuse_port``: let other processes listen on the same port (SO_REUSEPORT; the
    kernel spreads connections over them: ``reuse serve --processes``).
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
    """A started server: its port, and a graceful ``stop`` (also as a context manager)."""

    def __init__(self, service: Service, config: ServerConfig) -> None:
        self.service = service
        self.config = config
        self.interrupted: list[str] = []
        limit = int(config.max_message_bytes)
        self.server = grpc.server(
            ThreadPoolExecutor(config.threads, thread_name_prefix="rpc"),
            interceptors=[ServerInterceptor(config.token)],
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
                     ("grpc.so_reuseport", int(config.reuse_port))],
        )
        self.ready = False  # KServe ServerReady and health: SERVING once start() (or set_serving()) says so
        inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(service, limit, ready=lambda: self.ready), self.server)
        reuse_v1_pb2_grpc.add_ReuseServiceServicer_to_server(ReuseServicer(service), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                            self.server)
        address = f"{config.host}:{config.port}"
        creds = _credentials(config)
        try:
            self.port = (self.server.add_secure_port(address, creds) if creds
                         else self.server.add_insecure_port(address))
        except RuntimeError as exc:
            raise FailedPrecondition(f"cannot listen on {address}: {exc}") from exc
        if not self.port:
            raise FailedPrecondition(f"cannot listen on {address}")
        self._stopped = False

    @property
    def target(self) -> str:
        return f"{self.config.host}:{self.port}"

    def start(self, *, serving: bool = True) -> RunningServer:
        """Start answering; health says SERVING now, or (``serving=False``) from :meth:`set_serving`."""
        self.server.start()
        self.set_serving(serving)
        return self

    def set_serving(self, serving: bool = True) -> None:
        self.ready = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, status)

    def stop(self) -> list[str]:
        """Refuse new calls, end job streams by interrupting running jobs, let in-flight calls finish."""
        if self._stopped:
            return self.interrupted
        self._stopped = True
        self.ready = False
        self.health.enter_graceful_shutdown()
        done = self.server.stop(self.config.grace_s)  # refuses new calls at once
        self.interrupted = self.service.runtime.close()  # marks running jobs interrupted; their watchers finish
        done.wait()
        return self.interrupted

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(service: Service, config: ServerConfig | None = None) -> RunningServer:
    """Start a server (default: 127.0.0.1, a free port); grpc serves it on its own threads."""
    return RunningServer(service, config or ServerConfig(port=0)).start()


def run_server(service: Service, config: ServerConfig, on_ready: Callable[[int], None] | None = None) -> int:
    """Serve in the foreground until SIGTERM/SIGINT; returns the exit status (0 after a clean stop)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = RunningServer(service, config).start()
    if on_ready:
        on_ready(server.port)
    stop.wait()
    interrupted = server.stop()
    if interrupted:
        log.warning("marked %d running job(s) interrupted: %s", len(interrupted), ", ".join(interrupted))
    return 0
