"""Step 6: serve the store over gRPC on a free loopback port and call it with the package's client.

This module is an adapter (it starts the gRPC server and uses the gRPC client), like ``reuse.cli`` and
``reuse.grpc``; the core never imports it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reuse.client import ReuseClient
from reuse.data import load_data
from reuse.errors import CheckFailed
from reuse.grpc.server import ServerConfig, start_in_thread
from reuse.quickstart import plan
from reuse.quickstart.output import Out, pct
from reuse.service import Service

SHOW = 8
CLIENT_THREADS = 8


@dataclass(frozen=True)
class ServeResult:
    target: str
    model: str
    requests: int
    accuracy: float
    forward_passes: int
    largest_batch: int
    stopped: bool


def serve_and_call(store: Path, out: Out, ref: str) -> ServeResult:
    """Start a server on 127.0.0.1:0, send each held-out image as one KServe v2 ModelInfer request
    (several at a time, so the dynamic batcher merges them), print predicted against true labels and
    the accuracy, check the answers equal local predictions, and stop the server.

    Raises:
        CheckFailed: the served predictions differ from the model's local ones.
    """
    service = Service(store)
    name, version = ref.split(":")
    test = load_data(plan.TEST_DATA)
    info = service.model_info(ref)
    names = info.class_names or [str(i) for i in range(plan.CLASSES)]
    server = start_in_thread(service, ServerConfig(host="127.0.0.1", port=0, grace_s=5.0))
    try:
        out.line(f"reuse serve --store {store} --port 0   (in-process; listening on {server.target})")
        with ReuseClient(server.target, timeout=60.0) as client:
            meta = client.model_metadata(name, version)
            tin, tout = meta.inputs[0], meta.outputs[0]
            out.line(f"ModelMetadata {ref}: input {tin.name} {tin.datatype} {list(tin.shape)}, "
                     f"output {tout.name} {tout.datatype} {list(tout.shape)}")

            def one(row: np.ndarray) -> np.ndarray:
                return client.infer(name, row[None, :], version=version)[tout.name][0]

            with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                probs = np.stack(list(pool.map(one, test.x)))
            stats = client.stats()["models"].get(ref, {})
    finally:
        server.stop()
    local = service.predict_model(ref, plan.TEST_DATA).outputs
    if not np.allclose(probs, local, atol=1e-5):
        raise CheckFailed(f"{ref}: predictions served over gRPC differ from local ones by up to "
                          f"{float(np.abs(probs - local).max()):.3g}")
    predicted = probs.argmax(axis=1)
    truth = np.asarray(test.y)
    # The first few answers, plus the first two mistakes (if any), so both kinds show.
    wrong = [int(i) for i in np.flatnonzero(predicted != truth)[:2]]
    shown = sorted(set(range(min(SHOW - len(wrong), len(truth)))) | set(wrong))
    rows = [(i, names[int(truth[i])], names[int(predicted[i])], f"{probs[i, predicted[i]]:.3f}",
             "ok" if predicted[i] == truth[i] else "WRONG") for i in shown]
    out.table(("#", "TRUE", "PREDICTED", "P", ""), rows, right=(0, 3))
    accuracy = float(np.mean(predicted == truth))
    batches = int(stats.get("batches", 0))
    largest = int(stats.get("max_batch_requests", 0))
    out.line(f"{len(truth)} ModelInfer calls from {CLIENT_THREADS} threads: accuracy {pct(accuracy)}; "
             f"the batcher ran {batches} forward passes (up to {largest} requests each); "
             "answers equal local predictions")
    runtime = {"onnx": "ONNX Runtime", "keras": "the compiled Keras model"}.get(stats.get("runtime", ""), "?")
    why = stats.get("runtime_reason", "")
    out.line(f"forward pass: {runtime}{f' ({why})' if why else ''}")
    out.line(f"server on {server.target} stopped cleanly")
    return ServeResult(server.target, ref, len(truth), accuracy, batches, largest, stopped=True)
