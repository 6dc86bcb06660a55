"""Image serving benchmark: PNG (and JPEG) images sent as KServe BYTES against FP32 requests of the same
image, at concurrency 8 over loopback, with the decode cost per image.

Model: an image classifier as a user builds one: MobileNetV2 (alpha 0.35, ``weights=None``) at 96x96 with
its ``--preprocess mobilenet_v2`` stage, global average pooling and 10 classes, registered in a temporary
store. The image: a 256x256 RGB "photo" (smooth color fields, edges and noise; the size a camera
thumbnail or a web image has), encoded once as PNG and as JPEG (quality 90). The FP32 request carries the
same image already decoded and resized to 96x96 by the client (what a client has to do without BYTES).

- In process: the decode cost per image, ``reuse.serving.image_inputs.decode_images`` (decode, convert,
  resize to 96x96) for the PNG and the JPEG, and the whole wire path (``convert.decode_request`` on the
  BYTES request, and the FP32 one), each as CPU time of the calling thread (the cost, whatever else runs
  on the machine) and wall time.
- Served: ``reuse serve --runtime RUNTIME`` as a subprocess (batching at most 32 rows, 2 ms, as
  bench/serve.py); closed-loop load from separate client processes using grpc.aio (bench/serve.py's
  clients: each in-flight slot sends its next request when the last answer arrives): requests/s, p50, p99
  and the server's CPU per request (its process tree, from /proc), for FP32, PNG and JPEG, interleaved
  over ``--rounds`` (each figure the median; of an even count the lower middle one).

The summary gives the ratio of PNG to FP32 requests/s (and JPEG's): the median of each round's ratio (the
forms of one round run back to back, so they share the machine's load) beside the ratio of the medians;
the server CPU that decoding adds per request; and the in-process decode cost per image.

Usage: python bench/image_serving.py [--out FILE.json] [--seconds 5] [--rounds 3] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import multiprocessing as mp
import os
import platform
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from serve import BATCH_DELAY_MS, BATCH_ROWS, Proc, busy_ticks, free_port, tree_cpu_s  # noqa: E402

SIZE = 96  # the model's input height and width
PHOTO = 256  # the encoded image's height and width
CLIENT_PROCESSES = 2


def make_store(root: Path) -> str:
    """The model in a new store at ``root``; returns its input's name."""
    import keras

    from reuse.service import Service

    keras.utils.set_random_seed(0)
    service = Service(root)
    service.register_model(keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35,
                                                          input_shape=(SIZE, SIZE, 3)), "mobilenet")
    info = service.build("pets", "mobilenet", ".*", preprocess="mobilenet_v2", head="gap", classes=10, seed=0)
    service.close()
    return info.lineage["inputs"][0]["name"]


def photo(seed: int = 0) -> np.ndarray:
    """A 256x256 RGB image with what photos have: smooth color fields, hard edges and sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:PHOTO, 0:PHOTO] / PHOTO
    img = np.stack([120 + 90 * np.sin(6 * x + 2 * y), 110 + 80 * np.cos(5 * y - 3 * x),
                    100 + 70 * np.sin(9 * x * y)],
                   axis=-1)
    img[(x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.05] = (230, 200, 40)  # a disc with a hard edge
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **kw)
    return buf.getvalue()


def requests(name: str, png: bytes, jpeg: bytes) -> dict[str, bytes]:
    """Serialized ModelInfer requests of the three forms (raw contents, as stock clients send them)."""
    from reuse.grpc import convert
    from reuse.serving.image_inputs import ImageTarget, decode_images

    floats = decode_images("BYTES", [1], [png], ImageTarget(SIZE, SIZE, 3, "float32"))  # the client resizes
    return {"fp32": convert.infer_request("pets", "", {name: floats}).SerializeToString(),
            "png": convert.infer_request("pets", "", {name: [png]}).SerializeToString(),
            "jpeg": convert.infer_request("pets", "", {name: [jpeg]}).SerializeToString()}


def per_call_us(fn, seconds: float) -> dict[str, float]:
    """Microseconds per call of ``fn``: CPU time of this thread (what the call costs, whatever else the
    machine runs) and wall time (what it took here, with the machine's load)."""
    for _ in range(5):
        fn()
    n, t0, c0 = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return {"cpu_us": round(1e6 * (time.thread_time() - c0) / n, 1),
            "wall_us": round(1e6 * (time.perf_counter() - t0) / n, 1)}


def in_process(store: Path, png: bytes, jpeg: bytes, reqs: dict[str, bytes], seconds: float) -> dict:
    from reuse.graph.signature import signature_of
    from reuse.grpc import convert
    from reuse.grpc._proto import inference_pb2 as pb
    from reuse.serving.image_inputs import ImageTarget, decode_images
    from reuse.store import ModelStore

    target = ImageTarget(SIZE, SIZE, 3, "float32")
    model = ModelStore(store).load("pets")
    sig = signature_of(model, "pets", 1)
    png_req = pb.ModelInferRequest.FromString(reqs["png"])
    fp32_req = pb.ModelInferRequest.FromString(reqs["fp32"])
    return {
        "decode_png_per_image": per_call_us(lambda: decode_images("BYTES", [1], [png], target), seconds),
        "decode_jpeg_per_image": per_call_us(lambda: decode_images("BYTES", [1], [jpeg], target), seconds),
        "wire_png_request": per_call_us(lambda: convert.decode_request(png_req, sig), seconds),
        "wire_fp32_request": per_call_us(lambda: convert.decode_request(fp32_req, sig), seconds),
    }


def _client(port: int, slots: int, payload: bytes, seconds: float, out: mp.Queue, start) -> None:
    import grpc

    from reuse.grpc._proto import inference_pb2 as pb
    from reuse.grpc._proto import inference_pb2_grpc as pbg

    async def main() -> None:
        req = pb.ModelInferRequest.FromString(payload)
        opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
                ("grpc.use_local_subchannel_pool", 1)]
        chans = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) for _ in range(slots)]
        try:
            stubs = [pbg.GRPCInferenceServiceStub(ch) for ch in chans]
            for stub in stubs:
                for _ in range(10):
                    await stub.ModelInfer(req)
            start.wait(120)
            lat: list[float] = []
            end = time.perf_counter() + seconds

            async def slot(stub) -> None:
                while (t0 := time.perf_counter()) < end:
                    await stub.ModelInfer(req)
                    lat.append(time.perf_counter() - t0)

            t0, cpu0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*[slot(s) for s in stubs])
            out.put((lat, time.perf_counter() - t0, time.process_time() - cpu0))
        finally:
            for ch in chans:
                await ch.close()

    asyncio.run(main())


def load(port: int, concurrency: int, payload: bytes, seconds: float, server_pid: int) -> dict:
    procs = min(CLIENT_PROCESSES, concurrency)
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    start = ctx.Barrier(procs + 1)
    ps = [ctx.Process(target=_client, args=(port, concurrency // procs, payload, seconds, q, start))
          for _ in range(procs)]
    for p in ps:
        p.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait(240)
    cpu0, busy0 = tree_cpu_s(server_pid), busy_ticks()
    results = []
    deadline = time.monotonic() + seconds + 120
    while len(results) < len(ps):
        try:
            results.append(q.get(timeout=1.0))
        except queue.Empty:
            if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in ps):
                for p in ps:
                    p.terminate()
                return {"error": "a client failed (its traceback is above) or timed out",
                        "requests_per_s": 0.0}
    busy1, cpu1 = busy_ticks(), tree_cpu_s(server_pid)
    for p in ps:
        p.join()
    lat = np.concatenate([np.asarray(r[0]) for r in results]) * 1000.0
    wall = max(r[1] for r in results)
    return {"concurrency": concurrency, "requests": int(lat.size), "request_bytes": len(payload),
            "requests_per_s": round(lat.size / wall, 1), "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "server_cpu_us_per_request": round(1e6 * (cpu1 - cpu0) / lat.size, 1),
            "client_cpu_us_per_request": round(1e6 * sum(r[2] for r in results) / lat.size, 1),
            "machine_cpu_busy": round((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 3),
            "loadavg_1min_after": round(os.getloadavg()[0], 2)}


def median(results: list[dict]) -> dict:
    ordered = sorted(results, key=lambda r: r["requests_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "all_requests_per_s": [r["requests_per_s"] for r in results]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per load point")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; figures are medians")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--runtime", default="auto", choices=["auto", "onnx", "keras"],
                    help="reuse serve --runtime")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory()
    store = Path(tmp.name) / "store"
    name = make_store(store)
    pixels = photo()
    png, jpeg = encode(pixels, "PNG"), encode(pixels, "JPEG", quality=90)
    reqs = requests(name, png, jpeg)
    report: dict = {
        "model": f"MobileNetV2 alpha 0.35 at {SIZE}x{SIZE}, --preprocess mobilenet_v2, gap, 10 classes",
        "image": {"pixels": f"{PHOTO}x{PHOTO} RGB", "png_bytes": len(png), "jpeg_bytes": len(jpeg),
                  "fp32_bytes": SIZE * SIZE * 3 * 4, "resized_to": f"{SIZE}x{SIZE}"},
        "runtime": args.runtime, "concurrency": args.concurrency, "seconds_per_point": args.seconds,
        "rounds": args.rounds, "batching": f"at most {BATCH_ROWS} rows, {BATCH_DELAY_MS} ms",
        "cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    report["in_process"] = in_process(store, png, jpeg, reqs, min(args.seconds, 3.0))
    port = free_port()
    server = Proc(f"reuse-{args.runtime}", [sys.executable, "-m", "reuse", "serve", "--store", str(store),
                                            "--port", str(port), "--runtime", args.runtime,
                                            "--max-batch-size", str(BATCH_ROWS), "--max-batch-delay-ms",
                                            str(BATCH_DELAY_MS)],
                  port, r"listening on", env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    runs: dict[str, list[dict]] = {}
    try:
        for _ in range(args.rounds):
            for form, payload in reqs.items():
                runs.setdefault(form, []).append(load(port, args.concurrency, payload, args.seconds,
                                                      server.proc.pid))
                print(f"{form}: {runs[form][-1]['requests_per_s']} requests/s", file=sys.stderr)
    finally:
        server.stop()
    report["served"] = {form: median(r) for form, r in runs.items()}
    s = report["served"]
    report["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    def round_ratios(form: str) -> list[float]:
        return [round(a["requests_per_s"] / b["requests_per_s"], 3) for a, b in zip(runs[form], runs["fp32"],
                                                                                     strict=True)]

    def lower_median(values: list[float]) -> float:
        return sorted(values)[(len(values) - 1) // 2]

    report["summary"] = {
        "png_vs_fp32_requests_per_s": lower_median(round_ratios("png")),
        "png_vs_fp32_per_round": round_ratios("png"),
        "png_vs_fp32_of_medians": round(s["png"]["requests_per_s"] / s["fp32"]["requests_per_s"], 3),
        "jpeg_vs_fp32_requests_per_s": lower_median(round_ratios("jpeg")),
        "jpeg_vs_fp32_per_round": round_ratios("jpeg"),
        "png_server_cpu_added_us_per_request": round(s["png"]["server_cpu_us_per_request"]
                                                     - s["fp32"]["server_cpu_us_per_request"], 1),
        "jpeg_server_cpu_added_us_per_request": round(s["jpeg"]["server_cpu_us_per_request"]
                                                      - s["fp32"]["server_cpu_us_per_request"], 1),
        "decode_png_cpu_us_per_image": report["in_process"]["decode_png_per_image"]["cpu_us"],
        "decode_jpeg_cpu_us_per_image": report["in_process"]["decode_jpeg_per_image"]["cpu_us"],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
