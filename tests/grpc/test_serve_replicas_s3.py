"""Serving replicas on two machines: two real servers on 127.0.0.1 over one s3:// store (a real moto
server), each with its own local state folder as two hosts would have. Both serve the same versions, a
version registered through one is what a bare name means on the other within the listing window, and
each machine runs its own jobs (docs/scale-out.md)."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from conftest import make_mlp
from grpc_support import infer_request, slow_kind, stubs, wait_until
from s3_server import moto_missing

from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc.server import start_in_thread
from reuse.service import Service
from reuse.store.s3_store import LIST_TTL_S

pytestmark = pytest.mark.skipif(moto_missing() is not None, reason=moto_missing() or "")


def _host(url, state, monkeypatch):
    """A server as another machine would run it: the same bucket, its own REUSE_STATE."""
    monkeypatch.setenv("REUSE_STATE", str(state))
    service = Service(url)
    service.state.kinds.register("slow", slow_kind)
    service.state.jobs  # noqa: B018 - decide the jobs role before serving, as `reuse serve` does
    return start_in_thread(service)


@pytest.fixture
def hosts(s3, tmp_path, monkeypatch):
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    url = s3.url("replicas")
    monkeypatch.setenv("REUSE_STATE", str(tmp_path / "writer"))
    Service(url).register_model(make_mlp(seed=1), "mlp")
    servers = [_host(url, tmp_path / f"host{i}", monkeypatch) for i in (1, 2)]
    chans = [stubs(s.target) for s in servers]
    yield servers, chans
    for c in chans:
        c[0].close()
    for s in servers:
        s.stop()


def _answer(infer, x, version=""):
    resp = infer.ModelInfer(infer_request(x, model="mlp", version=version), timeout=60)
    return resp.model_version, np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(len(x), -1)


def test_two_hosts_serve_the_same_versions_and_see_a_new_one(hosts, rng, tmp_path):
    servers, chans = hosts
    x = rng.normal(size=(4, 8)).astype("float32")
    (v1, a), (w1, b) = (_answer(c[1], x) for c in chans)
    assert v1 == w1 == "1" and np.array_equal(a, b)
    # Each host loaded the version through its own read cache, not a shared folder.
    assert all(list((tmp_path / f"host{i}").rglob("cache/*.h5")) for i in (1, 2))

    buf = tmp_path / "v2.h5"
    make_mlp(seed=2).save(buf)
    chunks = [pb.UploadChunk(header=pb.UploadHeader(name="mlp", format="h5")),
              pb.UploadChunk(data=buf.read_bytes())]
    assert chans[0][2].UploadModel(iter(chunks), timeout=60).version == 2
    assert _answer(chans[0][1], x)[0] == "2"  # the writer sees its own write at once
    registered = time.monotonic()
    wait_until(lambda: _answer(chans[1][1], x)[0] == "2", timeout=30)
    seen_after = time.monotonic() - registered
    version, c = _answer(chans[1][1], x)
    assert version == "2" and not np.allclose(c, b)
    assert np.array_equal(c, _answer(chans[0][1], x)[1])
    assert _answer(chans[1][1], x, version="1")[0] == "1"  # a pinned version is unaffected
    print(f"second host saw v2 after {seen_after:.2f} s (listing window {LIST_TTL_S} s)")


def test_each_host_runs_its_own_jobs(hosts):
    servers, chans = hosts
    assert all(s.service.state.jobs.runs_jobs for s in servers)
    job = chans[0][2].StartJob(pb.StartJobRequest(kind="slow", params_json='{"epochs": 1, "name": "x"}'))
    wait_until(lambda: chans[0][2].GetJob(pb.GetJobRequest(id=job.id)).state == "succeeded", timeout=60)
    with pytest.raises(grpc.RpcError) as err:
        chans[1][2].GetJob(pb.GetJobRequest(id=job.id), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
