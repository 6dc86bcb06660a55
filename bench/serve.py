"""Serving benchmark: KServe v2 over loopback, `reuse serve` per runtime and process count, side by side
with PyTriton peers, against the in-process limits of the same forward passes.

Model: MLP 784-300-100-10. Every server gets the same batching knobs (at most 32 rows, 2 ms) and the same
closed-loop load from separate client processes using grpc.aio (each in-flight slot sends its next request
when the last answer arrives; at concurrency > 1, 4 connections per client process, so that the kernel
spreads them over ``--processes`` servers), bounded in time:

- single-row requests at concurrency 1, 8, 32: inferences/s, p50, p99 (ms);
- 256-row requests: rows/s;
- servers: ``reuse serve --runtime R [--processes N]`` as a subprocess for each R in --runtime and N in
  --processes (N > 1 is skipped, saying so, when ``reuse serve --help`` has no --processes); a naive
  in-process server (grpc thread pool, no batching, the compiled Keras forward per request) as the
  baseline; and, when the peer venv exists (``make bench-peers``), PyTriton 0.7 with the Keras model in a
  ``tf.function`` as a user would write it, and with an ONNX Runtime session on the Keras ONNX export;
- the limits: the compiled Keras forward and the ONNX Runtime session (1 thread) called in-process;
- the transport ceiling: an empty-handler server (bench/_empty_server.py: grpc's thread-pool server
  with reuse serve's settings answering a prepared response, in --ceiling processes on one port), so a
  target above it is seen to be out of reach of any handler on this machine.

With ``--protocols grpc,rest`` (the default) the same servers are also loaded over KServe v2 REST
(bench/_rest.py): single-row requests at each concurrency level, as JSON and with the binary-data
extension, against ``reuse serve --http-port``, PyTriton's (Triton's) HTTP endpoint, MLServer 1.7.1 with an
ONNX Runtime runtime (when ``.venv-mlserver`` exists: ``make bench-peers``) and an empty-handler aiohttp
server (bench/_empty_http.py, the REST transport ceiling); same batching knobs.

Each point also reports the CPU it cost per request: the server's (its process tree, from /proc), the
client processes' own, and how busy the whole machine was (1.0: every core).

Servers run at once and the load points interleave over them, so load from other processes on a shared
machine falls on all alike; each figure is the median over --rounds (of an even count, the lower
middle one). The summary checks the targets, and for the 256-row one adds what it would cost in CPU
cores on this machine (the client's and the empty server's CPU per request and the forward pass, at the
target rate).

Usage: python bench/serve.py [--out FILE.json] [--seconds 5] [--runtime keras,onnx] [--processes 1,2]
                             [--protocols grpc,rest]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _rest  # noqa: E402

FEATURES = 784


def make_model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((FEATURES,), name="pixels"),
                             keras.layers.Dense(300, activation="relu", name="hidden1"),
                             keras.layers.Dense(100, activation="relu", name="hidden2"),
                             keras.layers.Dense(10, activation="softmax", name="output")], name="mlp")


# -- client processes ------------------------------------------------------------------------------
def _client(port: int, slots: int, rows: int, seconds: float, out: mp.Queue, channels: int = 1,
            start=None) -> None:
    import grpc

    from reuse.grpc._proto import inference_pb2 as pb
    from reuse.grpc._proto import inference_pb2_grpc as pbg

    async def main() -> None:
        req = pb.ModelInferRequest(model_name="mlp")
        req.inputs.add(name="pixels", datatype="FP32", shape=[rows, FEATURES])
        req.raw_input_contents.append(np.random.default_rng(1).random((rows, FEATURES), np.float32).tobytes())
        # Each channel its own connection (a local subchannel pool): with `reuse serve --processes N` the
        # kernel spreads connections, not requests, over the processes.
        opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
                ("grpc.use_local_subchannel_pool", 1)]
        chans = [
            grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) for _ in range(max(1, channels))
        ]
        try:
            stubs = [pbg.GRPCInferenceServiceStub(ch) for ch in chans]
            for stub in stubs:
                for _ in range(20):  # warm up the connection and the server's compiled function
                    await stub.ModelInfer(req)
            if start is not None:  # every client warm: the parent starts counting CPU, all start at once
                start.wait(60)
            lat: list[float] = []
            end = time.perf_counter() + seconds

            async def slot(stub) -> None:
                while (t0 := time.perf_counter()) < end:
                    await stub.ModelInfer(req)
                    lat.append(time.perf_counter() - t0)

            t0, cpu0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*[slot(stubs[i % len(stubs)]) for i in range(slots)])
            out.put((lat, time.perf_counter() - t0, time.process_time() - cpu0))
        finally:
            for ch in chans:
                await ch.close()

    asyncio.run(main())


CLIENT_PROCESSES = 2
CLIENT_CHANNELS = 4  # connections per client process at concurrency > 1


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and every live descendant (Linux)."""
    parent, used = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended meanwhile
        p = int(stat.parent.name)
        parent[p], used[p] = int(fields[1]), int(fields[11]) + int(fields[12])
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, pp in parent.items() if pp == p and c not in tree]
    return sum(used.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def busy_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


def load(port: int, concurrency: int, rows: int, seconds: float, server_pid: int | None = None) -> dict:
    procs = 1 if concurrency == 1 else min(CLIENT_PROCESSES, concurrency)
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    slots = concurrency // procs
    channels = min(CLIENT_CHANNELS, slots)
    start = ctx.Barrier(procs + 1)
    ps = [ctx.Process(target=_client,
                      args=(port, slots, rows, seconds, q, channels, start)) for _ in range(procs)]
    for p in ps:
        p.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a client failed: found below
        start.wait(180)
    cpu0, busy0 = (tree_cpu_s(server_pid) if server_pid else None), busy_ticks()
    results = []
    deadline = time.monotonic() + seconds + 120
    while len(results) < len(ps):  # a client that fails (its server refused) must not hang the run
        try:
            results.append(q.get(timeout=1.0))
        except queue.Empty:
            if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in ps):
                for p in ps:
                    p.terminate()
                return {"concurrency": concurrency, "rows_per_request": rows, "error": "a client failed (its "
                        "traceback is above) or timed out", "inferences_per_s": 0.0, "rows_per_s": 0.0}
    busy1, cpu1 = busy_ticks(), (tree_cpu_s(server_pid) if server_pid else None)
    for p in ps:
        p.join()
    lat = np.concatenate([np.asarray(r[0]) for r in results]) * 1000.0
    wall = max(r[1] for r in results)
    cpu = {"client_cpu_us_per_request": round(1e6 * sum(r[2] for r in results) / lat.size, 1),
           "machine_cpu_busy": round((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 3)}
    if server_pid:
        cpu["server_cpu_us_per_request"] = round(1e6 * (cpu1 - cpu0) / lat.size, 1)
    return {"concurrency": concurrency, "rows_per_request": rows, "requests": int(lat.size),
            "inferences_per_s": round(lat.size / wall, 1), "rows_per_s": round(lat.size * rows / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3), "client_processes": procs,
            "connections": procs * channels, **cpu, "loadavg_1min_after": round(os.getloadavg()[0], 2)}


# -- the naive server --------------------------------------------------------------------------------
def naive_server(forward, threads: int = 8):
    import grpc

    from reuse.graph.signature import signature_of
    from reuse.grpc import convert
    from reuse.grpc._proto import inference_pb2_grpc as pbg

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


# -- servers in their own processes ---------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / ".venv-peers"
BATCH_ROWS, BATCH_DELAY_MS = 32, 2.0
BIG_ROWS = 256  # rows of the large requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    """A server subprocess: started, waited for until it prints ``ready_pattern``, stopped by SIGTERM."""

    def __init__(self, name: str, cmd: list[str], port: int | None, ready_pattern: str,
                 env: dict | None = None, timeout: float = 180.0, http_port: int | None = None) -> None:
        self.name, self.port, self.http_port = name, port, http_port
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - read when the server fails, closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env={**os.environ, **(env or {})}, cwd=ROOT)
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            if re.search(ready_pattern, line):
                break
            if time.monotonic() > deadline:
                break
        else:
            self.log.seek(0)
            raise RuntimeError(f"{name} exited before it was ready: {self.log.read()[-2000:]}")
        # keep reading what it prints, so that a full pipe never blocks it
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def serve_help() -> str:
    return subprocess.run([sys.executable, "-m", "reuse", "serve", "--help"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout


def start_reuse(store: str, runtime: str, processes: int, http: bool = False) -> Proc:
    port, http_port = free_port(), (free_port() if http else None)
    cmd = [sys.executable, "-m", "reuse", "serve", "--store", store, "--port", str(port), "--runtime",
           runtime, "--max-batch-size", str(BATCH_ROWS), "--max-batch-delay-ms", str(BATCH_DELAY_MS)]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    if http_port:
        cmd += ["--http-port", str(http_port)]
    return Proc(f"reuse-{runtime}-p{processes}", cmd, port, r"listening on", env={"PYTHONPATH": str(ROOT)},
                http_port=http_port)


def start_empty_http() -> Proc:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "bench" / "_empty_http.py"), str(port)]
    return Proc("empty-http", cmd, None, r"^ready", http_port=port)


def start_mlserver(model_path: Path, seconds: float) -> Proc:
    http_port, grpc_port = free_port(), free_port()
    cmd = [str(_rest.mlserver_python()), str(ROOT / "bench" / "_mlserver_peer.py"), str(model_path),
           str(http_port), str(grpc_port), str(int(seconds))]
    return Proc("mlserver-onnx", cmd, None, r"^ready", http_port=http_port)


def start_empty(processes: int) -> Proc:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "bench" / "_empty_server.py"), str(port), str(processes)]
    return Proc(f"empty-p{processes}", cmd, port, r"^ready")


def peer_python() -> Path | None:
    py = PEERS_VENV / "bin" / "python"
    return py if (PEERS_VENV / ".installed").exists() and py.exists() else None


def start_peer(kind: str, model_path: Path, seconds: float) -> Proc:
    py = peer_python()
    libdir = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    ports = [free_port() for _ in range(3)]
    # Triton refuses a request above max_batch_size rows: allow the 256-row point (batches of single rows
    # stay at most 32, the concurrency).
    cmd = [str(py), str(ROOT / "bench" / "_pytriton_peer.py"), kind, str(model_path), *map(str, ports),
           str(int(seconds)), str(BIG_ROWS)]
    # The Triton Python-backend stub must link the interpreter's own libpython (../shared/PEERS.md).
    return Proc(f"pytriton-{kind}", cmd, ports[0], r"^ready", env={"LD_LIBRARY_PATH": libdir},
                http_port=ports[1])


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


def ort_forward(path: Path):
    from reuse.export import onnx_file

    session = onnx_file.open_session(path, threads=1)
    name = session.get_inputs()[0].name
    return lambda xs: session.run(None, {name: xs[0]})


def csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def table(report: dict, levels: list[str]) -> str:
    rows = ["| server | " + " | ".join(levels) + " |", "|---" * (len(levels) + 1) + "|"]
    for name, points in report["servers"].items():
        cells = []
        for key in levels:
            r = points.get(key)
            if r is None:
                cells.append("-")
            elif "error" in r:
                cells.append("failed")
            elif r["rows_per_request"] > 1:
                cells.append(f"{r['rows_per_s']:,.0f} rows/s")
            else:
                cells.append(f"{r['inferences_per_s']:,.0f} inf/s, p50 {r['p50_ms']:.2f}, p99 "
                             f"{r['p99_ms']:.1f} ms")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def summary(report: dict) -> dict:
    servers = report["servers"]
    ours = {k: v for k, v in servers.items() if k.startswith("reuse-")}
    peers = {k: v for k, v in servers.items() if k.startswith("pytriton-")}

    def best(group: dict, key: str, by: str = "inferences_per_s") -> tuple[str, dict] | None:
        have = [(k, v[key]) for k, v in group.items() if key in v]
        return max(have, key=lambda kv: kv[1][by]) if have else None

    out: dict = {"targets": {"c32_vs_best_peer": ">= 1.5", "c32_p99_ms": "<= 20", "c1_p50_ms": "<= 1",
                             "rows256_fraction_of_onnx_limit": ">= 0.8"}}
    if (b := best(ours, "c32")) is not None:
        out["c32_best_reuse"] = {"server": b[0], "inferences_per_s": b[1]["inferences_per_s"],
                                 "p99_ms": b[1]["p99_ms"]}
        if (p := best(peers, "c32")) is not None:
            out["c32_best_peer"] = {"server": p[0], "inferences_per_s": p[1]["inferences_per_s"],
                                    "p99_ms": p[1]["p99_ms"]}
            out["c32_vs_best_peer"] = round(b[1]["inferences_per_s"] / p[1]["inferences_per_s"], 2)
        if "naive" in servers:
            out["c32_vs_naive"] = round(
                b[1]["inferences_per_s"] / servers["naive"]["c32"]["inferences_per_s"], 2
            )
    if (b := best(ours, "c1")) is not None:
        out["c1_best_reuse"] = {"server": b[0], "p50_ms": b[1]["p50_ms"],
                                "inferences_per_s": b[1]["inferences_per_s"]}
    if (b := best(ours, "rows256", "rows_per_s")) is not None and "256" in report["limit"].get("onnx", {}):
        lim = report["limit"]["onnx"]["256"]["rows_per_s"]
        out["rows256_best_reuse"] = {"server": b[0], "rows_per_s": b[1]["rows_per_s"]}
        out["rows256_fraction_of_onnx_limit"] = round(b[1]["rows_per_s"] / lim, 3)
    # The empty-handler server: what grpc's Python server, the wire and this client allow on this machine
    # with no work at all. A target above it cannot be met by any handler.
    empty = {k: v for k, v in servers.items() if k.startswith("empty-")}
    if (e := best(empty, "c32")) is not None and "c32_best_peer" in out:
        out["c32_empty_server"] = {"server": e[0], "inferences_per_s": e[1]["inferences_per_s"],
                                   "vs_best_peer": round(e[1]["inferences_per_s"]
                                                         / out["c32_best_peer"]["inferences_per_s"], 2)}
    if (e := best(empty, "rows256", "rows_per_s")) is not None and "256" in report["limit"].get("onnx", {}):
        out["rows256_empty_server"] = {
            "server": e[0],
            "rows_per_s": e[1]["rows_per_s"],
            "fraction_of_onnx_limit": round(
                e[1]["rows_per_s"] / report["limit"]["onnx"]["256"]["rows_per_s"], 3
            ),
        }
    if "rows256_empty_server" in out:
        # What the 256-row target would cost on this machine, from this run's CPU figures: the client's own
        # CPU and the empty server's transport per request, and the forward pass at its in-process rate.
        lim = report["limit"]["onnx"]["256"]
        per_s = 0.8 * lim["rows_per_s"] / BIG_ROWS
        e = empty[out["rows256_empty_server"]["server"]]["rows256"]
        need = {"requests_per_s": round(per_s, 1),
                "client": round(per_s * e["client_cpu_us_per_request"] / 1e6, 2),
                "transport": round(per_s * e["server_cpu_us_per_request"] / 1e6, 2),
                "forward": round(per_s / lim["calls_per_s"], 2)}
        need["total"] = round(need["client"] + need["transport"] + need["forward"], 2)
        out["rows256_cores_needed_at_target"] = {**need, "cores": report["cpus"]}
    met = {"c32_vs_best_peer": lambda v: v >= 1.5, "rows256_fraction_of_onnx_limit": lambda v: v >= 0.8}
    out["met"] = {k: ok(out[k]) for k, ok in met.items() if k in out}
    if "c32_best_reuse" in out:
        out["met"]["c32_p99_ms"] = out["c32_best_reuse"]["p99_ms"] <= 20
    if "c1_best_reuse" in out:
        out["met"]["c1_p50_ms"] = out["c1_best_reuse"]["p50_ms"] <= 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per load point")
    ap.add_argument("--levels", default="1,8,32", help="concurrency levels of single-row requests")
    ap.add_argument("--row-concurrency", type=int, default=4, help="concurrency of the 256-row requests")
    ap.add_argument("--runtime", default="keras,onnx",
                    help="reuse serve --runtime values (auto, onnx, keras)")
    ap.add_argument("--processes", default="1", help="reuse serve --processes values, e.g. 1,2")
    ap.add_argument("--peers", choices=["auto", "none"], default="auto",
                    help="auto: run the PyTriton peers when .venv-peers exists (make bench-peers)")
    ap.add_argument("--no-naive", action="store_true", help="leave out the naive in-process baseline")
    ap.add_argument("--ceiling", default=None,
                    help="process counts of the empty-handler server (the transport ceiling); default: those "
                         "of --processes; 'none' leaves it out")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved repetitions; figures are medians")
    ap.add_argument("--protocols", default="grpc,rest",
                    help="grpc: the gRPC points; rest: KServe v2 REST points (JSON and binary-data), "
                         "same levels")
    ap.add_argument("--client-processes", type=int, default=2, help="client processes at concurrency > 1")
    ap.add_argument("--client-channels", type=int, default=4,
                    help="connections per client process at concurrency > 1 (each slot uses one)")
    args = ap.parse_args(argv)
    global CLIENT_PROCESSES, CLIENT_CHANNELS
    CLIENT_PROCESSES, CLIENT_CHANNELS = args.client_processes, args.client_channels

    from reuse.backend.compiled import CompiledForward
    from reuse.export.formats import export_version
    from reuse.service import Service

    tmp = tempfile.TemporaryDirectory()
    store = str(Path(tmp.name) / "store")
    service = Service(store)
    service.register_model(make_model(), "mlp")
    keras_file, onnx_path = Path(tmp.name) / "mlp.keras", Path(tmp.name) / "mlp.onnx"
    export_version(service.store, "mlp", keras_file)
    export_version(service.store, "mlp", onnx_path)
    forward = CompiledForward(service.store.load("mlp"))
    s = args.seconds
    report: dict = {"model": "MLP 784-300-100-10", "seconds_per_point": s, "rounds": args.rounds,
                    "cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
                    "batching": f"at most {BATCH_ROWS} rows, {BATCH_DELAY_MS} ms (every server)",
                    "python": platform.python_version(), "command": " ".join(sys.argv), "skipped": [],
                    "limit": {"keras": {}, "onnx": {}}, "servers": {}}

    has_processes = "--processes" in serve_help()
    protocols = csv(args.protocols)
    servers: list[Proc] = []
    naive = None
    try:
        for runtime in csv(args.runtime):
            for n in (int(p) for p in csv(args.processes)):
                if n > 1 and not has_processes:
                    report["skipped"].append(f"reuse serve --processes {n}: reuse serve --help has no "
                                             "--processes")
                    print(report["skipped"][-1], file=sys.stderr)
                    continue
                # One store per server: a store's jobs belong to one server at a time (the job lock).
                own = Path(tmp.name) / f"store-{runtime}-p{n}"
                shutil.copytree(store, own)
                servers.append(start_reuse(str(own), runtime, n, http="rest" in protocols))
        if args.peers == "auto" and peer_python() is None:
            report["skipped"].append(f"PyTriton peers: no {PEERS_VENV} (make bench-peers builds it)")
            print(report["skipped"][-1], file=sys.stderr)
        elif args.peers == "auto":
            n_points = (len(csv(args.levels)) + 1) * ("grpc" in protocols) + 2 * len(csv(args.levels)) * (
                "rest" in protocols)
            # a safety net only (they are stopped by SIGTERM): a busy machine's point takes 3-4x its seconds
            budget = 1800 + 5 * s * n_points * args.rounds * (len(servers) + 5)
            for kind, path in (("tf", keras_file), ("onnx", onnx_path)):
                servers.append(start_peer(kind, path, budget))  # listed at once: stopped if the next fails
        if "rest" in protocols and args.peers == "auto":
            if _rest.mlserver_python() is None:
                report["skipped"].append(f"MLServer peer: no {_rest.MLSERVER_VENV} (make bench-peers)")
                print(report["skipped"][-1], file=sys.stderr)
            else:
                life = 1800 + 5 * s * 6 * len(csv(args.levels)) * args.rounds * (len(servers) + 5)
                servers.append(start_mlserver(onnx_path, life))
        if "grpc" in protocols:
            for n in ([] if args.ceiling == "none" else csv(args.ceiling or args.processes)):
                servers.append(start_empty(int(n)))
        if "rest" in protocols and args.ceiling != "none":
            servers.append(start_empty_http())
        if not args.no_naive and "grpc" in protocols:
            naive, naive_port = naive_server(forward)
        targets = [(p.name, p.port, p.http_port, p.proc.pid) for p in servers] + (
            [("naive", naive_port, None, None)] if naive else [])
        points = []
        if "grpc" in protocols:
            points += [(f"c{c}", int(c), 1) for c in csv(args.levels)] + [
                (f"rows{BIG_ROWS}", args.row_concurrency, BIG_ROWS)]
        if "rest" in protocols:
            points += [(f"rest-{e}-c{c}", int(c), e) for e in _rest.ENCODINGS for c in csv(args.levels)]
        runs: dict[tuple[str, str], list[dict]] = {}
        ort = ort_forward(onnx_path)
        for _ in range(args.rounds):
            for rows in (1, 32, 256):
                runs.setdefault(("limit:keras", str(rows)), []).append(limit(forward, rows, min(s, 2.0)))
                runs.setdefault(("limit:onnx", str(rows)), []).append(limit(ort, rows, min(s, 2.0)))
            for key, c, rows in points:
                for name, port, http_port, pid in targets:
                    if isinstance(rows, str):  # a REST point: rows is the encoding
                        if http_port is None:
                            continue
                        result = _rest.load(http_port, c, rows, s, pid, tree_cpu_s, busy_ticks,
                                            CLIENT_PROCESSES)
                    elif port is None:
                        continue
                    else:
                        result = load(port, c, rows, s, pid)
                    runs.setdefault((name, key), []).append(result)
                    print(f"{name} {key}: {result['inferences_per_s']} inf/s", file=sys.stderr)
        for (section, key), results in runs.items():
            by = "rows_per_s"
            # the median of the rounds that ran (a failed round is listed, not counted, unless all failed);
            # of an even count, the lower middle one (no server gains from its best round)
            ordered = sorted([r for r in results if "error" not in r] or results, key=lambda r: r[by])
            picked = {**ordered[(len(ordered) - 1) // 2], "all_" + by: [r[by] for r in results],
                      "failed_rounds": sum("error" in r for r in results)}
            if section.startswith("limit:"):
                report["limit"][section.split(":")[1]][key] = picked
            else:
                report["servers"].setdefault(section, {})[key] = picked
    finally:
        for p in servers:
            p.stop()
        if not args.no_naive and naive is not None:
            naive.stop(0)
    report["summary"] = summary(report)
    if "rest" in protocols:
        report["summary"]["rest"] = _rest.summary(report["servers"])
    report["table"] = table(report, [k for k, _, _ in points])
    text = json.dumps(report, indent=2, default=str)
    print(text)
    print(report["table"], file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
