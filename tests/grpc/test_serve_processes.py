"""`reuse serve --processes 2` as a real subprocess: one port, the same answers as one process, the same
jobs whichever process a connection reaches, readiness, and a SIGTERM that drains every process."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
from click.testing import CliRunner
from conftest import make_mlp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_support import blobs, infer_request, wait_until

from reuse.cli import cli
from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc._proto import inference_pb2_grpc as igrpc
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc._proto import reuse_v1_pb2_grpc as rgrpc
from reuse.service import Service

ROOT = Path(__file__).resolve().parents[2]
START_S = 240  # two fresh interpreters importing TensorFlow on a busy machine


def _lines(proc: subprocess.Popen) -> queue.Queue:
    """The process's stdout lines, read on a thread, so each wait for one is bounded."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return lines


class Fresh:
    """A new connection per call (no shared subchannel), so SO_REUSEPORT picks a process each time."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __call__(self, stub: type, method: str, request, **kw):
        with grpc.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            return getattr(stub(ch), method)(request, timeout=kw.pop("timeout", 60), **kw)


def test_two_processes_on_one_port(tmp_path):
    store = tmp_path / "store"
    svc = Service(store)
    svc.register_model(make_mlp(seed=3), "mlp")
    svc.upload_dataset([blobs(tmp_path / "b.npz").read_bytes()], "blobs", format="npz")
    x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    expected = svc.infer("mlp", x).outputs[0]  # one process, the same serving path
    svc.close()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    env.pop("REUSE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", "--port", "0", "--store",
                             str(store), "--processes", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    try:
        out = _lines(proc)
        line = out.get(timeout=START_S)
        assert line.startswith("listening on 127.0.0.1:") and "2 processes, pids" in line, line
        target = line.split()[2]
        assert out.get(timeout=10).startswith("jobs: run by process pid ")
        call = Fresh(target)
        for _ in range(6):  # every process is up before the first line: all say SERVING and ready
            check = call(health_pb2_grpc.HealthStub, "Check", health_pb2.HealthCheckRequest())
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            assert call(igrpc.GRPCInferenceServiceStub, "ServerReady", ipb.ServerReadyRequest()).ready

        # Equal answers, and two processes answered: each connection asks its own process for its count.
        counts = []
        for _ in range(16):
            with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                resp = igrpc.GRPCInferenceServiceStub(ch).ModelInfer(infer_request(x), timeout=60)
                got = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(expected.shape)
                np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
                stats = rgrpc.ReuseServiceStub(ch).GetServerStats(pb.GetServerStatsRequest(), timeout=30)
                counts.append(next(m.requests for m in stats.models if m.model == "mlp:1"))
        assert counts != list(range(1, 17)), counts  # one process alone would have counted 1, 2, ..., 16

        # Jobs: started through one connection, followed and cancelled through fresh ones.
        job = call(
            rgrpc.ReuseServiceStub,
            "StartTrain",
            pb.TrainRequest(model="mlp", data="blobs", epochs=100000, batch_size=60),
        )
        seen = [call(rgrpc.ReuseServiceStub, "GetJob", pb.GetJobRequest(id=job.id)) for _ in range(6)]
        assert {j.id for j in seen} == {job.id} and {j.state for j in seen} <= {"queued", "running"}
        wait_until(lambda: call(rgrpc.ReuseServiceStub, "GetJob",
                                pb.GetJobRequest(id=job.id)).last_event.epoch > 0,
                   timeout=120)
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            stream = rgrpc.ReuseServiceStub(ch).WatchJob(pb.WatchJobRequest(id=job.id), timeout=120)
            first = next(stream)
            call(rgrpc.ReuseServiceStub, "CancelJob", pb.CancelJobRequest(id=job.id))
            rest = list(stream)
        assert rest[-1].state == "cancelled" and rest[-1].seq > first.seq
        finals = [call(rgrpc.ReuseServiceStub, "GetJob", pb.GetJobRequest(id=job.id)) for _ in range(6)]
        assert all(f == finals[0] for f in finals) and finals[0].state == "cancelled"
        listed = [[j.id for j in call(rgrpc.ReuseServiceStub, "ListJobs", pb.ListJobsRequest()).jobs]
                  for _ in range(4)]
        assert all(ids == listed[0] for ids in listed) and job.id in listed[0]

        # SIGTERM to the parent: a running job is interrupted, its watcher gets that, every process exits.
        running = call(rgrpc.ReuseServiceStub, "StartTrain", pb.TrainRequest(model="mlp", data="blobs",
                                                                              epochs=100000, batch_size=60))
        wait_until(lambda: call(rgrpc.ReuseServiceStub, "GetJob",
                                pb.GetJobRequest(id=running.id)).last_event.epoch > 0, timeout=120)
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            stream = rgrpc.ReuseServiceStub(ch).WatchJob(pb.WatchJobRequest(id=running.id), timeout=120)
            next(stream)
            proc.send_signal(signal.SIGTERM)
            tail = list(stream)
        assert tail and tail[-1].state == "interrupted"
        assert proc.wait(timeout=90) == 0
        record = json.loads((store / ".reuse" / "jobs" / f"{running.id}.json").read_text())
        assert record["state"] == "interrupted"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_processes_must_be_a_count_or_auto(tmp_path):
    r = CliRunner().invoke(cli, ["serve", "--store", str(tmp_path / "s"), "--processes", "0"])
    assert (
        r.exit_code == 1
        and r.output.splitlines()[-1] == "Error: --processes is '0'; expected an integer >= 1 or 'auto'"
    )


def test_two_processes_serve_http_on_one_port_too(tmp_path):
    """`--processes 2 --http-port 0`: the REST port is shared as the gRPC one is; readiness and inference
    answer over fresh HTTP connections with the one-process answer; SIGTERM stops every process."""
    import urllib.request

    store = tmp_path / "store"
    svc = Service(store)
    svc.register_model(make_mlp(seed=3), "mlp")
    x = np.random.default_rng(0).normal(size=(2, 8)).astype("float32")
    expected = svc.infer("mlp", x).outputs[0]
    svc.close()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    env.pop("REUSE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", "--port", "0", "--http-port", "0",
                             "--store", str(store), "--processes", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        out = _lines(proc)
        line = out.get(timeout=START_S)
        assert line.startswith("listening on 127.0.0.1:") and "2 processes, pids" in line, line
        http = out.get(timeout=10)
        assert http.startswith("http on http://127.0.0.1:")
        assert http.rstrip().endswith("(KServe v2 REST under /v2)")
        base = http.split()[2].removesuffix("/ui/")
        body = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 8],
                                       "data": x.ravel().tolist()}]}).encode()
        for _ in range(8):  # a new connection each time: the kernel picks a process
            with urllib.request.urlopen(base + "/v2/health/ready", timeout=60) as r:
                assert r.status == 200
            req = urllib.request.Request(base + "/v2/models/mlp/infer", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                got = json.loads(r.read())["outputs"][0]
            np.testing.assert_allclose(np.asarray(got["data"], np.float32).reshape(got["shape"]), expected,
                                       rtol=1e-5, atol=1e-6)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
