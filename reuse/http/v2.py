"""The KServe v2 REST protocol: health, server and model metadata, readiness, inference.

Each handler converts the request, calls the service, converts the answer, as the gRPC servicers do.
Inference awaits the same data plane as gRPC's ModelInfer (:meth:`Service.infer_on_loop`: lookup, load,
the signature checks, dynamic batching, eviction retry); metadata and readiness load the model in the
thread pool. Errors become ``{"error": message}`` with the status of reuse.http.status.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import keras
from aiohttp import web

import reuse
from reuse.http import codec
from reuse.http.body import read_body
from reuse.http.context import HttpContext
from reuse.serving.v2 import model_ref

LARGE_BODY = 1 << 20  # a body above this is parsed in the thread pool, off the event loop
EXTENSIONS = ["binary_tensor_data"]


def _ref(request: web.Request) -> str:
    return model_ref(request.match_info["name"], request.match_info.get("version", ""))


def json_response(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status, dumps=codec.compact_json)


async def live(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def ready(request: web.Request) -> web.Response:
    return web.Response(status=200 if HttpContext.of(request).ready() else 400)


async def server_metadata(request: web.Request) -> web.Response:
    return json_response({"name": "reuse", "version": reuse.__version__, "extensions": EXTENSIONS})


async def model_metadata(request: web.Request) -> web.Response:
    ctx, ref = HttpContext.of(request), _ref(request)

    def metadata() -> dict[str, Any]:
        sig = ctx.service.model_signature(ref)
        runtime = ctx.service.serving_runtime(ref)
        parameters = {"runtime": runtime.runtime, "runtime_reason": runtime.reason}
        if sig.class_names:
            parameters["class_names"] = json.dumps(list(sig.class_names))
        return {
            "name": sig.name,
            "versions": [str(i.version) for i in ctx.service.model_versions(sig.name)],
            "platform": f"keras_{keras.backend.backend()}",
            "inputs": [codec.tensor_metadata(s, sig.preprocess) for s in sig.inputs],
            "outputs": [codec.tensor_metadata(s) for s in sig.outputs],
            "parameters": parameters,
        }

    return json_response(await ctx.in_pool(metadata))


async def model_ready(request: web.Request) -> web.Response:
    ctx, ref = HttpContext.of(request), _ref(request)
    await ctx.in_pool(ctx.service.model_signature, ref)
    return web.Response(status=200)


async def infer(request: web.Request) -> web.Response:
    ctx, ref = HttpContext.of(request), _ref(request)
    async with read_body(request, ctx.limits) as body:
        header = request.headers.get(codec.HEADER_LENGTH)
        if len(body) > LARGE_BODY:
            parsed = await ctx.in_pool(codec.parse_request, body, header)
        else:
            parsed = codec.parse_request(body, header)
        decode = functools.partial(codec.decode_request, parsed, max_bytes=ctx.limits.max_body_bytes)
        sig, outputs, plan = await ctx.service.infer_on_loop(ref, decode, ctx.pool,
                                                             decode_in_pool=codec.has_images(parsed))
    if sum(o.nbytes for o in outputs) > LARGE_BODY and not all(plan.binary):
        payload, headers = await ctx.in_pool(codec.encode_response, sig, outputs, plan, parsed.id)
    else:
        payload, headers = codec.encode_response(sig, outputs, plan, parsed.id)
    return web.Response(body=payload, headers=headers)


def add_routes(app: web.Application) -> None:
    """The v2 routes, each with and without ``/versions/{version}``."""
    r = app.router
    r.add_get("/v2", server_metadata)
    r.add_get("/v2/health/live", live, name="health-live")
    r.add_get("/v2/health/ready", ready, name="health-ready")
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        r.add_get(base, model_metadata)
        r.add_get(base + "/ready", model_ready)
        r.add_post(base + "/infer", infer)
