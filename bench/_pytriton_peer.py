"""A PyTriton peer server for bench/serve.py, run with the peer venv's Python (``make bench-peers``).

Usage: python _pytriton_peer.py tf MODEL.keras GRPC_PORT HTTP_PORT METRICS_PORT SECONDS [MAX_ROWS]
       python _pytriton_peer.py onnx MODEL.onnx GRPC_PORT HTTP_PORT METRICS_PORT SECONDS [MAX_ROWS]

Serves model ``mlp`` (input ``pixels``, output ``output``, FP32) on 127.0.0.1 with the same batching knobs
as ``reuse serve`` in the benchmark (at most 32 rows, 2 ms). Triton's ``max_batch_size`` also caps one
request's rows (it refuses larger ones), so it is MAX_ROWS (default 32; the benchmark passes its largest
request, 256): with at most 32 single-row requests in flight a merged batch still has at most 32 rows. ``tf``:
the Keras model loaded and wrapped in a ``tf.function`` with a ``[None, features]`` signature, as a user would
write it; ``onnx``: an ONNX Runtime session (1 intra-op thread) on the Keras ONNX export. Prints ``ready``
once it answers; stops after SECONDS (a safety net) or on SIGTERM.
"""

import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from pytriton.decorators import batch  # noqa: E402
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # noqa: E402
from pytriton.triton import Triton, TritonConfig  # noqa: E402

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave the `with` below: it stops tritonserver
kind, path = sys.argv[1], sys.argv[2]
grpc_port, http_port, metrics_port, seconds = (int(a) for a in sys.argv[3:7])
max_rows = int(sys.argv[7]) if len(sys.argv) > 7 else 32

if kind == "tf":
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(path)
    features = model.inputs[0].shape[1]
    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec([None, features], tf.float32)])
    for n in (1, 2, 8, 32):
        fn(np.zeros((n, features), np.float32))

    def forward(x: np.ndarray) -> np.ndarray:
        return fn(x).numpy()
else:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    in_name, features = session.get_inputs()[0].name, session.get_inputs()[0].shape[1]

    def forward(x: np.ndarray) -> np.ndarray:
        return session.run(None, {in_name: x})[0]


@batch
def infer(pixels: np.ndarray) -> dict:
    return {"output": forward(pixels)}


config = TritonConfig(grpc_address="127.0.0.1", grpc_port=grpc_port, http_address="127.0.0.1",
                      http_port=http_port, metrics_address="127.0.0.1", metrics_port=metrics_port)
with Triton(config=config) as triton:
    triton.bind(model_name="mlp", infer_func=infer,
                inputs=[Tensor(name="pixels", dtype=np.float32, shape=(-1,))],
                outputs=[Tensor(name="output", dtype=np.float32, shape=(-1,))],
                config=ModelConfig(max_batch_size=max_rows,
                                   batcher=DynamicBatcher(max_queue_delay_microseconds=2000)))
    triton.run()
    print("ready", flush=True)
    time.sleep(seconds)
