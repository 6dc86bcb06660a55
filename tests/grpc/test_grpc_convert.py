"""Domain values through their protobuf messages and back (reuse/grpc/convert*.py): what the servicers
send is what the client gets, field for field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from reuse.graph.select import Selection
from reuse.graph.signature import ModelSignature, TensorSpec
from reuse.grpc import convert
from reuse.grpc import convert_mgmt as cm
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.jobs import JobEvent, JobRecord
from reuse.jobs.kinds import TRAIN_OPTIONS
from reuse.store import LayerInfo, ModelInfo
from reuse.store.describe import ModelDescription
from reuse.store.uploads import DatasetInfo

EVENT = JobEvent(job_id="0123456789ab", seq=7, state="running", epoch=3, epochs=5, losses={"loss": 0.5},
                 metrics={"accuracy": 0.75}, eta_s=1.5, message="train", model="m:2", error="e", time="t",
                 stage="train_finished", task="finetune", label="seed 1", phase=2, phases=3, samples=60,
                 val_samples=12, steps_per_epoch=4, cached_layers=("hidden1", "hidden2"), stopped_early=True,
                 best_epoch=2, rows_done=300, rows_total=23000)


def test_every_event_field_is_set_in_the_example_and_crosses_the_wire():
    defaults = JobEvent(job_id="", seq=0, state="")
    unset = [
        f.name
        for f in dataclasses.fields(JobEvent)
        if f.name not in ("job_id", "seq", "state") and getattr(EVENT, f.name) == getattr(defaults, f.name)
    ]
    assert unset == []
    assert cm.event_of(cm.event_pb(EVENT)) == EVENT
    assert cm.event_of(cm.event_pb(defaults)) == defaults


def test_job_record_round_trip_with_and_without_last_event():
    record = JobRecord(id="0123456789ab", kind="train", params={"model": "m", "epochs": 3}, state="succeeded",
                       created="c", started="s", finished="f",
                       result={"model": "m:2", "metrics": {"loss": 0.1}}, error="", last_event=EVENT)
    assert cm.job_of(cm.job_pb(record)) == record
    bare = dataclasses.replace(record, last_event=None, result={})
    assert cm.job_of(cm.job_pb(bare)) == bare


def test_model_description_and_dataset_round_trip():
    info = ModelInfo(name="m", version=2, path=Path("/store/m/v2.h5"), created="now", description="d",
                     tags={"k": "v"}, input_shape=[None, 8], output_shape=[None, 3],
                     class_names=["a", "b", "c"], metrics={"accuracy": 0.5}, lineage={"parent": "m:1"},
                     settings={"epochs": 3}, params=99, size_bytes=1234)
    assert cm.model_of(cm.model_pb(info)) == info
    layers = (LayerInfo("hidden1", "Dense", [None, 16], 144, True, 0, ("features",)),
              LayerInfo("backbone/conv", "Conv2D", [None, 4, 4, 2], 20, False, 1, ()))
    for selection in (None, Selection("hidden.*", "full", ("hidden1",), ("backbone/conv",))):
        d = ModelDescription(info=info, versions=(1, 2), layers=layers, selection=selection)
        assert cm.description_of(cm.description_pb(d)) == d
    ds = DatasetInfo(name="blobs", format="npz", size_bytes=10, sha256="ab", created="c", description="x",
                     tags={"a": "b"}, path="/server/only")
    # the server's path stays there
    assert cm.dataset_of(cm.dataset_pb(ds)) == dataclasses.replace(ds, path="")


@pytest.mark.parametrize("scope", [None, "hidden[12]"])
def test_no_scope_is_none_in_the_domain_and_empty_on_the_wire(scope):
    req = cm.describe_request("m:2", scope, "prefix")
    assert (req.ref, req.scope, req.match) == ("m:2", scope or "", "prefix")
    assert cm.describe_options(pb.DescribeModelRequest.FromString(req.SerializeToString())) == {
        "scope": scope, "match": "prefix"}
    assert cm.describe_options(pb.DescribeModelRequest(ref="m")) == {"scope": None, "match": "full"}


def test_stats_round_trip():
    stats = {"cache_bytes": 5, "cache_limit_bytes": 9,
             "models": {"m:1": {"requests": 3, "rows": 7, "batches": 2, "max_batch_requests": 2,
                                "histogram": {1: 1, 2: 1}, "runtime": "onnx",
                                "runtime_reason": "ONNX export matches Keras"}}}
    assert cm.stats_of(cm.stats_pb(stats)) == stats


def test_the_train_request_carries_the_one_option_list():
    """TRAIN_OPTIONS (reuse.jobs.kinds) is the list; the proto must carry each, as an explicit-presence
    field, so an option left out is not sent as its zero value."""
    fields = pb.TrainRequest.DESCRIPTOR.fields_by_name
    assert set(TRAIN_OPTIONS) <= set(fields)
    optional = [n for n in TRAIN_OPTIONS if not fields[n].has_presence and n != "optimizer"]
    assert optional == []
    assert cm.params_of(pb.TrainRequest(model="m", data="d", data_parallel=True)) == {
        "model": "m", "data": "d", "data_parallel": True}


SIG = ModelSignature("m", 3, (TensorSpec("x", "float32", (None, 4)), TensorSpec("ids", "int64", (None, 2))),
                     (TensorSpec("out", "float32", (None, 3)),))


def test_signature_through_model_metadata():
    assert convert.signature_of(convert.metadata_response(SIG, [1, 3], "keras_tensorflow")) == SIG
    assert convert.signature_of(convert.metadata_response(SIG, [1, 3], "p"), "1").version == 1


@pytest.mark.parametrize("raw", [True, False])
def test_infer_request_and_response_both_ways(raw):
    rng = np.random.default_rng(0)
    inputs = {"ids": rng.integers(0, 9, (2, 2)), "x": rng.normal(size=(2, 4)).astype("float32")}
    req = convert.infer_request("m", "3", inputs, raw=raw)
    arrays, picked = convert.decode_request(req, SIG)
    np.testing.assert_array_equal(arrays[0], inputs["x"])
    np.testing.assert_array_equal(arrays[1], inputs["ids"])
    out = rng.normal(size=(2, 3)).astype("float32")
    decoded = convert.decode_outputs(convert.encode_response(req, SIG, [out], picked))
    assert list(decoded) == ["out"]
    np.testing.assert_array_equal(decoded["out"], out)
