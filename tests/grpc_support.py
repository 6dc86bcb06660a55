"""Helpers shared by the gRPC tests: a served store, stubs, and a test job kind."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np

from reuse.errors import Cancelled
from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc._proto import inference_pb2_grpc as igrpc
from reuse.grpc._proto import reuse_v1_pb2_grpc as rgrpc
from reuse.store import ModelStore


def stubs(target: str) -> tuple[grpc.Channel, igrpc.GRPCInferenceServiceStub, rgrpc.ReuseServiceStub]:
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
    return channel, igrpc.GRPCInferenceServiceStub(channel), rgrpc.ReuseServiceStub(channel)


def infer_request(x: np.ndarray, model: str = "mlp", version: str = "", raw: bool = True,
                  name: str = "features", datatype: str = "FP32") -> ipb.ModelInferRequest:
    req = ipb.ModelInferRequest(model_name=model, model_version=version, id="req-1")
    t = req.inputs.add(name=name, datatype=datatype, shape=x.shape)
    if raw:
        req.raw_input_contents.append(np.ascontiguousarray(x).tobytes())
    else:
        t.contents.fp32_contents.extend(x.ravel().tolist())
    return req


def rpc_error(fn, *args, **kw) -> grpc.RpcError:
    try:
        fn(*args, **kw)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call succeeded; expected an error status")


def slow_kind(params, progress, cancel: threading.Event):
    """A job kind for tests: ``epochs`` steps of ``step_s`` seconds, then registers a tiny model."""
    from conftest import make_mlp

    epochs, step = int(params.get("epochs", 3)), float(params.get("step_s", 0.01))
    for epoch in range(1, epochs + 1):
        if cancel.wait(step):
            raise Cancelled(f"stopped at epoch {epoch} of {epochs}")
        progress({"epoch": epoch, "epochs": epochs, "losses": {"loss": 1.0 / epoch},
                  "metrics": {"accuracy": epoch / epochs}})
    if cancel.is_set():
        raise Cancelled("stopped before registering")
    info = ModelStore(params["store"]).register(make_mlp(seed=epochs), params.get("name", "trained"))
    return {"model": info.ref, "metrics": {"accuracy": 1.0}}


def wait_until(pred, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def blobs(path, n=60, seed=0):
    """Three separable clusters in 8 dimensions, saved as .npz (x, y)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = (rng.normal(size=(n, 8)) + 3.0 * np.eye(8)[y]).astype("float32")
    np.savez(path, x=x, y=y)
    return path
