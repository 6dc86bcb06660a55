"""The KServe v2 REST protocol on a real server (127.0.0.1, OS-chosen ports: gRPC and HTTP from one process):
the same answers as gRPC for the same request, stock clients (curl; tritonclient[http] in its own venv),
and every hostile input answered with the status KServe gives and a JSON error, the server unaffected."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from conftest import make_mlp
from graph_models import two_inputs
from grpc_support import infer_request, stubs
from http_support import call, raw, rest_outputs, rest_request
from triton_support import ROOT, triton_python

from reuse.grpc import convert
from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc.server import ServerConfig, start_in_thread
from reuse.service import Service
from reuse.serving.engine import ServingOptions

LIMIT = 1 << 20  # the server's message limit in these tests: 1 MiB


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("http") / "store")
    service.register_model(make_mlp(), "mlp")
    service.register_model(make_mlp(seed=1), "mlp")
    service.register_model(two_inputs(), "pair")
    service.configure_serving(ServingOptions(runtime="keras"))
    server = start_in_thread(service, ServerConfig(port=0, http_port=0, max_message_bytes=LIMIT))
    channel, inference, _ = stubs(server.target)
    yield {"service": service, "server": server, "port": server.http_port, "inference": inference}
    channel.close()
    server.stop()


def grpc_output(served, x: np.ndarray, model: str = "mlp", version: str = "") -> np.ndarray:
    resp = served["inference"].ModelInfer(infer_request(x, model=model, version=version))
    return convert.decode_outputs(resp)["output"]


@pytest.mark.parametrize("binary, binary_out", [(False, False), (True, True), (True, False), (False, True)])
def test_rest_answers_what_grpc_answers(served, rng, binary, binary_out):
    x = rng.normal(size=(3, 8)).astype("float32")
    body, headers = rest_request(x, binary=binary, binary_out=binary_out)
    a = call(served["port"], "POST", "/v2/models/mlp/versions/1/infer", body, headers)
    assert a.status == 200, a.body
    assert a.headers["content-type"].startswith(
        "application/octet-stream" if binary_out else "application/json"
    )
    head = a.body[: int(a.headers.get("inference-header-content-length", len(a.body)))]
    assert json.loads(head)["model_version"] == "1" and json.loads(head)["id"] == "r-1"
    np.testing.assert_array_equal(rest_outputs(a)["output"], grpc_output(served, x, version="1"))


def test_metadata_ready_and_health_match_grpc(served):
    port, inference = served["port"], served["inference"]
    meta = call(port, "GET", "/v2/models/mlp").json()
    g = inference.ModelMetadata(ipb.ModelMetadataRequest(name="mlp"))
    assert meta["name"] == g.name and meta["versions"] == list(g.versions) == ["1", "2"]
    assert meta["platform"] == g.platform
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 8]}]
    assert [(t.name, t.datatype, list(t.shape)) for t in g.outputs] == [
        (o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]
    ]
    assert meta["parameters"] == {
        "runtime": "keras",
        "runtime_reason": g.parameters["runtime_reason"].string_param,
    }
    assert call(port, "GET", "/v2").json() == {
        "name": "reuse",
        "version": __import__("reuse").__version__,
        "extensions": ["binary_tensor_data"],
    }
    for path in (
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/mlp/ready",
        "/v2/models/mlp/versions/2/ready",
    ):
        a = call(port, "GET", path)
        assert a.status == 200 and a.body == b"", path
    assert call(port, "GET", "/v2/models/mlp/versions/7/ready").status == 404


def test_several_inputs_by_name_in_any_order(served, rng):
    pair = two_inputs()
    left, right = rng.normal(size=(2, 4)).astype("float32"), rng.normal(size=(2, 3)).astype("float32")
    doc = {
        "inputs": [
            {"name": "x_right", "datatype": "FP32", "shape": [2, 3], "data": right.tolist()},
            {"name": "x_left", "datatype": "FP32", "shape": [2, 4], "data": left.ravel().tolist()},
        ]
    }
    a = call(served["port"], "POST", "/v2/models/pair/infer", doc)
    assert a.status == 200, a.body
    want = pair.predict({"x_left": left, "x_right": right}, verbose=0)
    np.testing.assert_allclose(
        np.asarray(a.json()["outputs"][0]["data"]).reshape(2, 3), want, rtol=1e-5, atol=1e-6
    )


def test_curl_speaks_to_it(served, rng):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    x = rng.normal(size=(1, 8)).astype("float32")
    base = f"http://127.0.0.1:{served['port']}"
    doc = json.dumps(
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 8], "data": x.ravel().tolist()}]}
    )
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            f"{base}/v2/models/mlp/infer",
            "-H",
            "Content-Type: application/json",
            "-d",
            doc,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    got = json.loads(out.stdout)
    np.testing.assert_array_equal(
        np.asarray(got["outputs"][0]["data"], np.float32).reshape(1, 3), grpc_output(served, x)
    )
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/v2/health/ready"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.stdout == "200"


def test_tritonclient_http_infers_as_grpc_answers(served, tmp_path, rng):
    py = triton_python()
    x = rng.normal(size=(6, 8)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run(
        [
            str(py),
            str(ROOT / "tests" / "triton_client_check.py"),
            f"127.0.0.1:{served['port']}",
            str(tmp_path / "x.npy"),
            "http",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["live"] and got["ready"] and got["version"] == "2"
    assert got["metadata"]["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 8]}]
    want = grpc_output(served, x)
    np.testing.assert_array_equal(np.asarray(got["output"], np.float32), want)
    np.testing.assert_array_equal(np.asarray(got["output_json"], np.float32), want)
    assert got["unknown_model"].startswith("[404]")


def _doc(**tensor) -> dict:
    base = {"name": "features", "datatype": "FP32", "shape": [1, 8], "data": [0.5] * 8}
    return {"inputs": [{**base, **tensor}]}


HEAD = "Inference-Header-Content-Length"
BAD = [  # (method, path, body, headers, status, words in the error)
    ("POST", "/v2/models/mlp/infer", "{not json", {}, 400, "not valid JSON"),
    ("POST", "/v2/models/mlp/infer", "[1, 2]", {}, 400, "expected a JSON object with 'inputs'"),
    ("POST", "/v2/models/mlp/infer", "[" * 100000, {}, 400, "not valid JSON"),
    (
        "POST",
        "/v2/models/mlp/infer",
        _doc(data=[0.5] * 7),
        {},
        400,
        "7 values in data, expected 8 (shape [1, 8] of FP32)",
    ),
    ("POST", "/v2/models/mlp/infer", _doc(shape=[2, 8]), {}, 400, "8 values in data, expected 16"),
    ("POST", "/v2/models/mlp/infer", _doc(data=[[0.5] * 3, [0.5] * 5]), {}, 400, "not a regular array"),
    ("POST", "/v2/models/mlp/infer", _doc(data=["1"] * 8), {}, 400, "non-numbers; expected FP32"),
    (
        "POST",
        "/v2/models/mlp/infer",
        _doc(data=[float("nan")] * 8),
        {},
        400,
        "not valid JSON",
    ),  # NaN: not JSON
    ("POST", "/v2/models/mlp/infer", _doc(data=[1e300] * 8), {}, 400, "8 non-finite values"),  # inf as FP32
    (
        "POST",
        "/v2/models/mlp/infer",
        _doc(datatype="BYTES", shape=[1], data=["an image"]),
        {},
        400,
        "datatype BYTES, expected FP32",
    ),
    ("POST", "/v2/models/mlp/infer", _doc(datatype="FP33"), {}, 400, "datatype FP33, expected FP32"),
    (
        "POST",
        "/v2/models/mlp/infer",
        _doc(name="pixels"),
        {},
        400,
        "takes inputs ['features']; got ['pixels']",
    ),
    (
        "POST",
        "/v2/models/mlp/infer",
        _doc(shape=[1, 7], data=[0.5] * 7),
        {},
        400,
        "shape [1, 7], expected [-1, 8]",
    ),
    ("POST", "/v2/models/mlp/infer", _doc(shape=[2**61, 8]), {}, 400, "above the message size limit"),
    ("POST", "/v2/models/mlp/infer", _doc(shape="1,8"), {}, 400, "expected a list of integers"),
    (
        "POST",
        "/v2/models/mlp/infer",
        {**_doc(), "outputs": [{"name": "nope"}]},
        {},
        400,
        "unknown output 'nope'",
    ),
    (
        "POST",
        "/v2/models/mlp/infer",
        json.dumps(_doc(data=None, parameters={"binary_data_size": 32})),
        {HEAD: "9999"},
        400,
        "Inference-Header-Content-Length is 9999: past the end",
    ),
    (
        "POST",
        "/v2/models/mlp/infer",
        json.dumps(_doc(parameters={"binary_data_size": 32})) + "x" * 32,
        {HEAD: "10"},
        400,
        "not valid JSON",
    ),
    ("POST", "/v2/models/mlp/infer", "{}", {HEAD: "-1"}, 400, "past the end"),
    ("POST", "/v2/models/mlp/infer", "{}", {HEAD: "ten"}, 400, "expected the byte length of the JSON part"),
    ("POST", "/v2/models/../etc/infer", _doc(), {}, 404, "no such page or endpoint"),
    ("POST", "/v2/models/..%2F..%2Fetc/infer", _doc(), {}, 400, "invalid model name '../../etc'"),
    ("GET", "/v2/models/%3Cscript%3Ealert(1)%3C%2Fscript%3E", None, {}, 400, "invalid model name '<script>"),
    ("GET", "/v2/models/nope", None, {}, 404, "no model named 'nope'"),
    ("GET", "/v2/models/mlp/versions/9", None, {}, 404, "has no version 9"),
    ("GET", "/v2/models/mlp/versions/x", None, {}, 400, "model version 'x': expected a positive integer"),
    ("POST", "/v2/models/mlp/versions/9/infer", _doc(), {}, 404, "has no version 9"),
    (
        "DELETE",
        "/v2/models/mlp",
        None,
        {},
        405,
        "method not allowed: DELETE /v2/models/mlp; allowed: GET, HEAD",
    ),
    ("PUT", "/ui/", None, {}, 405, "method not allowed"),
    ("GET", "/v3/whatever", None, {}, 404, "no such page or endpoint: GET /v3/whatever"),
]


def _binary_past_the_body() -> tuple[bytes, dict[str, str]]:
    head = (
        json.dumps(_doc(data=None, parameters={"binary_data_size": 64}))
        .replace(', "data": null', "")
        .encode()
    )
    return head + b"\0" * 16, {HEAD: str(len(head))}


def _binary_left_over() -> tuple[bytes, dict[str, str]]:
    body, headers = rest_request(np.zeros((1, 8), np.float32), binary=True)
    return body + b"\0" * 4, headers


@pytest.mark.parametrize(
    "method, path, body, headers, status, words", BAD, ids=[f"{i}-{b[4]}" for i, b in enumerate(BAD)]
)
def test_hostile_requests_get_the_status_and_a_json_error(served, method, path, body, headers, status, words):
    a = call(served["port"], method, path, body, headers)
    assert a.status == status, a.body
    assert (
        a.headers["content-type"].startswith("application/json")
        and a.headers["x-content-type-options"] == "nosniff"
    )
    assert words in a.json()["error"]


@pytest.mark.parametrize(
    "make, words",
    [
        (
            _binary_past_the_body,
            "binary_data_size 64 at byte 0 of the binary data points past its end (16 bytes",
        ),
        (_binary_left_over, "4 bytes of binary data that no input's binary_data_size"),
    ],
)
def test_binary_data_that_does_not_add_up_is_refused(served, make, words):
    body, headers = make()
    a = call(served["port"], "POST", "/v2/models/mlp/infer", body, headers)
    assert a.status == 400 and words in a.json()["error"]


def test_oversized_requests_are_refused_before_their_body_is_read(served):
    port = served["port"]
    # A 2 GB Content-Length: 413 at once, from the header alone (no body is sent at all).
    answer = raw(
        port,
        b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2147483648\r\n\r\n",
    )
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 413") and b'"error"' in rest and b"above the limit of 1048576" in rest
    # A chunked body that grows past the limit: 413 once the limit is crossed.
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    answer = raw(
        port,
        b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk * 20
        + b"0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413")
    # A header line past 8 KiB: aiohttp's own 400.
    answer = raw(port, b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    # Still serving.
    x = np.ones((1, 8), np.float32)
    body, headers = rest_request(x)
    assert call(port, "POST", "/v2/models/mlp/infer", body, headers).status == 200
