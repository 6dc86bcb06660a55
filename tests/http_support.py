"""Helpers shared by the HTTP tests: plain HTTP calls (stdlib only), raw bytes on a socket, a KServe v2
REST request body, and a served store with HTTP beside gRPC."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
from dataclasses import dataclass

import numpy as np


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | str | dict | None = None,
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
    timeout: float = 30,
) -> Answer:
    """One request on a new connection to 127.0.0.1:``port``."""
    if isinstance(body, dict):
        body, headers = json.dumps(body), {"Content-Type": "application/json", **(headers or {})}
    conn = (
        http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=timeout)
        if tls
        else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    )
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` as it is and read one response back (until its Content-Length is read, the server
    closes, or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):  # the server may close before taking it all: its answer counts
            s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                head, sep, body = out.partition(b"\r\n\r\n")
                length = [
                    int(v)
                    for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
                    if k.strip().lower() == b"content-length"
                ]
                if sep and length and len(body) >= length[0]:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def rest_request(
    x: np.ndarray,
    name: str = "features",
    *,
    binary: bool = False,
    binary_out: bool = False,
    outputs: list[str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A KServe v2 REST inference body for one FP32 input: JSON data, or the binary-data extension."""
    tensor: dict = {"name": name, "datatype": "FP32", "shape": list(x.shape)}
    blob = b""
    if binary:
        blob = np.ascontiguousarray(x, "<f4").tobytes()
        tensor["parameters"] = {"binary_data_size": len(blob)}
    else:
        tensor["data"] = x.ravel().tolist()
    doc: dict = {"id": "r-1", "inputs": [tensor]}
    if outputs is not None:
        doc["outputs"] = [{"name": o, "parameters": {"binary_data": binary_out}} for o in outputs]
    elif binary_out:
        doc["parameters"] = {"binary_data_output": True}
    head = json.dumps(doc).encode()
    if not blob:
        return head, {"Content-Type": "application/json"}
    return head + blob, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }


def rest_outputs(answer: Answer) -> dict[str, np.ndarray]:
    """Outputs of a REST inference answer by name, from JSON data or the binary part."""
    n = int(answer.headers.get("inference-header-content-length", len(answer.body)))
    doc, blob, at = json.loads(answer.body[:n]), answer.body[n:], 0
    out = {}
    for o in doc["outputs"]:
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is None:
            out[o["name"]] = np.asarray(o["data"], np.float32).reshape(o["shape"])
        else:
            out[o["name"]] = np.frombuffer(blob[at : at + size], "<f4").reshape(o["shape"])
            at += size
    return out
