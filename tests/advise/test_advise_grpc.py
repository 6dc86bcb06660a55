"""The advise job through a real gRPC server: StartAdvise, streamed progress, result, bad options."""

from __future__ import annotations

import json
import os

import grpc
import numpy as np
import pytest
from advise_helpers import FAST, shared_env
from grpc_support import rpc_error, stubs, wait_until
from ray_helpers import needs_ray, past_drivers

from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc.server import start_in_thread
from reuse.service import Service
from reuse.store import ModelStore

CODE = grpc.StatusCode


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    env = shared_env(tmp_path_factory)
    service = Service(env.store)
    with start_in_thread(service) as server:
        channel, _, api = stubs(server.target)
        for name in ("b_train", "b_val"):
            data = np.load(env.files[name])
            path = tmp_path_factory.mktemp("up") / f"{name}.npz"
            np.savez(path, x=data["x"], y=data["y"])
            api.UploadDataset(
                iter(
                    [
                        pb.UploadChunk(header=pb.UploadHeader(name=name.replace("_", "-"), format="npz")),
                        pb.UploadChunk(data=path.read_bytes()),
                    ]
                )
            )
        yield api, env
        channel.close()


def test_advise_job_streams_one_event_per_run_and_registers(served):
    api, env = served
    options = {**FAST, "val": "b-val", "depths": [0, 1], "finetune": False, "epochs": 10,
               "register": "remote"}
    job = api.StartAdvise(pb.AdviseRequest(model="blind", data="b-train", options_json=json.dumps(options)))
    events = list(api.WatchJob(pb.WatchJobRequest(id=job.id), timeout=120))
    assert events[-1].state == "succeeded", events[-1].error
    runs = [e for e in events if e.epochs == 4 and e.epoch >= 1]
    assert [e.epoch for e in runs] == [1, 2, 3, 4] and all("val_accuracy" in e.metrics for e in runs)
    assert runs[0].message.startswith("scratch, seed 0: val_accuracy ")
    done = api.GetJob(pb.GetJobRequest(id=job.id))
    result = json.loads(done.result_json)
    assert done.model == result["registered"] == "remote:1" == events[-1].model
    assert [r["candidate"] for r in result["rows"]] == ["scratch", "reuse 1 frozen"]
    assert result["recommendation"]["candidate"] == "scratch"
    assert ModelStore(env.store).info("remote:1").lineage["operation"] == "advise"


@pytest.mark.parametrize(("options", "error"), [
    ({"plot": "/tmp/x.png"}, "advise job: unknown parameter 'plot'"),
    ({"seeds": 0}, "advise job: parameter 'seeds' is 0; expected an integer >= 1"),
    ({"jobs": "two"}, "advise job: parameter 'jobs' is 'two'; expected an integer"),
    ({"register": "../up"}, "invalid model name '../up'"),
    ({"val": "/etc/passwd"}, "parameter 'val' is '/etc/passwd': expected the name of an uploaded dataset"),
    ({"patience": 0}, "invalid patience 0: expected an integer >= 1"),
])
def test_bad_advise_options_are_refused_before_a_job_starts(served, options, error):
    api, _ = served
    before = len(api.ListJobs(pb.ListJobsRequest()).jobs)
    err = rpc_error(api.StartAdvise,
                    pb.AdviseRequest(model="blind", data="b-train", options_json=json.dumps(options)))
    assert err.code() == CODE.INVALID_ARGUMENT and error in err.details(), err.details()
    assert len(api.ListJobs(pb.ListJobsRequest()).jobs) == before


def test_cancelled_advise_job_registers_nothing(served):
    api, env = served
    options = {**FAST, "val": "b-val", "depths": "0..2", "seeds": 3, "epochs": 60,
               "register": "cancelled-advice"}
    job = api.StartAdvise(pb.AdviseRequest(model="blind", data="b-train", options_json=json.dumps(options)))
    for event in api.WatchJob(pb.WatchJobRequest(id=job.id), timeout=120):
        if event.epoch >= 1:
            break
    api.CancelJob(pb.CancelJobRequest(id=job.id))
    wait_until(lambda: api.GetJob(pb.GetJobRequest(id=job.id)).state == "cancelled", timeout=60)
    assert "cancelled-advice" not in ModelStore(env.store).names()


@needs_ray
def test_advise_job_with_a_ray_address_joins_the_cluster_and_leaves_it_running(served, ray_cluster):
    """The server process is the Ray driver: it joins the cluster for the job, then only disconnects."""
    import ray

    api, _ = served
    options = {**FAST, "val": "b-val", "depths": [0, 1], "seeds": 1, "epochs": 6, "jobs": 2,
               "ray": ray_cluster.address}
    job = api.StartAdvise(pb.AdviseRequest(model="blind", data="b-train", options_json=json.dumps(options)))
    events = list(api.WatchJob(pb.WatchJobRequest(id=job.id), timeout=240))
    assert events[-1].state == "succeeded", events[-1].error
    result = json.loads(api.GetJob(pb.GetJobRequest(id=job.id)).result_json)
    assert result["settings"]["ray"] == ray_cluster.address and result["not_run"] == []
    assert not [w for w in result["warnings"] if " failed: " in w], result["warnings"]
    assert [(r["candidate"], len(r["scores"])) for r in result["rows"]] == [
        ("scratch", 1), ("reuse 1 frozen", 1), ("reuse 1 fine-tuned", 1)]
    assert [e.epoch for e in events if e.epochs == 3 and e.epoch >= 1] == [1, 2, 3]  # one event per run
    assert not ray.is_initialized()  # disconnected after the job
    assert (os.getpid(), True) in past_drivers(ray_cluster.address) and ray_cluster.running()
