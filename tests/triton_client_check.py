"""Run inside the separate tritonclient environment (protobuf < 7): talk to our server as a stock client.

Usage: python triton_client_check.py HOST:PORT INPUT.npy [grpc|http]   -> prints JSON on stdout

gRPC (default): tritonclient.grpc. HTTP: tritonclient.http, once with the binary-data extension (its
default) and once with JSON tensors, and the error it raises for an unknown model.
"""

import json
import sys

import numpy as np

url, path = sys.argv[1], sys.argv[2]
protocol = sys.argv[3] if len(sys.argv) > 3 else "grpc"
x = np.load(path)
if protocol == "grpc":
    import tritonclient.grpc as client_lib
else:
    import tritonclient.http as client_lib
client = client_lib.InferenceServerClient(url=url)
meta = (
    client.get_model_metadata("mlp", as_json=True) if protocol == "grpc" else client.get_model_metadata("mlp")
)


def infer(binary: bool) -> tuple[np.ndarray, str]:
    inp = client_lib.InferInput(meta["inputs"][0]["name"], list(x.shape), meta["inputs"][0]["datatype"])
    out = client_lib.InferRequestedOutput(
        meta["outputs"][0]["name"], **({} if protocol == "grpc" else {"binary_data": binary})
    )
    if protocol == "grpc":
        inp.set_data_from_numpy(x)
    else:
        inp.set_data_from_numpy(x, binary_data=binary)
    result = client.infer("mlp", [inp], outputs=[out])
    return result.as_numpy(meta["outputs"][0]["name"]), result.get_response()


out, response = infer(True)
report = {
    "live": client.is_server_live(),
    "ready": client.is_model_ready("mlp"),
    "metadata": meta,
    "output": out.tolist(),
}
if protocol == "grpc":
    report["version"] = response.model_version
else:
    report["version"] = response["model_version"]
    report["output_json"] = infer(False)[0].tolist()
    try:
        client.get_model_metadata("no-such-model")
    except Exception as exc:  # noqa: BLE001 - the stock client's own exception type
        report["unknown_model"] = str(exc)
print(json.dumps(report))
