"""The REST half of bench/serve.py: KServe v2 REST load from client processes, the MLServer peer, and the
summary of the REST points.

Load: closed loop like the gRPC client (each in-flight slot sends its next request when its answer
arrives), single-row requests of the 784-feature MLP, one aiohttp client session per process with one
keep-alive connection per slot (HTTP/1.1 answers one request at a time per connection). Two encodings:
``json`` (the row as a JSON list, the answer as JSON data) and ``binary`` (the Triton binary-data
extension both ways: the row's 3,136 bytes after a JSON header, ``binary_data_output``). A server that
refuses an encoding (MLServer has no binary-data extension) is recorded as an error for that point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import queue
import threading
import time
from pathlib import Path

import numpy as np

FEATURES = 784
ENCODINGS = ("json", "binary")


def request_body(encoding: str, rows: int = 1) -> tuple[bytes, dict[str, str]]:
    x = np.random.default_rng(1).random((rows, FEATURES), np.float32)
    tensor: dict = {"name": "pixels", "datatype": "FP32", "shape": [rows, FEATURES]}
    if encoding == "json":
        tensor["data"] = x.ravel().tolist()
        return json.dumps({"inputs": [tensor]}).encode(), {"Content-Type": "application/json"}
    tensor["parameters"] = {"binary_data_size": x.nbytes}
    head = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    return head + x.tobytes(), {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }


def _client(port: int, slots: int, encoding: str, seconds: float, out: mp.Queue, start=None) -> None:
    import aiohttp

    async def main() -> None:
        body, headers = request_body(encoding)
        url = f"http://127.0.0.1:{port}/v2/models/mlp/infer"
        connector = aiohttp.TCPConnector(limit=slots, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def once() -> None:
                async with session.post(url, data=body, headers=headers) as r:
                    answer = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"HTTP {r.status}: {answer[:300]!r}")

            await asyncio.gather(*[once() for _ in range(slots)])  # one connection per slot, warm
            for _ in range(20):
                await once()
            if start is not None:
                start.wait(60)
            lat: list[float] = []
            end = time.perf_counter() + seconds

            async def slot() -> None:
                while (t0 := time.perf_counter()) < end:
                    await once()
                    lat.append(time.perf_counter() - t0)

            t0, cpu0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*[slot() for _ in range(slots)])
            out.put((lat, time.perf_counter() - t0, time.process_time() - cpu0))

    asyncio.run(main())


def load(
    port: int,
    concurrency: int,
    encoding: str,
    seconds: float,
    server_pid: int | None,
    tree_cpu_s,
    busy_ticks,
    client_processes: int = 2,
) -> dict:
    """One REST load point: ``concurrency`` slots over ``client_processes`` processes (1 at concurrency 1)."""
    procs = 1 if concurrency == 1 else min(client_processes, concurrency)
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    start = ctx.Barrier(procs + 1)
    ps = [
        ctx.Process(target=_client, args=(port, concurrency // procs, encoding, seconds, q, start))
        for _ in range(procs)
    ]
    for p in ps:
        p.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait(120)
    cpu0, busy0 = (tree_cpu_s(server_pid) if server_pid else None), busy_ticks()
    results, deadline = [], time.monotonic() + seconds + 120
    point = {"concurrency": concurrency, "rows_per_request": 1, "encoding": encoding}
    while len(results) < len(ps):
        try:
            results.append(q.get(timeout=1.0))
        except queue.Empty:
            if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in ps):
                for p in ps:
                    p.terminate()
                return {
                    **point,
                    "error": "a client failed (its traceback is above: the server refused the "
                    "request or the encoding) or timed out",
                    "inferences_per_s": 0.0,
                    "rows_per_s": 0.0,
                }
    busy1, cpu1 = busy_ticks(), (tree_cpu_s(server_pid) if server_pid else None)
    for p in ps:
        p.join()
    lat = np.concatenate([np.asarray(r[0]) for r in results]) * 1000.0
    wall = max(r[1] for r in results)
    cpu = {
        "client_cpu_us_per_request": round(1e6 * sum(r[2] for r in results) / lat.size, 1),
        "machine_cpu_busy": round((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 3),
    }
    if server_pid:
        cpu["server_cpu_us_per_request"] = round(1e6 * (cpu1 - cpu0) / lat.size, 1)
    import os

    return {
        **point,
        "requests": int(lat.size),
        "inferences_per_s": round(lat.size / wall, 1),
        "rows_per_s": round(lat.size / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "client_processes": procs,
        "connections": concurrency,
        **cpu,
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
    }


def _best(servers: dict, key: str, prefixes: tuple[str, ...]) -> tuple[str, dict] | None:
    have = [
        (k, v[key])
        for k, v in servers.items()
        if k.startswith(prefixes) and key in v and "error" not in v[key]
    ]
    return max(have, key=lambda kv: kv[1]["inferences_per_s"]) if have else None


def summary(servers: dict) -> dict:
    """REST targets: ours against the best peer at concurrency 32, per encoding (target >= 1x)."""
    out: dict = {"targets": {f"rest_{e}_c32_vs_best_peer": ">= 1.0" for e in ENCODINGS}}
    for e in ENCODINGS:
        key = f"rest-{e}-c32"
        ours, peer = _best(servers, key, ("reuse-",)), _best(servers, key, ("pytriton-", "mlserver"))
        if ours is not None:
            out[f"rest_{e}_c32_best_reuse"] = {
                "server": ours[0],
                "inferences_per_s": ours[1]["inferences_per_s"],
                "p99_ms": ours[1]["p99_ms"],
            }
        if peer is not None:
            out[f"rest_{e}_c32_best_peer"] = {
                "server": peer[0],
                "inferences_per_s": peer[1]["inferences_per_s"],
                "p99_ms": peer[1]["p99_ms"],
            }
        if ours is not None and peer is not None:
            out[f"rest_{e}_c32_vs_best_peer"] = round(
                ours[1]["inferences_per_s"] / peer[1]["inferences_per_s"], 2
            )
        if (empty := _best(servers, key, ("empty-http",))) is not None:
            out[f"rest_{e}_c32_empty_server"] = {
                "server": empty[0],
                "inferences_per_s": empty[1]["inferences_per_s"],
            }
    out["met"] = {k: out[k] >= 1.0 for k in list(out) if k.endswith("_vs_best_peer")}
    return out


MLSERVER_VENV = Path(__file__).resolve().parent.parent / ".venv-mlserver"


def mlserver_python() -> Path | None:
    py = MLSERVER_VENV / "bin" / "python"
    return py if (MLSERVER_VENV / ".installed").exists() and py.exists() else None
