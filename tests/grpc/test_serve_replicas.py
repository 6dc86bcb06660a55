"""Serving replicas: two real servers on 127.0.0.1 over one store serve the same versions, see a new
version on the next request, and show the same jobs (the first runs them, the second hands them over)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_mlp
from grpc_support import infer_request, slow_kind, stubs, wait_until

from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc.server import start_in_thread
from reuse.service import Service


def _served(root):
    service = Service(root)
    service.state.kinds.register("slow", slow_kind)
    service.state.jobs  # noqa: B018 - decide the jobs role before serving, as `reuse serve` does
    return start_in_thread(service)


@pytest.fixture
def two(tmp_path):
    root = tmp_path / "store"
    Service(root).register_model(make_mlp(seed=1), "mlp")
    first = _served(root)
    second = _served(root)
    chans = [stubs(first.target), stubs(second.target)]
    yield first, second, [c[1] for c in chans], [c[2] for c in chans]
    for c in chans:
        c[0].close()
    second.stop()
    first.stop()


def _outputs(infer, x, model="mlp"):
    resp = infer.ModelInfer(infer_request(x, model=model), timeout=60)
    return resp.model_version, np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(len(x), -1)


def test_the_first_runs_jobs_and_the_second_says_it_is_a_replica(two):
    first, second, _, _ = two
    assert first.service.state.jobs.runs_jobs and not second.service.state.jobs.runs_jobs
    assert first.service.state.jobs_line().startswith("jobs: run by this process")
    line = second.service.state.jobs_line()
    assert line.startswith("jobs: run by another server of this store (pid ") and "serving replica" in line


def test_both_serve_the_same_answers_and_a_new_version_on_the_next_request(two, rng):
    first, second, infers, _ = two
    x = rng.normal(size=(4, 8)).astype("float32")
    (v1, a), (w1, b) = _outputs(infers[0], x), _outputs(infers[1], x)
    assert v1 == w1 == "1" and np.array_equal(a, b)
    # A new version registered through one server (here: an upload to the first) ...
    buf = first.service.store.root.parent / "v2.h5"
    make_mlp(seed=2).save(buf)
    chunks = [pb.UploadChunk(header=pb.UploadHeader(name="mlp", format="h5")),
              pb.UploadChunk(data=buf.read_bytes())]
    assert stubs(first.target)[2].UploadModel(iter(chunks), timeout=60).version == 2
    # ... is what "mlp" means on the other from its next request: a bare name is resolved per request.
    version, c = _outputs(infers[1], x)
    assert version == "2" and not np.allclose(c, b)
    assert np.array_equal(c, _outputs(infers[0], x)[1])
    meta = infers[1].ModelMetadata(ipb.ModelMetadataRequest(name="mlp"), timeout=30)
    assert list(meta.versions) == ["1", "2"]
    assert _outputs(infers[1], x, "mlp")[0] == "2"
    pinned = infers[1].ModelInfer(infer_request(x, model="mlp", version="1"), timeout=30)
    assert pinned.model_version == "1"


def test_jobs_are_the_same_whichever_server_is_asked(two):
    _, _, _, apis = two
    job = apis[1].StartJob(pb.StartJobRequest(kind="slow", params_json='{"epochs": 10000, "name": "never"}'))
    assert apis[0].GetJob(pb.GetJobRequest(id=job.id)).id == job.id  # known to the runner once started
    wait_until(lambda: apis[1].GetJob(pb.GetJobRequest(id=job.id)).last_event.epoch > 1, timeout=30)
    stream = apis[1].WatchJob(pb.WatchJobRequest(id=job.id), timeout=60)
    first_event = next(stream)
    apis[1].CancelJob(pb.CancelJobRequest(id=job.id), timeout=30)
    rest = list(stream)
    assert rest[-1].state == "cancelled" and first_event.seq < rest[-1].seq
    assert [e.seq for e in [first_event, *rest]] == list(range(first_event.seq, rest[-1].seq + 1))
    on = [api.GetJob(pb.GetJobRequest(id=job.id)) for api in apis]
    assert {j.state for j in on} == {"cancelled"} and on[0] == on[1]
    listed = [[j.id for j in api.ListJobs(pb.ListJobsRequest(kind="slow")).jobs] for api in apis]
    assert listed[0] == listed[1] and job.id in listed[0]


def test_the_replica_takes_over_the_jobs_when_the_first_server_stops(two):
    first, second, _, apis = two
    running = apis[0].StartJob(pb.StartJobRequest(kind="slow",
                                                  params_json='{"epochs": 10000, "name": "never"}'))
    wait_until(lambda: apis[1].GetJob(pb.GetJobRequest(id=running.id)).state == "running", timeout=30)
    assert first.stop() == [running.id]
    wait_until(lambda: second.service.state.jobs.runs_jobs, timeout=30)
    assert apis[1].GetJob(pb.GetJobRequest(id=running.id)).state == "interrupted"
    job = apis[1].StartJob(pb.StartJobRequest(kind="slow", params_json='{"epochs": 1, "name": "after"}'))
    wait_until(lambda: apis[1].GetJob(pb.GetJobRequest(id=job.id)).state == "succeeded", timeout=60)
