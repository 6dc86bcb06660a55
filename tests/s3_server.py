"""A real S3-compatible server for tests and the benchmark: ``moto`` in server mode on 127.0.0.1.

The server checks signatures (``INITIAL_NO_AUTH_ACTION_COUNT``: the first few requests, which create an
IAM user with full access and its key, go unauthenticated; every later one must be signed with that
key), so wrong credentials are refused as a real S3 would refuse them.

:class:`S3Proxy` stands between a client and that server (point ``REUSE_S3_ENDPOINT`` at it): it records
every request and can answer some with an error of its own, so tests see what the store asks for and
meet a busy server over real HTTP.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
REGION = "us-east-1"


def moto_missing() -> str | None:
    """Why the server cannot run here, or None."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        return f"the S3 tests need boto3 and moto[server] (pip install -e '.[test,s3]'): {exc}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """``with S3Server(state) as s3:`` a moto server with bucket ``s3.bucket``; ``s3.env`` for clients."""

    bucket = "reuse-test"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def __enter__(self) -> S3Server:
        import boto3

        for _ in range(5):  # the port is free when picked; retry if another process takes it first
            port = _free_port()
            env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3", "MOTO_PORT": str(port)}
            self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                          "-p", str(port)],
                                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait(port):
                break
            self.stop()
        else:
            raise RuntimeError("moto server did not start")
        self.endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=REGION,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="reuse")
        key = iam.create_access_key(UserName="reuse")["AccessKey"]
        iam.put_user_policy(UserName="reuse", PolicyName="all", PolicyDocument=POLICY)
        self.env = {"REUSE_S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                    "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"], "AWS_DEFAULT_REGION": REGION,
                    "REUSE_STATE": str(self.state_dir)}
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def _wait(self, port: int, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def client(self, **override: str):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=override.get("key", self.env["AWS_ACCESS_KEY_ID"]),
                            aws_secret_access_key=override.get("secret", self.env["AWS_SECRET_ACCESS_KEY"]))

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def keys(self, prefix: str) -> list[str]:
        resp = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix + "/")
        return sorted(o["Key"][len(prefix) + 1:] for o in resp.get("Contents", []))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __exit__(self, *exc: object) -> None:
        self.stop()


# (method, object path) -> None to pass the request on, or (HTTP status, S3 error code, message) to answer
Fault = Callable[[str, str], "tuple[int, str, str] | None"]
_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "expect"}


class S3Proxy:
    """``with S3Proxy(s3.endpoint) as proxy:`` an HTTP proxy on 127.0.0.1 in front of ``target`` that
    records each request as ``(method, path)`` (the path unquoted, without its query) in ``requests``,
    and answers the requests ``fault`` picks with an S3 error document instead of passing them on.
    Signatures still check: the client signs for the proxy's host, and the proxy sends that Host on."""

    def __init__(self, target: str, fault: Fault | None = None) -> None:
        self.target = urlsplit(target)
        self.fault = fault
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def paths(self, suffix: str) -> list[str]:
        """The paths of the recorded requests that end with ``suffix`` (``.h5``: version objects)."""
        return [p for _, p in self.requests if p.endswith(suffix)]

    def __enter__(self) -> S3Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def _relay(self) -> None:
        proxy: S3Proxy = self.server.proxy  # type: ignore[attr-defined]
        path = unquote(self.path.split("?", 1)[0])
        proxy.requests.append((self.command, path))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        answer = proxy.fault(self.command, path) if proxy.fault else None
        if answer is not None:
            status, code, message = answer
            data = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{escape(code)}</Code>"
                    f"<Message>{escape(message)}</Message></Error>").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() not in _HOP_HEADERS:
                    conn.putheader(key, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        headers = [(k, v) for k, v in resp.getheaders()
                   # sent by send_response
                   if k.lower() not in _HOP_HEADERS and k.lower() not in ("server", "date")]
        if self.command != "HEAD":  # a HEAD keeps the object's Content-Length; a body gets its own
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(data))))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay
