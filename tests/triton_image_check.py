"""Run inside the separate tritonclient environment (protobuf < 7): send an encoded image as a KServe BYTES
tensor with the stock client, plain and with the classification extension.

Usage: python triton_image_check.py HOST:PORT MODEL IMAGE_FILE K   -> prints JSON on stdout
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient

url, model, path, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(path, "rb") as f:
    data = f.read()
client = grpcclient.InferenceServerClient(url=url)
meta = client.get_model_metadata(model, as_json=True)
name, out_name = meta["inputs"][0]["name"], meta["outputs"][0]["name"]
images = np.array([data, data], dtype=np.object_)
inp = grpcclient.InferInput(name, [2], "BYTES")
inp.set_data_from_numpy(images)
plain = client.infer(model, [inp], outputs=[grpcclient.InferRequestedOutput(out_name)]).as_numpy(out_name)
top = client.infer(model, [inp],
                   outputs=[grpcclient.InferRequestedOutput(out_name, class_count=k)]).as_numpy(out_name)
print(json.dumps({"metadata": meta, "server": client.get_server_metadata(as_json=True),
                  "output": plain.tolist(), "classification": [[x.decode() for x in row] for row in top]}))
