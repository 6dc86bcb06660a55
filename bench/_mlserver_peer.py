"""An MLServer peer for bench/serve.py, run with the MLServer venv's Python (``make bench-peers``).

Usage: python _mlserver_peer.py MODEL.onnx HTTP_PORT GRPC_PORT SECONDS

Serves model ``mlp`` (input ``pixels``, output ``output``, FP32) with MLServer 1.7.1 on 127.0.0.1: a custom
runtime (an ``mlserver.MLModel`` subclass, as its docs show) running an ONNX Runtime session (1 intra-op
thread) on the Keras ONNX export, the strongest forward pass a user of it could write here; adaptive
batching with the benchmark's knobs (``max_batch_size`` 32, ``max_batch_time`` 2 ms); inference in the
main process (``parallel_workers`` 0, PEERS.md); no metrics server. Prints ``ready`` once the model
answers ready; stops after SECONDS (a safety net) or on SIGTERM, taking ``mlserver start`` with it.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RUNTIME = """
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OrtRuntime(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.settings.parameters.uri, sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        y = self.session.run(None, {self.input_name: x})[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("output", y)])
"""


def main() -> int:
    model, http_port, grpc_port, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    folder = Path(tempfile.mkdtemp(prefix="mlserver-peer-"))
    (folder / "ort_runtime.py").write_text(RUNTIME)
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": http_port,
                "grpc_port": grpc_port,
                "parallel_workers": 0,
                "metrics_endpoint": None,
                "debug": False,
            }
        )
    )
    (folder / "mlp").mkdir()
    (folder / "mlp" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "mlp",
                "implementation": "ort_runtime.OrtRuntime",
                "max_batch_size": 32,
                "max_batch_time": 0.002,
                "parameters": {"uri": str(Path(model).resolve())},
            }
        )
    )
    mlserver = Path(sys.executable).parent / "mlserver"
    child = subprocess.Popen(
        [str(mlserver), "start", str(folder)],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(folder)},
        stdout=subprocess.DEVNULL,
    )
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    url = f"http://127.0.0.1:{http_port}/v2/models/mlp/ready"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and child.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        child.terminate()
        return 1
    print("ready", flush=True)
    try:
        child.wait(seconds)
    except subprocess.TimeoutExpired:
        child.terminate()
    child.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
