"""Train, fine-tune and build jobs through a real server: progress, cancel, restart, bad parameters."""

from __future__ import annotations

import json
import threading

import grpc
import keras
import pytest
from conftest import make_mlp
from grpc_support import blobs, rpc_error, stubs, wait_until

from reuse.errors import Cancelled
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc.server import start_in_thread
from reuse.remote import RemoteService
from reuse.service import Service
from reuse.train.events import EpochEnd, TrainFinished, TrainStarted

CODE = grpc.StatusCode


def upload(api, path, name):
    chunks = [pb.UploadChunk(header=pb.UploadHeader(name=name, format="npz")),
              pb.UploadChunk(data=path.read_bytes())]
    return api.UploadDataset(iter(chunks))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("wired") / "store"
    service = Service(root)
    service.register_model(make_mlp(), "mlp")
    with start_in_thread(service) as server:
        channel, _, api = stubs(server.target)
        data = blobs(tmp_path_factory.mktemp("data") / "blobs.npz")
        upload(api, data, "blobs")
        yield {"server": server, "api": api, "store": service.store, "data": str(data)}
        channel.close()


def watch(api, job_id):
    return list(api.WatchJob(pb.WatchJobRequest(id=job_id), timeout=120))


def test_train_on_uploaded_dataset_streams_epochs_and_registers(served):
    api, store = served["api"], served["store"]
    before = [i.version for i in store.versions("mlp")]
    val = str(store.state_dir / "datasets" / "blobs.npz")  # a path inside the datasets folder is allowed
    job = api.StartTrain(pb.TrainRequest(model="mlp:1", data="blobs", val=val, epochs=3, batch_size=16,
                                         seed=0, optimizer="sgd", lr=0.05, description="trained remotely"))
    assert job.kind == "train" and job.state in ("queued", "running")
    events = watch(api, job.id)
    epochs = [e for e in events if e.state == "running" and e.epoch > 0 and "finished" not in e.message]
    assert [e.epoch for e in epochs] == [1, 2, 3] and {e.epochs for e in epochs} == {3}
    assert set(epochs[-1].losses) == {"loss", "val_loss"} and set(epochs[-1].metrics) == {
        "accuracy",
        "val_accuracy",
    }
    assert epochs[-1].eta_seconds == pytest.approx(0.0, abs=1e-6) and epochs[0].eta_seconds >= 0
    # Each training event travels as fields (docs/grpc-api.md), the message is for people.
    stages = [(e.stage, e.epoch) for e in events if e.stage]
    assert stages == [("train_started", 0), ("epoch_end", 1), ("epoch_end", 2), ("epoch_end", 3),
                      ("train_finished", 3)]
    started = next(e for e in events if e.stage == "train_started")
    assert (started.task, started.phase, started.phases,
            started.samples, started.epochs) == ("train", 1, 1, 60, 3)
    assert started.val_samples == 60 and started.steps_per_epoch == 4
    finished = next(e for e in events if e.stage == "train_finished")
    assert not finished.stopped_early and finished.best_epoch == 0
    assert set(finished.metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert events[-1].state == "succeeded"
    ref = events[-1].model
    assert ref == f"mlp:{max(before) + 1}"
    info = store.info(ref)
    assert info.description == "trained remotely" and info.lineage["parent"] == "mlp:1"
    assert info.lineage["steps"][-1]["op"] == "train" and info.settings["epochs"] == 3
    done = api.GetJob(pb.GetJobRequest(id=job.id))
    result = json.loads(done.result_json)
    assert done.model == ref and result["metrics"] == pytest.approx(info.metrics)
    assert set(result["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert result["epochs_run"] == 3 and result["parent"] == "mlp:1"


def test_cancel_mid_training_registers_nothing(served):
    api, store = served["api"], served["store"]
    before = [i.version for i in store.versions("mlp")]
    job = api.StartTrain(pb.TrainRequest(model="mlp:1", data="blobs", epochs=100000, batch_size=60))
    stream = api.WatchJob(pb.WatchJobRequest(id=job.id), timeout=120)
    for ev in stream:
        if ev.epoch > 0:
            break  # training is under way
    assert api.CancelJob(pb.CancelJobRequest(id=job.id)).id == job.id
    rest = list(api.WatchJob(pb.WatchJobRequest(id=job.id), timeout=120))
    assert rest[-1].state == "cancelled" and not rest[-1].model
    assert [i.version for i in store.versions("mlp")] == before


def test_remote_train_feeds_the_local_progress_callback_and_honours_cancel(served):
    remote = RemoteService(served["server"].target)
    try:
        events = []
        # A local file: uploaded first as a dataset named for its content, then referenced by name.
        o = remote.train_model("mlp:1", served["data"], options={"epochs": 2, "batch_size": 30},
                               progress=events.append)
        kinds = [type(e) for e in events]
        assert kinds == [TrainStarted, EpochEnd, EpochEnd, TrainFinished]
        assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2]
        assert o.parent == "mlp:1" and o.result.epochs_run == 2 and o.info.ref == o.to_dict()["model"]

        before = [i.version for i in served["store"].versions("mlp")]
        cancel = threading.Event()

        def stop_at_first_epoch(ev):
            if isinstance(ev, EpochEnd):
                cancel.set()

        with pytest.raises(Cancelled, match="cancelled"):
            remote.train_model("mlp:1", served["data"], options={"epochs": 100000, "batch_size": 60},
                               progress=stop_at_first_epoch, cancel=cancel)
        assert [i.version for i in served["store"].versions("mlp")] == before
    finally:
        remote.close()


def test_build_rpc_registers_with_lineage(served):
    api, store = served["api"], served["store"]
    head = json.dumps({"layers": [{"type": "dense", "units": 6, "activation": "relu"}]})
    job = api.Build(pb.BuildRequest(name="child", base="mlp:1", reuse="hidden[12]", trainable="hidden2",
                                    head=head, classes=2, seed=1, tags={"team": "a"}), timeout=120)
    assert job.state == "succeeded" and job.model == "child:1", job.error
    info = store.info("child:1")
    assert info.lineage["base"] == {"name": "mlp", "version": 1} and info.lineage["scope"] == "hidden[12]"
    assert [x["name"] for x in info.lineage["layers"]] == ["hidden1", "hidden2"]
    assert info.tags == {"team": "a"} and info.output_shape == [None, 2]
    assert json.loads(job.result_json)["lineage"] == info.lineage
    # A scope that selects nothing is refused at start, before any job exists.
    jobs = len(api.ListJobs(pb.ListJobsRequest()).jobs)
    err = rpc_error(api.Build, pb.BuildRequest(name="child", base="mlp:1", reuse="nothing.*", classes=2))
    assert err.code() == CODE.INVALID_ARGUMENT and "nothing.*" in err.details()
    assert len(api.ListJobs(pb.ListJobsRequest()).jobs) == jobs
    # So is a selection that is not a part of the graph that can stand alone (a gap), naming the layer.
    err = rpc_error(api.Build,
                    pb.BuildRequest(name="child", base="mlp:1", reuse="hidden1|hidden3", classes=2))
    assert err.code() == CODE.INVALID_ARGUMENT and "hidden2" in err.details()
    assert len(api.ListJobs(pb.ListJobsRequest()).jobs) == jobs
    # Errors found only while building (the weights do not fit the new input) fail the job and name it.
    job = api.Build(pb.BuildRequest(name="child", base="mlp:1", reuse="hidden1", classes=2, input_shape=[5]),
                    timeout=120)
    assert job.state == "failed" and "hidden1" in job.error, job.error
    assert json.loads(job.result_json)["error_type"] == "IncompatibleShapes"


def test_data_parallel_is_carried_to_training(served):
    """The TrainRequest's data_parallel reaches the job's TrainConfig: refused at start on TensorFlow, as
    `reuse train --data-parallel` is refused locally, and recorded in the trained version's settings on
    JAX."""
    api, store = served["api"], served["store"]
    request = pb.TrainRequest(model="mlp:1", data="blobs", epochs=1, batch_size=30, data_parallel=True)
    if keras.backend.backend() != "jax":
        jobs = len(api.ListJobs(pb.ListJobsRequest()).jobs)
        err = rpc_error(api.StartTrain, request)
        assert err.code() == CODE.INVALID_ARGUMENT, err.details()
        assert err.details() == ("data-parallel training needs the JAX backend (KERAS_BACKEND=jax, with "
                                 "the jax extra: pip install 'reuse[jax]'); this process runs 'tensorflow'")
        assert len(api.ListJobs(pb.ListJobsRequest()).jobs) == jobs
        return
    job = api.StartTrain(request)
    events = watch(api, job.id)
    assert events[-1].state == "succeeded", events[-1].error
    assert store.info(events[-1].model).settings["data_parallel"] is True


@pytest.mark.parametrize(("call", "code", "text"), [
    (lambda api: api.StartTrain(pb.TrainRequest(model="mlp", data="blobs", epochs=0)),
     CODE.INVALID_ARGUMENT, "parameter 'epochs' is 0"),
    (lambda api: api.StartJob(pb.StartJobRequest(kind="train",
                                                 params_json='{"model": "mlp", "data": "blobs", '
                                                                           '"epochz": 3}')),
     CODE.INVALID_ARGUMENT, "unknown parameter 'epochz'"),
    (lambda api: api.StartJob(pb.StartJobRequest(kind="train",
                                                 params_json='{"model": "mlp", "data": "blobs", '
                                                                           '"epochs": "ten"}')),
     CODE.INVALID_ARGUMENT, "parameter 'epochs' is 'ten'; expected an integer"),
    (lambda api: api.StartTrain(pb.TrainRequest(model="mlp", data="/etc/passwd")),
     CODE.INVALID_ARGUMENT, "parameter 'data' is '/etc/passwd'"),
    (lambda api: api.StartTrain(pb.TrainRequest(model="mlp", data="blobs", val="../../blobs.npz")),
     CODE.INVALID_ARGUMENT, "parameter 'val' is '../../blobs.npz'"),
    (lambda api: api.StartTrain(pb.TrainRequest(model="mlp", data="nosuch")), CODE.NOT_FOUND,
     "no dataset named"),
    (lambda api: api.StartTrain(pb.TrainRequest(model="nope", data="blobs")), CODE.NOT_FOUND,
     "no model named"),
    (lambda api: api.StartTrain(pb.TrainRequest(data="blobs")), CODE.INVALID_ARGUMENT,
     "parameter 'model' is required"),
    (lambda api: api.StartTrain(pb.TrainRequest(model="mlp", data="blobs", optimizer="bogus")),
     CODE.INVALID_ARGUMENT, "invalid optimizer 'bogus'"),
    (lambda api: api.StartFinetune(pb.FinetuneRequest(train=pb.TrainRequest(model="mlp", data="blobs"))),
     CODE.INVALID_ARGUMENT, "parameter 'unfreeze' is required"),
    (lambda api: api.Build(pb.BuildRequest(name="x", base="mlp")), CODE.INVALID_ARGUMENT,
     "parameter 'reuse' is required"),
    (lambda api: api.Build(pb.BuildRequest(name="x", base="mlp", reuse="hidden1", head="dense:zero")),
     CODE.INVALID_ARGUMENT, "dense:zero"),
    (lambda api: api.Build(pb.BuildRequest(name="../x", base="mlp", reuse="hidden1")), CODE.INVALID_ARGUMENT,
     "invalid model name '../x'"),
])
def test_bad_parameters_are_refused_at_start_naming_the_field(served, call, code, text):
    jobs_before = len(served["api"].ListJobs(pb.ListJobsRequest()).jobs)
    err = rpc_error(call, served["api"])
    assert err.code() == code and text in err.details(), err.details()
    assert len(served["api"].ListJobs(pb.ListJobsRequest()).jobs) == jobs_before


def test_restart_shows_finished_jobs_and_interrupts_running_ones(tmp_path):
    root = tmp_path / "store"
    service = Service(root)
    service.register_model(make_mlp(), "mlp")
    server = start_in_thread(service)
    channel, _, api = stubs(server.target)
    upload(api, blobs(tmp_path / "b.npz"), "blobs")
    built = api.Build(pb.BuildRequest(name="child", base="mlp", reuse="hidden1", classes=3), timeout=120)
    running = api.StartTrain(pb.TrainRequest(model="mlp", data="blobs", epochs=100000, batch_size=60))
    wait_until(lambda: api.GetJob(pb.GetJobRequest(id=running.id)).last_event.epoch > 0, timeout=60)
    channel.close()
    assert server.stop() == [running.id]

    service2 = Service(root)
    with start_in_thread(service2) as server2:
        channel, _, api = stubs(server2.target)
        jobs = {j.id: j for j in api.ListJobs(pb.ListJobsRequest()).jobs}
        assert jobs[built.id].state == "succeeded" and jobs[built.id].model == "child:1"
        assert jobs[running.id].state == "interrupted" and not jobs[running.id].model
        assert "server stopped" in jobs[running.id].error
        assert [i.version for i in service2.store.versions("mlp")] == [1]  # no partial version
        events = list(api.WatchJob(pb.WatchJobRequest(id=running.id), timeout=30))
        assert events[-1].state == "interrupted"
        channel.close()
