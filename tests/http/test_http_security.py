"""HTTP's token, TLS, escaping and read-only rules, and the two commands that start it (``reuse serve
--http-port`` and ``reuse ui``) as subprocesses, on real servers bound to 127.0.0.1 and OS-chosen ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from conftest import make_mlp
from http_support import call, rest_outputs, rest_request

from reuse.grpc.server import ServerConfig, start_in_thread
from reuse.http.auth import COOKIE
from reuse.service import Service
from reuse.serving.engine import ServingOptions

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = '<script>document.title="pwned"</script>'


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("sec") / "store")
    svc.register_model(make_mlp(), "mlp", description=HOSTILE, class_names=["<b>a</b>", "b&c", "c\"'"])
    svc.configure_serving(ServingOptions(runtime="keras"))
    return svc


def test_a_token_guards_everything_but_health_and_the_login(service, rng):
    with start_in_thread(service, ServerConfig(port=0, http_port=0, token="s3cret")) as server:
        port = server.http_port
        for path in ("/v2/health/live", "/v2/health/ready", "/ui/login", "/ui/static/app.css"):
            assert call(port, "GET", path).status == 200, path
        assert (
            str(service.store_root).encode() not in call(port, "GET", "/ui/login").body
        )  # nothing to strangers
        a = call(port, "GET", "/v2/models/mlp")
        assert a.status == 401 and "missing bearer token" in a.json()["error"]
        assert (
            call(port, "GET", "/v2/models/mlp", headers={"Authorization": "Bearer nope"}).json()["error"]
            == "invalid bearer token"
        )
        body, headers = rest_request(rng.normal(size=(1, 8)).astype("float32"))
        assert call(port, "POST", "/v2/models/mlp/infer", body, headers).status == 401
        a = call(port, "POST", "/v2/models/mlp/infer", body, {**headers, "Authorization": "Bearer s3cret"})
        assert a.status == 200 and rest_outputs(a)["output"].shape == (1, 3)
        assert call(port, "GET", "/ui/api/jobs").status == 401
        for sneaky in (
            "/ui/static/..%2F..%2Fv2%2Fmodels%2Fmlp",
            "/ui/static%2F..%2Fapi%2Fjobs",
            "/ui/login/../api/jobs",
            "/ui/static/../api/jobs",
            "/v2/health/live/../../models/mlp",
        ):
            assert call(port, "GET", sneaky).status in (303, 401, 403, 404), sneaky  # no way past the token
        # A page asks for the token: to the login form, and back after it.
        a = call(port, "GET", "/ui/models/mlp?x=1")
        where = urlsplit(a.headers["location"])
        assert (
            a.status == 303
            and where.path == "/ui/login"
            and parse_qs(where.query) == {"next": ["/ui/models/mlp?x=1"]}
        )
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        a = call(port, "POST", "/ui/login", "token=wrong&next=/ui/", form)
        assert a.status == 401 and b"not this server&#39;s token" in a.body and "set-cookie" not in a.headers
        a = call(port, "POST", "/ui/login", "token=s3cret&next=//evil.example/x", form)
        assert a.status == 303 and a.headers["location"] == "/ui/"  # never to another site
        cookie = a.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "s3cret" not in cookie
        session = cookie.split(";")[0]
        assert call(port, "GET", "/ui/models/mlp", headers={"Cookie": session}).status == 200
        assert call(port, "GET", "/v2/models/mlp", headers={"Cookie": session}).status == 200
        assert call(port, "GET", "/ui/", headers={"Cookie": f"{COOKIE}=forged"}).status == 303
        assert call(port, "POST", "/ui/login", "token=" + "x" * 10000, form).status == 413


def test_user_text_is_escaped_and_pages_carry_a_strict_policy(service):
    with start_in_thread(service, ServerConfig(port=0, http_port=0)) as server:
        for path in ("/ui/", "/ui/models/mlp/versions/1"):
            a = call(server.http_port, "GET", path)
            assert a.status == 200
            html = a.body.decode()
            assert HOSTILE not in html and "&lt;script&gt;document.title=" in html
            assert "<b>a</b>" not in html
            policy = a.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
            assert a.headers["x-frame-options"] == "DENY" and a.headers["cache-control"] == "no-store"
            assert not re.search(
                r"<script(?![^>]*(src=|type=\"application/json\"))", html
            )  # no inline script
        page = call(server.http_port, "GET", "/ui/models/%3Cscript%3E")
        assert (
            page.status == 400
            and b"&lt;script&gt;" in page.body
            and b"<script>" not in page.body.split(b"</h1>")[1]
        )
        # No folder listing, no way out of the static folder.
        assert call(server.http_port, "GET", "/ui/static/").status in (403, 404)
        assert call(server.http_port, "GET", "/ui/static/vendor/").status in (403, 404)
        assert call(server.http_port, "GET", "/ui/static/../../service.py").status == 404
        assert call(server.http_port, "GET", "/ui/static/%2e%2e/%2e%2e/service.py").status in (403, 404)
        assert call(server.http_port, "GET", "/ui/static/vendor/chart.umd.min.js").status == 200


def test_tls_serves_https_with_the_grpc_files(service, tmp_path, rng):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    with start_in_thread(service, ServerConfig(port=0, http_port=0, tls_cert=cert, tls_key=key)) as server:
        tls = ssl.create_default_context(cafile=str(cert))
        body, headers = rest_request(rng.normal(size=(2, 8)).astype("float32"))
        a = call(server.http_port, "POST", "/v2/models/mlp/infer", body, headers, tls=tls)
        assert a.status == 200 and rest_outputs(a)["output"].shape == (2, 3)
        with pytest.raises((ConnectionError, OSError)):  # plaintext to the TLS port gets no answer
            answer = call(server.http_port, "GET", "/v2/health/live", timeout=5)
            raise ConnectionError(f"answered {answer.status}")


def _start(cmd: list[str], pattern: str) -> tuple[subprocess.Popen, re.Match]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        m = re.search(pattern, line)
        if m:
            return proc, m
    proc.wait(30)
    raise AssertionError(f"{cmd} ended before it was ready: {proc.stderr.read()[-2000:]}")


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_reuse_ui_and_serve_http_port_as_a_user_starts_them(service, rng):
    store = str(service.store_root)
    x = rng.normal(size=(1, 8)).astype("float32")
    body, headers = rest_request(x)
    ui, m = _start(
        [sys.executable, "-m", "reuse", "ui", "--store", store, "--port", "0"],
        r"dashboard on http://127\.0\.0\.1:(\d+)/ui/ \(store (.+)\)",
    )
    try:
        port = int(m.group(1))
        assert call(port, "GET", "/ui/").status == 200 and b"mlp" in call(port, "GET", "/ui/").body
        via_ui = rest_outputs(call(port, "POST", "/v2/models/mlp/infer", body, headers))["output"]
    finally:
        assert _stop(ui) == 0
    serve, m = _start(
        [
            sys.executable,
            "-m",
            "reuse",
            "serve",
            "--store",
            store,
            "--port",
            "0",
            "--http-port",
            "0",
            "--runtime",
            "keras",
        ],
        r"http on http://127\.0\.0\.1:(\d+)/ui/ \(KServe v2 REST under /v2\)",
    )
    try:
        port = int(m.group(1))
        # reuse ui serves on the default runtime (ONNX Runtime, matching Keras within 1e-5), this on Keras
        np.testing.assert_allclose(
            rest_outputs(call(port, "POST", "/v2/models/mlp/infer", body, headers))["output"],
            via_ui,
            rtol=1e-5,
            atol=1e-6,
        )
    finally:
        assert _stop(serve) == 0
