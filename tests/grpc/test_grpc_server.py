"""A real server on 127.0.0.1 (OS-chosen port) called through real stubs."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import make_mlp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_support import infer_request, rpc_error, slow_kind, stubs, wait_until

from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc.server import ServerConfig, start_in_thread
from reuse.jobs.kinds import resolve_data
from reuse.service import Service
from reuse.serving.engine import ServingOptions

CODE = grpc.StatusCode


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("served") / "store")
    service.state.kinds.register("slow", slow_kind)
    model = make_mlp()
    service.register_model(model, "mlp")
    service.configure_serving(ServingOptions(max_batch_size=64, max_batch_delay_ms=2.0))
    server = start_in_thread(service, ServerConfig(port=0))
    channel, inference, api = stubs(server.target)
    yield {"service": service, "server": server, "model": model, "inference": inference, "api": api}
    channel.close()
    server.stop()


def _out(resp: ipb.ModelInferResponse) -> np.ndarray:
    t = resp.outputs[0]
    data = (np.frombuffer(resp.raw_output_contents[0], np.float32) if resp.raw_output_contents
            else np.asarray(t.contents.fp32_contents, np.float32))
    return data.reshape(tuple(t.shape))


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_infer_equals_local_predict(served, rng, raw):
    x = rng.normal(size=(5, 8)).astype("float32")
    resp = served["inference"].ModelInfer(infer_request(x, raw=raw))
    assert (resp.model_name, resp.model_version, resp.id) == ("mlp", "1", "req-1")
    assert bool(resp.raw_output_contents) == raw
    assert resp.outputs[0].name == "output" and resp.outputs[0].datatype == "FP32"
    local = served["model"].predict(x, verbose=0)
    np.testing.assert_allclose(_out(resp), local, rtol=1e-5, atol=1e-6)


def test_metadata_and_readiness(served):
    inf = served["inference"]
    assert inf.ServerLive(ipb.ServerLiveRequest()).live and inf.ServerReady(ipb.ServerReadyRequest()).ready
    assert inf.ServerMetadata(ipb.ServerMetadataRequest()).name == "reuse"
    assert inf.ModelReady(ipb.ModelReadyRequest(name="mlp")).ready
    meta = inf.ModelMetadata(ipb.ModelMetadataRequest(name="mlp"))
    assert meta.name == "mlp" and list(meta.versions) == ["1"] and meta.platform.startswith("keras")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("features", "FP32", [-1, 8])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("output", "FP32", [-1, 3])]


def test_32_concurrent_clients_get_their_answers_in_batches(served, rng):
    xs = [rng.normal(size=(1 + i % 4, 8)).astype("float32") for i in range(32)]
    expected = [served["model"].predict(x, verbose=0) for x in xs]
    barrier = threading.Barrier(32)
    results: dict[int, np.ndarray] = {}
    before = served["service"].serving_stats()["models"].get("mlp:1", {}).get("requests", 0)

    def client(i: int) -> None:
        channel, inference, _ = stubs(served["server"].target)
        with channel:
            barrier.wait()  # five calls in flight per client at once: 160 arrive while batches run
            calls = [inference.ModelInfer.future(infer_request(xs[i])) for _ in range(5)]
            for call in calls:
                results[i] = _out(call.result())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(32):
        np.testing.assert_allclose(results[i], expected[i], rtol=1e-5, atol=1e-6)
    stats = served["api"].GetServerStats(pb.GetServerStatsRequest())
    (mlp,) = [m for m in stats.models if m.model == "mlp:1"]
    assert mlp.requests - before >= 160
    assert mlp.max_batch_requests > 1 and any(k > 1 for k in mlp.batch_requests_histogram)


@pytest.mark.parametrize(("request_kw", "code", "details"), [
    ({"model": "nope"}, CODE.NOT_FOUND, "no model named 'nope'"),
    ({"version": "7"}, CODE.NOT_FOUND, "has no version 7"),
    ({"version": "x"}, CODE.INVALID_ARGUMENT, "expected a positive integer"),
    ({"model": "../etc"}, CODE.INVALID_ARGUMENT, "invalid model name"),
    ({"datatype": "FP64"}, CODE.INVALID_ARGUMENT, "datatype FP64, expected FP32"),
    ({"name": "pixels"}, CODE.INVALID_ARGUMENT, "takes inputs ['features']"),
])
def test_bad_requests_get_their_codes(served, request_kw, code, details):
    x = np.zeros((2, 8), np.float32)
    err = rpc_error(served["inference"].ModelInfer, infer_request(x, **request_kw))
    assert err.code() == code and details in err.details()


def test_wrong_shape_and_raw_length_name_the_expectation(served):
    inf = served["inference"]
    err = rpc_error(inf.ModelInfer, infer_request(np.zeros((2, 7), np.float32)))
    assert err.code() == CODE.INVALID_ARGUMENT and "shape [2, 7], expected [-1, 8]" in err.details()
    req = infer_request(np.zeros((2, 8), np.float32))
    req.raw_input_contents[0] = req.raw_input_contents[0][:-4]
    err = rpc_error(inf.ModelInfer, req)
    assert err.code() == CODE.INVALID_ARGUMENT
    assert "raw content has 60 bytes, expected 64 (shape [2, 8] of FP32)" in err.details()
    req = infer_request(np.zeros((2, 8), np.float32), raw=False)
    del req.inputs[0].contents.fp32_contents[-1]
    err = rpc_error(inf.ModelInfer, req)
    assert (
        err.code() == CODE.INVALID_ARGUMENT
        and "15 values in contents.fp32_contents, expected 16" in err.details()
    )


def test_new_version_is_served_as_latest_without_restart(served, rng):
    service, inf = served["service"], served["inference"]
    x = rng.normal(size=(3, 8)).astype("float32")
    v1 = _out(inf.ModelInfer(infer_request(x)))
    m2 = make_mlp(seed=5)
    service.register_model(m2, "mlp")
    resp = inf.ModelInfer(infer_request(x))
    assert resp.model_version == "2"
    np.testing.assert_allclose(_out(resp), m2.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_out(inf.ModelInfer(infer_request(x, version="1"))), v1)
    assert served["api"].DeleteVersion(pb.DeleteVersionRequest(ref="mlp:2")).deleted == "mlp:2"
    assert inf.ModelInfer(infer_request(x)).model_version == "1"
    err = rpc_error(inf.ModelInfer, infer_request(x, version="2"))
    assert err.code() == CODE.NOT_FOUND


def test_list_and_describe(served):
    api = served["api"]
    names = [m.name for m in api.ListModels(pb.ListModelsRequest()).models]
    assert "mlp" in names
    d = api.DescribeModel(pb.DescribeModelRequest(ref="mlp:1", scope="hidden[12]"))
    assert [x.name for x in d.layers] == ["hidden1", "hidden2", "hidden3", "output"]
    assert list(d.matched) == ["hidden1", "hidden2"] and list(d.unmatched) == ["hidden3", "output"]
    assert [x.matched for x in d.layers] == [True, True, False, False] and d.layers[0].params == 8 * 16 + 16
    err = rpc_error(api.DescribeModel, pb.DescribeModelRequest(ref="mlp", scope="(unclosed"))
    assert err.code() == CODE.INVALID_ARGUMENT and "(unclosed" in err.details()


def _chunks(header: pb.UploadHeader, data: bytes, size: int = 1000):
    yield pb.UploadChunk(header=header)
    for i in range(0, len(data), size):
        yield pb.UploadChunk(data=data[i:i + size])


def test_upload_model_registers_atomically(served, tmp_path):
    import keras

    service, api = served["service"], served["api"]
    path = tmp_path / "up.h5"
    keras.saving.save_model(make_mlp(seed=9), str(path))
    m = api.UploadModel(_chunks(pb.UploadHeader(name="uploaded", description="via grpc", tags={"a": "b"}),
                                path.read_bytes()))
    assert (m.name, m.version, m.description, dict(m.tags)) == ("uploaded", 1, "via grpc", {"a": "b"})
    assert service.store.resolve("uploaded").version == 1

    def store_files():
        return sorted(p.relative_to(service.store.root) for p in service.store.root.rglob("*")
                      if p.is_file() and "jobs" not in p.parts and p.name != "lock")

    before = store_files()
    bad = [(pb.UploadHeader(name="uploaded"), b"not a model" * 100, "not a h5 file"),
           (pb.UploadHeader(name="uploaded"), path.read_bytes()[:3000],
            "uploaded model: not a readable HDF5 file"),
           (pb.UploadHeader(name="Bad/Name"), path.read_bytes(), "invalid model name"),
           (pb.UploadHeader(name="uploaded", format="zip"), path.read_bytes(), "expected one of h5, keras")]
    for header, data, details in bad:
        err = rpc_error(api.UploadModel, _chunks(header, data))
        assert err.code() == CODE.INVALID_ARGUMENT and details in err.details(), err.details()
    err = rpc_error(api.UploadModel, iter([pb.UploadChunk(data=b"x")]))
    assert err.code() == CODE.INVALID_ARGUMENT and "must start with a header" in err.details()
    err = rpc_error(api.UploadModel,
                    _chunks(pb.UploadHeader(name="uploaded", unsafe=True), path.read_bytes()))
    assert err.code() == CODE.FAILED_PRECONDITION and "--allow-unsafe-uploads" in err.details()
    assert store_files() == before
    assert [v.version for v in service.store.versions("uploaded")] == [1]


def test_upload_dataset(served, tmp_path):
    api = served["api"]
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((4, 8), np.float32), y=np.arange(4))
    d = api.UploadDataset(_chunks(pb.UploadHeader(name="digits", format="npz"), path.read_bytes()))
    assert (d.name, d.format, d.size_bytes) == ("digits", "npz", path.stat().st_size)
    # stored where a job naming the dataset reads it
    assert Path(resolve_data(served["service"].store.root, "digits")).read_bytes() == path.read_bytes()
    assert [x.name for x in api.ListDatasets(pb.ListDatasetsRequest()).datasets] == ["digits"]
    err = rpc_error(api.UploadDataset,
                    _chunks(pb.UploadHeader(name="digits", format="npz"), path.read_bytes()))
    assert err.code() == CODE.ALREADY_EXISTS
    np.savez(path, z=np.zeros(3))
    err = rpc_error(api.UploadDataset,
                    _chunks(pb.UploadHeader(name="other", format="npz"), path.read_bytes()))
    assert err.code() == CODE.INVALID_ARGUMENT and "expected at least 'x'" in err.details()


def test_job_start_watch_and_result(served):
    api = served["api"]
    job = api.StartJob(pb.StartJobRequest(kind="slow", params_json='{"epochs": 4, "name": "from-job"}'))
    assert job.state in ("queued", "running") and job.kind == "slow"
    events = list(api.WatchJob(pb.WatchJobRequest(id=job.id)))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    epochs = [e for e in events if e.epochs]
    assert [e.epoch for e in epochs] == [1, 2, 3, 4] and epochs[0].losses["loss"] == 1.0
    assert all(e.eta_seconds >= 0 for e in epochs)
    assert events[-1].state == "succeeded" and events[-1].model == "from-job:1"
    got = api.GetJob(pb.GetJobRequest(id=job.id))
    assert got.state == "succeeded" and got.model == "from-job:1"
    assert job.id in [j.id for j in api.ListJobs(pb.ListJobsRequest(state="succeeded")).jobs]


def test_job_cancel_registers_nothing(served):
    api = served["api"]
    job = api.StartJob(pb.StartJobRequest(kind="slow",
                                          params_json='{"epochs": 100000, "name": "cancelled-job"}'))
    stream = api.WatchJob(pb.WatchJobRequest(id=job.id))
    for event in stream:
        if event.epoch >= 1:
            break
    assert api.CancelJob(pb.CancelJobRequest(id=job.id)).id == job.id
    wait_until(lambda: api.GetJob(pb.GetJobRequest(id=job.id)).state == "cancelled")
    stream.cancel()
    assert "cancelled-job" not in served["service"].store.names()
    err = rpc_error(api.CancelJob, pb.CancelJobRequest(id=job.id))
    assert err.code() == CODE.FAILED_PRECONDITION


def test_job_kinds_not_installed_and_unknown_jobs(served):
    api = served["api"]
    err = rpc_error(api.StartJob, pb.StartJobRequest(kind="nope", params_json="{}"))
    assert err.code() == CODE.FAILED_PRECONDITION and "job kind 'nope' is not available" in err.details()
    err = rpc_error(api.GetJob, pb.GetJobRequest(id="ffffffffffff"))
    assert err.code() == CODE.NOT_FOUND
    err = rpc_error(api.StartJob, pb.StartJobRequest(kind="slow", params_json="[1"))
    assert err.code() == CODE.INVALID_ARGUMENT


def test_health_and_reflection(served):
    channel = grpc.insecure_channel(served["server"].target)
    with channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        assert (
            health.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")).status == 1
        )
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for s in answer.list_services_response.service}
        assert {"inference.GRPCInferenceService", "reuse.v1.ReuseService", "grpc.health.v1.Health"} <= names


def test_message_too_large_is_resource_exhausted(served):
    config = ServerConfig(port=0, max_message_bytes=1 << 20)
    with start_in_thread(served["service"], config) as small:
        channel, inference, _ = stubs(small.target)
        with channel:
            x = np.zeros((40000, 8), np.float32)  # 1.28 MB of raw input
            err = rpc_error(inference.ModelInfer, infer_request(x))
            assert err.code() == CODE.RESOURCE_EXHAUSTED
            assert inference.ModelInfer(infer_request(x[:10])).model_name == "mlp"


def test_token_required_on_every_rpc_but_health(served):
    with start_in_thread(served["service"], ServerConfig(port=0, token="s3cret")) as secured:
        channel, inference, api = stubs(secured.target)
        with channel:
            for call, req in [(inference.ServerLive, ipb.ServerLiveRequest()),
                              (api.ListModels, pb.ListModelsRequest())]:
                err = rpc_error(call, req)
                assert err.code() == CODE.UNAUTHENTICATED and "missing bearer token" in err.details()
                err = rpc_error(call, req, metadata=[("authorization", "Bearer wrong")])
                assert err.code() == CODE.UNAUTHENTICATED and err.details() == "invalid bearer token"
            assert inference.ServerLive(ipb.ServerLiveRequest(),
                                        metadata=[("authorization", "Bearer s3cret")]).live
            # Every kind of call: ModelInfer (a coroutine), a response stream, a request stream, reflection.
            x = np.zeros((1, 8), np.float32)
            refl = reflection_pb2_grpc.ServerReflectionStub(channel)
            upload = iter([pb.UploadChunk(header=pb.UploadHeader(name="m"))])
            for call, req in [(inference.ModelInfer, infer_request(x)),
                              (lambda r, **kw: list(api.WatchJob(r, **kw)), pb.WatchJobRequest(id="x")),
                              (api.UploadModel, upload),
                              (lambda r, **kw: list(refl.ServerReflectionInfo(r, **kw)),
                               iter([reflection_pb2.ServerReflectionRequest(list_services="")]))]:
                err = rpc_error(call, req)
                assert err.code() == CODE.UNAUTHENTICATED and "missing bearer token" in err.details()
            ok = inference.ModelInfer(infer_request(x), metadata=[("authorization", "Bearer s3cret")])
            assert ok.model_name == "mlp"
            health = health_pb2_grpc.HealthStub(channel)
            assert (
                health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
            )


def test_stop_marks_running_jobs_interrupted(tmp_path):
    service = Service(tmp_path / "store")
    service.state.kinds.register("slow", slow_kind)
    server = start_in_thread(service)
    channel, _, api = stubs(server.target)
    with channel:
        job = api.StartJob(pb.StartJobRequest(kind="slow",
                                              params_json='{"epochs": 100000, "name": "partial"}'))
        wait_until(lambda: api.GetJob(pb.GetJobRequest(id=job.id)).state == "running")
    assert server.stop() == [job.id]
    restarted = Service(tmp_path / "store")
    assert restarted.get_job(job.id).state == "interrupted"
    assert "partial" not in restarted.store.names()


def test_unexpected_errors_are_internal_and_logged(caplog):
    """The error mapping on a real server: our errors by MRO, anything else INTERNAL and logged."""
    from concurrent.futures import ThreadPoolExecutor

    from reuse.errors import InvalidName
    from reuse.grpc.interceptor import map_errors

    def boom(request, context):
        raise RuntimeError("secret internals")

    def bad_name(request, context):
        raise InvalidName("invalid model name 'X'")

    handlers = {name: map_errors(grpc.unary_unary_rpc_method_handler(fn), f"/t.T/{name}")
                for name, fn in (("Boom", boom), ("BadName", bad_name))}
    server = grpc.server(ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.T", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with caplog.at_level(logging.ERROR, logger="reuse.grpc.interceptor"), \
                grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            err = rpc_error(ch.unary_unary("/t.T/Boom"), b"")
            assert err.code() == CODE.INTERNAL and "secret" not in err.details()
            err = rpc_error(ch.unary_unary("/t.T/BadName"), b"")
            assert err.code() == CODE.INVALID_ARGUMENT and err.details() == "invalid model name 'X'"
        assert "secret internals" in caplog.text and "Traceback" in caplog.text
    finally:
        server.stop(0)


def test_tls(served, tmp_path):
    import shutil
    import subprocess

    from reuse.client import ReuseClient

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    with start_in_thread(served["service"], ServerConfig(port=0, tls_cert=cert, tls_key=key)) as secure:
        with ReuseClient(secure.target, tls_ca=cert) as c:
            assert c.server_live() and "mlp" in [m.name for m in c.list_models()]
        channel, inference, _ = stubs(secure.target)  # plaintext to a TLS port fails
        with channel:
            assert rpc_error(inference.ServerLive, ipb.ServerLiveRequest(), timeout=5).code() in (
                CODE.UNAVAILABLE, CODE.DEADLINE_EXCEEDED)
