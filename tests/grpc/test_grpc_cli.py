"""CLI against a running server (--server), and `reuse serve` as a subprocess stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_mlp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reuse.cli import cli
from reuse.grpc.server import ServerConfig, start_in_thread
from reuse.service import Service

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "store"
    service = Service(root)
    service.register_model(make_mlp(), "mlp")
    with start_in_thread(service, ServerConfig(port=0, token="tok")) as srv:
        yield srv


@pytest.fixture
def token_file(tmp_path):
    p = tmp_path / "token"
    p.write_text("tok\n")
    return str(p)


def run(args, ok=True):
    result = CliRunner().invoke(cli, args, catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_list_remote_matches_local(server, token_file):
    remote = json.loads(run(["list", "--server", server.target, "--token-file", token_file, "--json"]).output)
    local = json.loads(run(["list", "--store", str(server.service.store.root), "--json"]).output)
    assert (
        [(m["name"], m["version"]) for m in remote]
        == [(m["name"], m["version"]) for m in local]
        == [("mlp", 1)]
    )
    assert remote[0]["input_shape"] == local[0]["input_shape"] == [None, 8]


def test_remote_errors_are_one_line(server, token_file, monkeypatch, tmp_path):
    monkeypatch.delenv("REUSE_TOKEN", raising=False)
    r = run(["list", "--server", server.target], ok=False)
    assert r.exit_code == 1
    assert (
        r.output.splitlines()[-1]
        == "Error: missing bearer token: send metadata 'authorization: Bearer <token>'"
    )
    monkeypatch.setenv("REUSE_TOKEN", "tok")
    np.save(tmp_path / "x.npy", np.zeros((1, 8), np.float32))
    r = run(["infer", "nope", "--input", str(tmp_path / "x.npy"), "--server", server.target], ok=False)
    assert r.exit_code == 1 and r.output.splitlines()[-1].startswith("Error: no model named 'nope'")
    r = run(["infer", "mlp", "--input", __file__, "--server", server.target], ok=False)
    assert r.exit_code == 1 and r.output.splitlines()[-1].startswith(f"Error: {__file__}: expected a "
                                                                     ".npy or .npz")
    r = run(["list", "--server", "127.0.0.1:1"], ok=False)
    assert r.exit_code == 1 and r.output.splitlines()[-1].startswith("Error: UNAVAILABLE: ")


def test_infer_help_says_how_to_make_the_input_and_its_commands_work(server, tmp_path, rng):
    text = run(["infer", "--help"]).output
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith("python -c ")]
    assert len(examples) == 2 and all("np.save('x.npy'" in e for e in examples)
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(7, 8)), y=np.zeros(7))  # float64, as files often are
    for example, shape in zip(examples, [(5, 8), (5, 64)], strict=True):
        code = example.removeprefix("python -c ").strip('"')
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        x = np.load(tmp_path / "x.npy")
        assert x.shape == shape and x.dtype == np.float32
        if shape == (5, 8):  # fits the server's model
            out = json.loads(run(["infer", "mlp", "--input", str(tmp_path / "x.npy"), "--json", "--store",
                                  str(server.service.store.root)]).output)
            assert np.asarray(out["outputs"]["output"]).shape == (5, 3)


def test_infer_remote_and_local(server, token_file, tmp_path, rng):
    x = rng.normal(size=(4, 8)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected = make_mlp().predict(x, verbose=0)
    for where in (["--server", server.target, "--token-file", token_file],
                  ["--store", str(server.service.store.root)]):
        out = json.loads(run(["infer", "mlp", "--input", str(tmp_path / "x.npy"), "--json", *where]).output)
        assert out["model"] == "mlp:1"
        np.testing.assert_allclose(np.asarray(out["outputs"]["output"]), expected, rtol=1e-5, atol=1e-6)


def test_jobs_and_watch_remote(server, token_file):
    job = server.service.start_job("verify", {})
    lines = run(["job", job.id, "--watch", "--json", "--server", server.target, "--token-file",
                 token_file]).output
    events = [json.loads(line) for line in lines.splitlines()]
    assert events[-1]["state"] == "succeeded" and events[0]["job_id"] == job.id
    listed = json.loads(run(["jobs", "--json", "--server", server.target, "--token-file", token_file]).output)
    assert job.id in [j["id"] for j in listed]
    local = json.loads(run(["jobs", "--json", "--store", str(server.service.store.root)]).output)
    assert job.id in [j["id"] for j in local]
    r = run(["job", job.id, "--cancel", "--server", server.target, "--token-file", token_file], ok=False)
    assert r.exit_code == 1 and r.output.splitlines()[-1].startswith(f"Error: job {job.id} already finished")


def test_serve_subprocess_exits_0_on_sigterm(tmp_path):
    store = tmp_path / "store"
    Service(store).register_model(make_mlp(), "mlp")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    env.pop("REUSE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", "--port", "0",
                             "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line + proc.stderr.read()
        target = line.split()[2]
        with grpc.insecure_channel(target) as ch:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            time.sleep(0.1)
