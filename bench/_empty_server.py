"""The transport ceiling for bench/serve.py: a KServe v2 server whose ModelInfer does no work.

Usage: python _empty_server.py PORT PROCESSES

It answers every ModelInfer with a response prepared in advance (model ``mlp``, output ``output``, FP32,
as many rows as the request's first input has, raw bytes), so what it costs is grpc's server machinery,
the wire and the client: no decoding, no batching, no forward pass. The server is the one ``reuse
serve`` uses (grpc.aio, ModelInfer a coroutine, 64 MiB message limit, SO_REUSEPORT); PROCESSES > 1
starts that many on one port, as ``reuse serve --processes`` does. Prints ``ready`` once all listen; stops on
SIGTERM (or after an hour, a safety net).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OUTPUTS = 10


def serve(port: int, ready: mp.Event, stop: mp.Event, parent: int) -> None:
    import grpc

    from reuse.grpc._proto import inference_pb2 as pb
    from reuse.grpc._proto import inference_pb2_grpc as pbg

    answers: dict[int, pb.ModelInferResponse] = {}

    def answer(rows: int) -> pb.ModelInferResponse:
        r = answers.get(rows)
        if r is None:
            r = pb.ModelInferResponse(model_name="mlp", model_version="1")
            r.outputs.add(name="output", datatype="FP32", shape=[rows, OUTPUTS])
            r.raw_output_contents.append(bytes(4 * rows * OUTPUTS))
            answers[rows] = r
        return r

    class Empty(pbg.GRPCInferenceServiceServicer):
        async def ModelInfer(self, request, context):
            return answer(request.inputs[0].shape[0] if request.inputs and request.inputs[0].shape else 1)

    async def run() -> None:
        limit = 64 * 1024 * 1024
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1)])
        pbg.add_GRPCInferenceServiceServicer_to_server(Empty(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, wait_for_stop, stop, parent)
        await server.stop(1)

    asyncio.run(run())


def wait_for_stop(stop: mp.Event, parent: int, limit_s: float = 3600.0) -> None:
    """Until the parent says stop, or is gone (killed), or the safety net's hour is over."""
    end = time.monotonic() + limit_s
    while not stop.wait(0.5) and os.getppid() == parent and time.monotonic() < end:
        pass


def main() -> int:
    port, processes = int(sys.argv[1]), int(sys.argv[2])
    ctx = mp.get_context("spawn")
    stop, asked = ctx.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: asked.set())
    readies = [ctx.Event() for _ in range(processes)]
    procs = [ctx.Process(target=serve, args=(port, r, stop, os.getpid()), daemon=True) for r in readies]
    for p in procs:
        p.start()
    for r in readies:
        r.wait(120)
    print("ready", flush=True)
    asked.wait(3600)
    stop.set()
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
