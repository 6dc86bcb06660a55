"""``reuse serve --processes N``: N server processes listening on one port.

The parent process serves nothing and makes no gRPC object: it reserves the port (a socket bound with
SO_REUSEPORT and never listening, so port 0 becomes a fixed free port before any child starts), then
*spawns* N children (a fresh interpreter each, so no gRPC or TensorFlow state is copied by fork). Each
child builds its own service, with its own model cache, over the same store, and listens on that port
with SO_REUSEPORT (``ServerConfig.reuse_port``), so the kernel spreads connections over the children
(Linux). The store is shared: the children read it, and what one registers the others see
(docs/scale-out.md says how soon).

Jobs: the first child to take the store's jobs lock runs the jobs; the others are serving replicas
whose job calls go to it through the jobs folder (reuse.jobs.desk), so a client sees the same jobs
whichever child it reaches.

Readiness: each child answers health NOT_SERVING (and KServe ``ServerReady`` false) until the parent has
heard from every child that it listens, then SERVING. If a child dies, the parent stops the others and
exits 1. SIGTERM or SIGINT to the parent: it sends SIGTERM to every child; each one drains as a single
server does (new calls refused, calls in flight answered, running jobs marked interrupted) and the
parent exits 0 once all have exited 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing import connection, get_context
from typing import Any

from reuse.errors import FailedPrecondition, InvalidInput
from reuse.service.state import StateSettings

log = logging.getLogger(__name__)
STARTUP_TIMEOUT_S = 600.0
STOP_MARGIN_S = 30.0  # beyond the grace period, for a child to stop its jobs and exit


@dataclass(frozen=True)
class ServeSpec:
    """Everything a server process needs to build its service and server (picklable)."""

    store: str | None
    config: Any  # reuse.grpc.server.ServerConfig
    serving: Any = None  # reuse.serving.engine.ServingOptions
    state: StateSettings = StateSettings()


@dataclass(frozen=True)
class ChildUp:
    """What a child reports once it listens."""

    pid: int
    runs_jobs: bool
    jobs_line: str


def processes_count(text: str) -> int:
    """``N`` (at least 1) or ``auto`` (the CPU cores this process may use)."""
    if text.strip().lower() == "auto":
        cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        return max(1, len(cores))
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise InvalidInput(f"--processes is {text!r}; expected an integer >= 1 or 'auto'")
    return n


def build_service(spec: ServeSpec) -> Any:
    """The service a server process serves, with its runtime configured and its jobs role decided."""
    from reuse.service import Service
    from reuse.serving.runtime_choice import log_choices_to_stderr
    from reuse.trust import allow_unsafe_code, trust_modules

    log_choices_to_stderr()  # each process says which runtime serves a version as it loads it
    trust_modules(spec.state.trusted_modules)  # and $REUSE_TRUSTED_MODULES: a bad module stops it here
    allow_unsafe_code(spec.state.run_unsafe)
    service = Service(spec.store)
    service.configure_serving(spec.serving, spec.state)
    service.state.jobs  # noqa: B018 - run the store's jobs here, or find the server that does, before serving
    return service


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A socket bound (not listening) to ``host:port`` with SO_REUSEPORT, and the port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except (OSError, AttributeError) as exc:
        sock.close()
        raise FailedPrecondition(f"cannot listen on {host}:{port}: {exc}") from exc
    return sock, sock.getsockname()[1]


def _child(spec: ServeSpec, conn: Any) -> None:
    """One server process: serve until SIGTERM/SIGINT (or until the parent goes away)."""
    from reuse.errors import ReuseError
    from reuse.grpc.server import RunningServer

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        service = build_service(spec)
        server = RunningServer(service, spec.config).start(serving=False)
    except ReuseError as exc:
        conn.send(("failed", str(exc)))
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops every process
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        sys.exit(1)
    desk = service.state.jobs
    conn.send(("up", ChildUp(os.getpid(), desk.runs_jobs, service.state.jobs_line())))

    def listen() -> None:
        try:
            while True:
                if conn.recv() == "all-up":
                    server.set_serving(True)
        except (EOFError, OSError):
            stop.set()  # the parent is gone: do not outlive it

    threading.Thread(target=listen, name="parent", daemon=True).start()
    stop.wait()
    interrupted = server.stop()
    if interrupted:
        log.warning("marked %d running job(s) interrupted: %s", len(interrupted), ", ".join(interrupted))
    sys.exit(0)


def serve_processes(spec: ServeSpec, n: int, on_ready: Callable[..., None] | None = None) -> int:
    """Serve with ``n`` processes until SIGTERM/SIGINT; the exit status (0 after a clean stop).

    ``on_ready(port, ups, http_port)`` once every process listens (``http_port``: None without HTTP).

    Raises:
        FailedPrecondition: the port is taken, or a process failed to start (its error).
    """
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    reservation, port = reserve_port(spec.config.host, spec.config.port)
    http_reservation, http_port = None, None
    if spec.config.http_port is not None:
        try:
            http_reservation, http_port = reserve_port(spec.config.host, spec.config.http_port)
        except BaseException:
            reservation.close()
            raise
    spec = replace(spec, config=replace(spec.config, port=port, reuse_port=True, http_port=http_port))
    ctx = get_context("spawn")
    children, conns = [], []
    try:
        for i in range(n):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_child, args=(spec, theirs), name=f"reuse-serve-{i + 1}")
            proc.start()
            theirs.close()
            children.append(proc)
            conns.append(mine)
        ups = _wait_up(children, conns, stop)
        if ups is None:
            return 0  # stopped while starting
        reservation.close()
        if http_reservation is not None:
            http_reservation.close()
        for c in conns:
            c.send("all-up")
        if on_ready:
            on_ready(port, ups, http_port)
        status = 0
        while not stop.is_set():
            dead = connection.wait([p.sentinel for p in children], timeout=0.5)
            if dead:
                gone = [p for p in children if p.sentinel in dead]
                log.error("server process %s exited (status %s); stopping the others",
                          gone[0].pid, gone[0].exitcode)
                status = 1
                break
        return max(status, _stop_all(children, spec.config.grace_s + STOP_MARGIN_S))
    finally:
        reservation.close()
        if http_reservation is not None:
            http_reservation.close()
        _stop_all(children, spec.config.grace_s + STOP_MARGIN_S)
        for c in conns:
            c.close()


def _wait_up(children: list[Any], conns: list[Any], stop: threading.Event) -> list[ChildUp] | None:
    """Each child's report once it listens, in order; None if stopped first. Raises FailedPrecondition."""
    ups: dict[int, ChildUp] = {}
    waiting = dict(enumerate(conns))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while waiting:
        if stop.is_set():
            return None
        ready = connection.wait([*waiting.values(), *(children[i].sentinel for i in waiting)], timeout=0.5)
        if not ready and time.monotonic() > deadline:
            raise FailedPrecondition(f"server processes did not start within {STARTUP_TIMEOUT_S:.0f} s")
        for i, c in list(waiting.items()):
            if c in ready or children[i].sentinel in ready:
                try:
                    what, body = c.recv()
                except (EOFError, OSError):
                    what, body = "failed", f"server process {children[i].pid} exited while starting"
                if what == "failed":
                    raise FailedPrecondition(body)
                ups[i] = body
                del waiting[i]
    return [ups[i] for i in range(len(conns))]


def _stop_all(children: list[Any], timeout: float) -> int:
    """SIGTERM every live child, wait for each (kill after ``timeout``); the worst exit status."""
    for p in children:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    worst = 0
    for p in children:
        p.join(timeout)
        if p.is_alive():
            log.error("server process %s did not stop within %.0f s; killing it", p.pid, timeout)
            p.kill()
            p.join(5)
            worst = 1
        elif p.exitcode:
            worst = max(worst, 1)
    return worst
