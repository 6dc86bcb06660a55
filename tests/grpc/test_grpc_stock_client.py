"""A stock KServe v2 client (tritonclient[grpc]) against our server.

tritonclient pins protobuf < 7 and defines the same ``inference.*`` protobuf symbols as our generated
code, so it runs in its own virtual environment (``make triton-venv`` builds .venv-triton with
``tritonclient[grpc,http]``; this test builds it too when it is missing, and adds the http extra to one
built before it was needed: tests/http/test_http_v2.py uses it) in a subprocess. Skipped only when that
environment cannot be made.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
from conftest import make_mlp
from triton_support import ROOT, triton_python

from reuse.grpc.server import start_in_thread
from reuse.service import Service


def test_tritonclient_infers_against_our_server(tmp_path, rng):
    py = triton_python()
    service = Service(tmp_path / "store")
    model = make_mlp()
    service.register_model(model, "mlp")
    x = rng.normal(size=(6, 8)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    with start_in_thread(service) as server:
        r = subprocess.run([str(py), str(ROOT / "tests" / "triton_client_check.py"), server.target,
                            str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["live"] and got["ready"] and got["version"] == "1"
    assert got["metadata"]["inputs"] == [{"name": "features", "datatype": "FP32", "shape": ["-1", "8"]}]
    np.testing.assert_allclose(np.asarray(got["output"]), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
