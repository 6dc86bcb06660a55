"""A real Ray cluster for the tests that join one by address (``reuse advise --ray HOST:PORT``).

:func:`ray_head` runs ``ray start --head --block`` (the venv's ``ray``, next to ``sys.executable``) as a
subprocess with its own temporary folder, 2 CPUs, no dashboard and usage statistics off, and stops it by
its process id afterwards (SIGTERM: ``ray start --block`` then stops the processes it started). Not
``ray stop``: that stops every Ray process of this user on the machine, other people's included. Any
process of this cluster still alive after that (found by the cluster's own temporary folder in its
command line) is killed by its id.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0  # ray start drains its node for up to 30 s on SIGTERM


def has_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


needs_ray = pytest.mark.skipif(not has_ray(),
                               reason="the ray extra is not installed (pip install 'reuse[ray]')")


def ray_env() -> dict[str, str]:
    """This environment with usage statistics off and this checkout first on the path (the cluster's
    workers import ``reuse`` from here, as the driver does)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclass
class Head:
    address: str
    proc: subprocess.Popen
    temp_dir: str
    log: Path

    def running(self) -> bool:
        """``ray start`` has not exited and the cluster's GCS port takes connections."""
        if self.proc.poll() is not None:
            return False
        host, port = self.address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own_pids(temp_dir: str) -> list[int]:
    """The processes whose command line names this cluster's temporary folder."""
    mark, pids = temp_dir.encode(), []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@contextmanager
def ray_head(cpus: int = 2) -> Iterator[Head]:
    """A running single-node Ray cluster on 127.0.0.1; stopped (by process id) when the block ends."""
    ray_bin = Path(sys.executable).with_name("ray")
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
    log = Path(temp_dir) / "ray-start.log"
    port = _free_port()
    cmd = [str(ray_bin), "start", "--head", "--block", "--port", str(port), "--num-cpus", str(cpus),
           "--include-dashboard=false", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
           "--temp-dir", temp_dir]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=ray_env(), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    head = Head(f"127.0.0.1:{port}", proc, temp_dir, log)
    try:
        end = time.monotonic() + START_TIMEOUT
        while "--block" not in log.read_text():  # printed once the node is up
            assert proc.poll() is None, f"ray start exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < end, (
                f"ray start not up in {START_TIMEOUT} s:\n{log.read_text()[-3000:]}"
            )
            time.sleep(0.2)
        yield head
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for pid in _own_pids(temp_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
        shutil.rmtree(temp_dir, ignore_errors=True)


def past_drivers(address: str) -> list[tuple[int, bool]]:
    """``(driver pid, ended)`` of every earlier job of the cluster at ``address``, from its job table
    (read by joining the cluster, then leaving it); fails if a node of the cluster is not alive."""
    import ray
    from ray._private import state  # the job table without the dashboard

    assert not ray.is_initialized()
    ray.init(address=address, logging_level="WARNING", log_to_driver=False, configure_logging=False)
    try:
        assert all(n["Alive"] for n in ray.nodes()), ray.nodes()
        me = ray.get_runtime_context().get_job_id()
        return [(j["DriverPid"], bool(j["IsDead"])) for j in state.jobs() if j["JobID"] != me]
    finally:
        ray.shutdown()
