"""Serving benchmark: KServe v2 over loopback with dynamic batching, against its limit and a naive server.

Model: MLP 784-300-100-10. Closed-loop load (each in-flight slot sends its next request when the last
answer arrives) from separate client processes using grpc.aio, bounded in time:

- single-row requests at concurrency 1, 8, 32: inferences/s, p50, p99 (ms);
- 256-row requests: rows/s;
- the limit: the same compiled forward pass called in-process at the same batch sizes;
- the baseline: a naive server (grpc thread pool, no batching) whose handler runs the same compiled
  forward pass on each request alone.

Usage: python bench/serve.py [--out FILE.json] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

FEATURES = 784


def make_model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((FEATURES,), name="pixels"),
                             keras.layers.Dense(300, activation="relu", name="hidden1"),
                             keras.layers.Dense(100, activation="relu", name="hidden2"),
                             keras.layers.Dense(10, activation="softmax", name="output")], name="mlp")


# -- client processes ------------------------------------------------------------------------------
def _client(port: int, slots: int, rows: int, seconds: float, out: mp.Queue) -> None:
    import grpc

    from reuse.grpc._proto import inference_pb2 as pb
    from reuse.grpc._proto import inference_pb2_grpc as pbg

    async def main() -> None:
        req = pb.ModelInferRequest(model_name="mlp")
        req.inputs.add(name="pixels", datatype="FP32", shape=[rows, FEATURES])
        req.raw_input_contents.append(np.random.default_rng(1).random((rows, FEATURES), np.float32).tobytes())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[
                ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]) as ch:
            stub = pbg.GRPCInferenceServiceStub(ch)
            for _ in range(20):  # warm up the connection and the server's compiled function
                await stub.ModelInfer(req)
            lat: list[float] = []
            end = time.perf_counter() + seconds

            async def slot() -> None:
                while (t0 := time.perf_counter()) < end:
                    await stub.ModelInfer(req)
                    lat.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            await asyncio.gather(*[slot() for _ in range(slots)])
            out.put((lat, time.perf_counter() - t0))

    asyncio.run(main())


CLIENT_PROCESSES = 2


def load(port: int, concurrency: int, rows: int, seconds: float) -> dict:
    procs = 1 if concurrency == 1 else min(CLIENT_PROCESSES, concurrency)
    q: mp.Queue = mp.get_context("spawn").Queue()
    ctx = mp.get_context("spawn")
    ps = [ctx.Process(target=_client, args=(port, concurrency // procs, rows, seconds, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    results = [q.get() for _ in ps]
    for p in ps:
        p.join()
    lat = np.concatenate([np.asarray(r[0]) for r in results]) * 1000.0
    wall = max(r[1] for r in results)
    return {"concurrency": concurrency, "rows_per_request": rows, "requests": int(lat.size),
            "inferences_per_s": round(lat.size / wall, 1), "rows_per_s": round(lat.size * rows / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 3), "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "client_processes": procs, "loadavg_1min_after": round(os.getloadavg()[0], 2)}


# -- the naive server --------------------------------------------------------------------------------
def naive_server(forward, threads: int = 8):
    import grpc

    from reuse.grpc import convert
    from reuse.grpc._proto import inference_pb2_grpc as pbg
    from reuse.serving.signature import signature_of

    class Naive(pbg.GRPCInferenceServiceServicer):
        sig = signature_of(forward.model, "mlp", 1)

        def ModelInfer(self, request, context):
            arrays, picked = convert.decode_request(request, self.sig)
            return convert.encode_response(request, self.sig, forward(arrays), picked)

    server = grpc.server(futures.ThreadPoolExecutor(threads), options=[
        ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)])
    pbg.add_GRPCInferenceServiceServicer_to_server(Naive(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def limit(forward, rows: int, seconds: float) -> dict:
    x = [np.random.default_rng(2).random((rows, FEATURES), np.float32)]
    for _ in range(20):
        forward(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        forward(x)
        n += 1
    wall = time.perf_counter() - t0
    return {"batch_rows": rows, "calls_per_s": round(n / wall, 1), "rows_per_s": round(n * rows / wall, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--row-concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; figures are medians")
    ap.add_argument("--client-processes", type=int, default=2, help="client processes at concurrency > 1")
    args = ap.parse_args(argv)
    global CLIENT_PROCESSES
    CLIENT_PROCESSES = args.client_processes

    from reuse.backend.compiled import CompiledForward
    from reuse.grpc.server import ServerConfig, start_in_thread
    from reuse.service import Service
    from reuse.serving.engine import ServingOptions

    tmp = tempfile.TemporaryDirectory()
    model = make_model()
    service = Service(tmp.name)
    service.register_model(model, "mlp")
    service.configure_serving(ServingOptions(max_batch_size=64, max_batch_delay_ms=1.0))
    forward = CompiledForward(service.store.load("mlp"))
    s = args.seconds
    report: dict = {"model": "MLP 784-300-100-10", "seconds_per_point": s, "cpus": os.cpu_count(),
                    "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
                    "server": "grpc thread pool (64) + dynamic batcher (max 64 rows, 1 ms)",
                    "python": platform.python_version(), "limit": {}, "naive": {}, "batched": {}}

    naive, naive_port = naive_server(forward)
    server = start_in_thread(service, ServerConfig(port=0))
    points = [(f"c{c}", c, 1) for c in (1, 8, 32)] + [("rows256", args.row_concurrency, 256)]
    runs: dict[tuple[str, str], list[dict]] = {}
    # Rounds interleave the limit, the naive server and ours, so that load from other processes on a
    # shared machine falls on all three alike; each figure is the median over the rounds.
    for _ in range(args.rounds):
        for rows in (1, 8, 32, 64, 256):
            runs.setdefault(("limit", str(rows)), []).append(limit(forward, rows, min(s, 2.0)))
        for key, c, rows in points:
            runs.setdefault(("naive", key), []).append(load(naive_port, c, rows, s))
            runs.setdefault(("batched", key), []).append(load(server.port, c, rows, s))
    for (section, key), results in runs.items():
        by = "rows_per_s"
        ordered = sorted(results, key=lambda r: r[by])
        report[section][key] = {**ordered[len(ordered) // 2], "all_" + by: [r[by] for r in results]}
    report["batch_stats"] = service.serving_stats()["models"]
    server.stop()
    naive.stop(0)

    b32, n32 = report["batched"]["c32"], report["naive"]["c32"]
    rows = report["batched"]["rows256"]
    report["summary"] = {
        "c32_inferences_per_s": b32["inferences_per_s"], "c32_p99_ms": b32["p99_ms"],
        "c32_speedup_vs_naive": round(b32["inferences_per_s"] / n32["inferences_per_s"], 2),
        "rows256_rows_per_s": rows["rows_per_s"],
        "rows256_fraction_of_limit": round(rows["rows_per_s"] / report["limit"]["256"]["rows_per_s"], 3),
        "targets": {"c32_speedup_vs_naive": ">= 1.5", "c32_inferences_per_s": ">= 3000", "c32_p99_ms": "< 20",
                    "rows256_fraction_of_limit": ">= 0.6"},
    }
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
