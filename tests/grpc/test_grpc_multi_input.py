"""KServe v2 ModelInfer and ModelMetadata for models with several named inputs and integer inputs, on a
real server (127.0.0.1, OS-chosen port) through real stubs."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from graph_models import token_model, two_input_data, two_inputs
from grpc_support import rpc_error, stubs

from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc.server import ServerConfig, start_in_thread
from reuse.service import Service
from reuse.serving.engine import ServingOptions

CODE = grpc.StatusCode


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("multi") / "store")
    pair, tok = two_inputs(), token_model()
    service.register_model(pair, "pair")
    service.register_model(tok, "tok")
    service.configure_serving(ServingOptions(max_batch_size=64, max_batch_delay_ms=1.0))
    server = start_in_thread(service, ServerConfig(port=0))
    channel, inference, _ = stubs(server.target)
    yield {"service": service, "inference": inference, "pair": pair, "tok": tok}
    channel.close()
    server.stop()


def _request(model: str, arrays: dict[str, np.ndarray], datatypes: dict[str, str], raw: bool = True,
             order: list[str] | None = None) -> ipb.ModelInferRequest:
    req = ipb.ModelInferRequest(model_name=model, id="r")
    for name in order or list(arrays):
        arr = arrays[name]
        t = req.inputs.add(name=name, datatype=datatypes[name], shape=arr.shape)
        if raw:
            req.raw_input_contents.append(np.ascontiguousarray(arr).tobytes())
        elif datatypes[name] == "FP32":
            t.contents.fp32_contents.extend(arr.ravel().tolist())
        else:
            t.contents.int_contents.extend(arr.ravel().tolist())
    return req


def _out(resp: ipb.ModelInferResponse) -> np.ndarray:
    t = resp.outputs[0]
    data = (np.frombuffer(resp.raw_output_contents[0], np.float32) if resp.raw_output_contents
            else np.asarray(t.contents.fp32_contents, np.float32))
    return data.reshape(tuple(t.shape))


def test_metadata_lists_every_input_with_its_datatype(served):
    from reuse.grpc._proto import inference_pb2 as pb

    meta = served["inference"].ModelMetadata(pb.ModelMetadataRequest(name="pair"))
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("x_left", "FP32", [-1, 4]), ("x_right", "FP32", [-1, 3])]
    meta = served["inference"].ModelMetadata(pb.ModelMetadataRequest(name="tok"))
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("tokens", "INT32", [-1, 5])]


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_two_named_inputs_in_any_order(served, raw):
    arrays = two_input_data(n=5)
    arrays.pop("y")
    dts = {"x_left": "FP32", "x_right": "FP32"}
    resp = served["inference"].ModelInfer(_request("pair", arrays, dts, raw, order=["x_right", "x_left"]))
    local = served["pair"].predict([arrays["x_left"], arrays["x_right"]], verbose=0)
    np.testing.assert_allclose(_out(resp), local, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_int32_token_input(served, raw):
    x = np.random.default_rng(0).integers(0, 20, size=(3, 5)).astype(np.int32)
    resp = served["inference"].ModelInfer(_request("tok", {"tokens": x}, {"tokens": "INT32"}, raw))
    np.testing.assert_allclose(_out(resp), served["tok"].predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_inputs_are_matched_by_name_all_required_same_rows(served):
    inf = served["inference"]
    arrays = two_input_data(n=4)
    arrays.pop("y")
    dts = {"x_left": "FP32", "x_right": "FP32"}
    err = rpc_error(inf.ModelInfer, _request("pair", {"x_left": arrays["x_left"]}, dts))
    assert err.code() == CODE.INVALID_ARGUMENT
    assert err.details() == "model pair:1 takes inputs ['x_left', 'x_right']; got ['x_left']"
    short = {**arrays, "x_right": arrays["x_right"][:3]}
    err = rpc_error(inf.ModelInfer, _request("pair", short, dts))
    assert err.code() == CODE.INVALID_ARGUMENT and "different row counts (4 and 3)" in err.details()
    x = np.zeros((2, 5), np.float32)
    err = rpc_error(inf.ModelInfer, _request("tok", {"tokens": x}, {"tokens": "FP32"}))
    assert err.code() == CODE.INVALID_ARGUMENT
    assert err.details() == "input 'tokens': datatype FP32, expected INT32"


def test_client_infer_with_a_dict_and_concurrent_requests_batch(served):
    from concurrent.futures import ThreadPoolExecutor

    service = served["service"]
    arrays = two_input_data(n=8)
    arrays.pop("y")
    local = served["pair"].predict([arrays["x_left"], arrays["x_right"]], verbose=0)

    def one(i: int) -> np.ndarray:
        return service.infer("pair", [arrays["x_left"][i:i + 1], arrays["x_right"][i:i + 1]]).outputs[0]

    with ThreadPoolExecutor(8) as pool:
        got = np.concatenate(list(pool.map(one, range(8))))
    np.testing.assert_allclose(got, local, rtol=1e-5, atol=1e-6)
