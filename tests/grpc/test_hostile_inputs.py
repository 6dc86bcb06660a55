"""Hostile inputs against one real server (127.0.0.1, OS-chosen port) and the CLI.

Table-driven and bounded: every case is one call that must be refused with the right status and a short,
readable message, leaving no job record and the store as it was. The soak is 200 requests from 16
threads, mixed with refused ones, with no error on the good ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_mlp
from grpc_support import infer_request, rpc_error, stubs

from reuse.cli import cli
from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc.server import ServerConfig, start_in_thread
from reuse.service import Service

CODE = grpc.StatusCode
ROOT = Path(__file__).resolve().parents[2]
MAX_DETAILS = 1000  # far below a client's 8 KiB metadata limit


def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "store"
    service = Service(root)
    model = make_mlp()
    service.register_model(model, "mlp")
    data = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    x = (rng.normal(size=(30, 8)) + 3.0 * np.eye(8)[y]).astype("float32")
    nan_x = x.copy()
    nan_x[[1, 4], 2] = np.nan
    nan_x[7, 0] = np.inf
    sets = {"blobs": (x, y), "nanx": (nan_x, y), "wide": (x[:, :7], y), "badlabels": (x, y + 5)}
    for name, (xs, ys) in sets.items():
        path = _npz(data / f"{name}.npz", xs, ys)
        service.upload_dataset([path.read_bytes()], name, format="npz")
    with start_in_thread(service, ServerConfig(port=0, max_message_bytes=4 << 20)) as server:
        channel, inference, api = stubs(server.target)
        yield {"service": service, "server": server, "inference": inference, "api": api, "model": model,
               "root": root, "data": data}
        channel.close()


def _refused(served, call, code, *texts):
    """The call fails with ``code``, its details hold every text and stay short; no job, store unchanged."""
    api, store = served["api"], served["service"].store
    jobs = len(api.ListJobs(pb.ListJobsRequest()).jobs)
    models = [(i.name, i.version) for i in store.list()]
    err = rpc_error(call, served)
    assert err.code() == code, (err.code(), err.details()[:300])
    for text in texts:
        assert text in err.details(), err.details()[:2000]
    assert len(err.details()) <= MAX_DETAILS, len(err.details())
    assert len(api.ListJobs(pb.ListJobsRequest()).jobs) == jobs
    assert [(i.name, i.version) for i in store.list()] == models
    return err


def _shape_request(shape, raw=True, model="mlp"):
    req = ipb.ModelInferRequest(model_name=model)
    req.inputs.add(name="features", datatype="FP32", shape=shape)
    if raw:
        req.raw_input_contents.append(b"\0" * 64)
    else:
        req.inputs[0].contents.fp32_contents.extend([0.0] * 16)
    return req


# -- 1. shapes whose element count overflows int64 ---------------------------------------------------
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("shape", [[2**61, 8], [2**62, 8], [2**60, 8], [2**63 - 1, 8], [3, 2**61 + 1]],
                         ids=["wraps-to-0", "wraps-to-0b", "wraps-negative", "max-int64-rows", "huge-dim"])
def test_shapes_too_large_for_any_message_are_refused_naming_the_shape(served, shape, raw):
    if shape[1] != 8:  # the signature refuses a wrong feature count before any counting
        _refused(served, lambda s: s["inference"].ModelInfer(_shape_request(shape, raw)),
                 CODE.INVALID_ARGUMENT, f"shape {shape}")
        return
    _refused(served, lambda s: s["inference"].ModelInfer(_shape_request(shape, raw)), CODE.INVALID_ARGUMENT,
             f"shape {shape}", "message size limit")


# -- 2. versions: ASCII digits only, one parser ------------------------------------------------------
@pytest.mark.parametrize("version", ["²", "١", "１", "0", "-1", " 1"])
@pytest.mark.parametrize("rpc", ["ModelInfer", "ModelReady", "ModelMetadata"])
def test_v2_versions_are_ascii_digits_only(served, rpc, version):
    x = np.zeros((1, 8), np.float32)
    requests = {"ModelInfer": lambda: infer_request(x, version=version),
                "ModelReady": lambda: ipb.ModelReadyRequest(name="mlp", version=version),
                "ModelMetadata": lambda: ipb.ModelMetadataRequest(name="mlp", version=version)}
    _refused(served, lambda s: getattr(s["inference"], rpc)(requests[rpc]()), CODE.INVALID_ARGUMENT,
             "expected a positive integer")


@pytest.mark.parametrize("call", [
    lambda s: s["api"].DeleteVersion(pb.DeleteVersionRequest(ref="mlp:²")),
    lambda s: s["api"].DescribeModel(pb.DescribeModelRequest(ref="mlp:²")),
    lambda s: s["api"].DescribeModel(pb.DescribeModelRequest(ref="mlp:١")),
    lambda s: s["api"].Build(pb.BuildRequest(name="child", base="mlp:²", reuse="hidden1")),
], ids=["delete", "describe", "describe-arabic-1", "build-base"])
def test_refs_with_non_ascii_versions_are_invalid_argument(served, call):
    _refused(served, call, CODE.INVALID_ARGUMENT, "invalid version")


@pytest.mark.parametrize("args", [["show", "mlp:²"], ["delete", "mlp:²"], ["show", "mlp:١"]])
def test_cli_refuses_non_ascii_versions_without_a_traceback(served, args):
    result = CliRunner().invoke(cli, [*args, "--store", str(served["root"])])
    assert result.exit_code in (1, 2) and not isinstance(result.exception, ValueError), result.exception
    assert "Traceback" not in result.output and "invalid version" in result.output


# -- 3. long values are clipped where they are echoed -----------------------------------------------
LONG = "a" * 10_000


@pytest.mark.parametrize(("call", "code"), [
    (lambda s: s["inference"].ModelInfer(infer_request(np.zeros((1, 8), np.float32), model=LONG)),
     CODE.INVALID_ARGUMENT),
    (lambda s: s["inference"].ModelMetadata(ipb.ModelMetadataRequest(name="mlp", version="9" * 10_000)),
     CODE.INVALID_ARGUMENT),
    (lambda s: s["inference"].ModelInfer(infer_request(np.zeros((1, 8), np.float32), name=LONG)),
     CODE.INVALID_ARGUMENT),
    (lambda s: s["inference"].ModelInfer(infer_request(np.zeros((1, 8), np.float32), datatype=LONG)),
     CODE.INVALID_ARGUMENT),
    (lambda s: s["api"].DescribeModel(pb.DescribeModelRequest(ref=LONG)), CODE.INVALID_ARGUMENT),
    (lambda s: s["api"].DescribeModel(pb.DescribeModelRequest(ref="mlp", scope="(" + LONG)),
     CODE.INVALID_ARGUMENT),
    (lambda s: s["api"].DescribeModel(pb.DescribeModelRequest(ref="mlp", match=LONG, scope="hidden1")),
     CODE.INVALID_ARGUMENT),
    (lambda s: s["api"].GetJob(pb.GetJobRequest(id=LONG)), CODE.NOT_FOUND),
    (lambda s: s["api"].StartTrain(pb.TrainRequest(model="mlp", data=LONG)), CODE.INVALID_ARGUMENT),
    (lambda s: s["api"].StartTrain(pb.TrainRequest(model="mlp", data="/" + LONG)), CODE.INVALID_ARGUMENT),
    (lambda s: s["api"].StartJob(pb.StartJobRequest(kind="train", params_json=json.dumps(
        {"model": "mlp", "data": "blobs", "epochs": LONG}))), CODE.INVALID_ARGUMENT),
    (lambda s: s["api"].StartJob(pb.StartJobRequest(kind="train", params_json=json.dumps(
        {"model": "mlp", "data": "blobs", LONG: 1}))), CODE.INVALID_ARGUMENT),
    (lambda s: s["api"].StartJob(pb.StartJobRequest(kind=LONG, params_json="{}")), CODE.FAILED_PRECONDITION),
    (lambda s: s["api"].StartTrain(pb.TrainRequest(model="mlp", data="blobs", optimizer=LONG)),
     CODE.INVALID_ARGUMENT),
    (lambda s: s["api"].StartAdvise(pb.AdviseRequest(model="mlp", data="blobs", options_json=json.dumps(
        {"depths": "x" * 10_000}))), CODE.INVALID_ARGUMENT),
], ids=["model-name", "version", "input-name", "datatype", "ref", "scope", "match", "job-id", "data-name",
        "data-path", "param-value", "param-key", "job-kind", "optimizer", "depths"])
def test_long_values_are_clipped_in_error_messages(served, call, code):
    err = _refused(served, call, code)
    assert "…" in err.details()


def test_interceptor_caps_any_long_details():
    """The safety net: even a message the core builds whole is cut to a size every client accepts."""
    from reuse.errors import InvalidInput
    from reuse.grpc.interceptor import map_errors

    def long(request, context):
        raise InvalidInput("x" * 20_000)

    server = grpc.server(ThreadPoolExecutor(1))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "t.T", {"Long": map_errors(grpc.unary_unary_rpc_method_handler(long), "/t.T/Long")})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            err = rpc_error(ch.unary_unary("/t.T/Long"), b"")
        assert err.code() == CODE.INVALID_ARGUMENT and err.details().startswith("xxx")
        assert len(err.details()) <= 4096 and err.details().endswith("characters)")
    finally:
        server.stop(0)


# -- 4. jobs: everything checkable without training is refused before a job exists ------------------
def _advise(**options):
    return lambda s: s["api"].StartAdvise(pb.AdviseRequest(model="mlp", data=options.pop("data", "blobs"),
                                                           options_json=json.dumps(options)))


def _train(**kw):
    return lambda s: s["api"].StartTrain(pb.TrainRequest(model="mlp", epochs=1, **kw))


def _finetune(unfreeze, data="blobs"):
    return lambda s: s["api"].StartFinetune(pb.FinetuneRequest(train=pb.TrainRequest(model="mlp", data=data),
                                                               unfreeze=unfreeze))


def _build(**kw):
    return lambda s: s["api"].Build(pb.BuildRequest(**{"name": "child", "base": "mlp",
                                                       "reuse": "hidden1", **kw}))


@pytest.mark.parametrize(("call", "text"), [
    (_build(reuse="hidden["), "invalid scope pattern 'hidden['"),
    (_build(reuse="h" * 100_000), "scope pattern too long"),
    (_build(reuse="nothing"), "matched no layer"),
    (_build(reuse="hidden1", match="middle"), "invalid match mode"),
    (_build(trainable="hidden["), "invalid scope pattern 'hidden['"),
    (_build(classes=1), "invalid classes 1"),
    (_build(head="dense:8:softmax", classes=3), "already ends in an output layer"),
    (_build(outputs=2), "--outputs needs --regression"),
    (_build(), "nothing to put on top of the reused layers"),
    (_train(data="badlabels"), "out of range"),
    (_train(data="nanx"), "3 NaN feature value(s)"),
    (_train(data="wide"), "samples have shape (7,)"),
    (_train(data="blobs", val="nanx"), "NaN feature"),
    (_finetune("hidden["), "invalid scope pattern"),
    (_finetune("nothing"), "matched no layer"),
    (_finetune("hidden1", data="badlabels"), "out of range"),
    (_advise(scopes="hidden["), "invalid scope pattern"),
    (_advise(scopes="nothing"), "matched no layer"),
    (_advise(depths="0..9"), "out of range"),
    (_advise(data="nanx"), "NaN feature"),
    (_advise(data="wide"), "samples have shape (7,)"),
    (_advise(classes=2), "out of range"),
    (_advise(head="dense:zero"), "dense:zero"),
], ids=["regex", "100k-pattern", "no-match", "match-mode", "trainable-regex", "classes", "head-output",
        "outputs-alone", "no-head", "train-labels", "train-nan", "train-shape", "train-val-nan",
        "finetune-regex", "finetune-no-match", "finetune-labels", "advise-regex", "advise-no-match",
        "advise-depths", "advise-nan", "advise-shape", "advise-labels", "advise-head"])
def test_jobs_are_refused_before_they_start(served, call, text):
    _refused(served, call, CODE.INVALID_ARGUMENT, text)


def test_cli_train_against_the_server_refuses_nan_data_in_one_line_and_starts_no_job(served):
    api = served["api"]
    jobs = len(api.ListJobs(pb.ListJobsRequest()).jobs)
    nanx = str(served["data"] / "nanx.npz")  # a local file: the CLI uploads it, then starts the job
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "mlp", "--data", nanx, "--epochs",
                          "1", "--server", served["server"].target], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "3 NaN feature value(s)" in last, out.stderr[-2000:]
    assert len(api.ListJobs(pb.ListJobsRequest()).jobs) == jobs


# -- 6. non-finite inputs to ModelInfer -------------------------------------------------------------
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_infer_refuses_nan_and_inf_naming_the_input_and_count(served, raw):
    x = np.zeros((2, 8), np.float32)
    x[0, 1], x[1, 3], x[1, 5] = np.nan, np.inf, -np.inf
    _refused(served, lambda s: s["inference"].ModelInfer(infer_request(x, raw=raw)), CODE.INVALID_ARGUMENT,
             "input 'features'", "3 non-finite values")


# -- uploads and auth: refused at once, with short messages ---------------------------------------
def _upload(kind, header, data=b"PK\x03\x04" + b"\0" * 2000):
    def call(s):
        chunks = [pb.UploadChunk(header=header)] + [pb.UploadChunk(data=data[i:i + 1000])
                                                    for i in range(0, len(data), 1000)]
        return getattr(s["api"], kind)(iter(chunks))
    return call


@pytest.mark.parametrize(("call", "code", "text"), [
    (_upload("UploadDataset", pb.UploadHeader(name=LONG, format="npz")), CODE.INVALID_ARGUMENT,
     "invalid model name"),
    (_upload("UploadDataset", pb.UploadHeader(name="d", format=LONG)), CODE.INVALID_ARGUMENT,
     "dataset format"),
    (_upload("UploadModel", pb.UploadHeader(name="m", format=LONG)), CODE.INVALID_ARGUMENT, "model format"),
    (_upload("UploadDataset", pb.UploadHeader(name="big", format="npz"), b"\0" * 300_000),
     CODE.RESOURCE_EXHAUSTED, "upload limit"),
    (_upload("UploadModel", pb.UploadHeader(name="big")), CODE.INVALID_ARGUMENT, "not a h5 file"),
], ids=["long-name", "long-dataset-format", "long-model-format", "over-limit", "not-hdf5"])
def test_hostile_uploads_store_nothing(served, call, code, text):
    staged = served["root"] / ".reuse" / "uploads"
    before = sorted(staged.iterdir()) if staged.exists() else []
    datasets = served["service"].list_datasets()
    runtime = served["service"].state
    settings, runtime.settings = runtime.settings, replace(runtime.settings, max_upload_bytes=200_000)
    try:
        _refused(served, call, code, text)
    finally:
        runtime.settings = settings
    assert (sorted(staged.iterdir()) if staged.exists() else []) == before
    assert served["service"].list_datasets() == datasets


@pytest.mark.parametrize("metadata", [None, [("authorization", "Bearer " + "x" * 6000)],
                                      [("authorization", "Basic s3cret")], [("authorization", "Bearer")]],
                         ids=["none", "huge-token", "wrong-scheme", "empty-token"])
def test_auth_refuses_without_echoing_the_credential(served, metadata):
    with start_in_thread(served["service"], ServerConfig(port=0, token="s3cret")) as secured:
        channel, inference, _ = stubs(secured.target)
        with channel:
            err = rpc_error(inference.ModelReady, ipb.ModelReadyRequest(name="mlp"), metadata=metadata)
            assert err.code() == CODE.UNAUTHENTICATED and "x" * 50 not in err.details()
            assert inference.ModelReady(ipb.ModelReadyRequest(name="mlp"),
                                        metadata=[("authorization", "Bearer s3cret")]).ready


# -- soak: many concurrent good requests among refused ones ------------------------------------------
def test_soak_200_concurrent_requests_mixed_with_hostile_ones(served):
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(1 + i % 3, 8)).astype("float32") for i in range(200)]
    expected = [served["model"].predict(x, verbose=0) for x in xs[:3]]
    hostile = [infer_request(np.zeros((1, 8), np.float32), version="²"), _shape_request([2**61, 8]),
               infer_request(np.full((1, 8), np.nan, np.float32)),
               infer_request(np.zeros((1, 8)), datatype="FP64")]
    errors: list[str] = []
    lock = threading.Lock()
    channel, inference, _ = stubs(served["server"].target)

    def good(i: int) -> None:
        try:
            resp = inference.ModelInfer(infer_request(xs[i]), timeout=30)
            out = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(tuple(resp.outputs[0].shape))
            if i < 3:
                np.testing.assert_allclose(out, expected[i], rtol=1e-5, atol=1e-6)
            assert out.shape == (len(xs[i]), 3)
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            with lock:
                errors.append(repr(exc)[:300])

    def bad(i: int) -> None:
        err = rpc_error(inference.ModelInfer, hostile[i % len(hostile)], timeout=30)
        if err.code() != CODE.INVALID_ARGUMENT:
            with lock:
                errors.append(f"hostile {i}: {err.code()}")

    with channel, ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(good, i) for i in range(200)] + [pool.submit(bad, i) for i in range(40)]
        for f in futures:
            f.result(timeout=60)
    assert errors == []
