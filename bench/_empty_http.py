"""The REST transport ceiling for bench/serve.py: a KServe v2 REST server whose infer does no work.

Usage: python _empty_http.py PORT

aiohttp, as ``reuse serve --http-port`` runs it (on an asyncio loop, no access log), answering every
``POST /v2/models/mlp/infer`` with a response prepared in advance (one row of 10 FP32 outputs; binary when
the request came with the binary-data extension, JSON otherwise) after reading the body: no parsing, no
batching, no forward pass. Prints ``ready``; stops on SIGTERM.
"""

import asyncio
import json
import signal
import sys

from aiohttp import web

HEAD = {"model_name": "mlp", "model_version": "1"}
JSON_ANSWER = json.dumps(
    {**HEAD, "outputs": [{"name": "output", "datatype": "FP32", "shape": [1, 10], "data": [0.1] * 10}]}
).encode()
BINARY_HEAD = json.dumps(
    {
        **HEAD,
        "outputs": [
            {"name": "output", "datatype": "FP32", "shape": [1, 10], "parameters": {"binary_data_size": 40}}
        ],
    }
).encode()


async def infer(request: web.Request) -> web.Response:
    await request.read()
    if "Inference-Header-Content-Length" in request.headers:
        return web.Response(
            body=BINARY_HEAD + bytes(40),
            headers={
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(BINARY_HEAD)),
            },
        )
    return web.Response(body=JSON_ANSWER, content_type="application/json")


async def main(port: int) -> None:
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v2/models/{name}/infer", infer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await asyncio.wait_for(stop.wait(), 3600)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
