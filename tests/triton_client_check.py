"""Run inside the separate tritonclient environment (protobuf < 7): talk to our server as a stock client.

Usage: python triton_client_check.py HOST:PORT INPUT.npy   -> prints JSON on stdout
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient

url, path = sys.argv[1], sys.argv[2]
x = np.load(path)
client = grpcclient.InferenceServerClient(url=url)
meta = client.get_model_metadata("mlp", as_json=True)
inp = grpcclient.InferInput(meta["inputs"][0]["name"], list(x.shape), meta["inputs"][0]["datatype"])
inp.set_data_from_numpy(x)
result = client.infer("mlp", [inp], outputs=[grpcclient.InferRequestedOutput(meta["outputs"][0]["name"])])
out = result.as_numpy(meta["outputs"][0]["name"])
print(json.dumps({"live": client.is_server_live(), "ready": client.is_model_ready("mlp"), "metadata": meta,
                  "output": out.tolist(), "version": result.get_response().model_version}))
