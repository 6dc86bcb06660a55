"""A real S3-compatible server for tests and the benchmark: ``moto`` in server mode on 127.0.0.1.

The server checks signatures (``INITIAL_NO_AUTH_ACTION_COUNT``: the first few requests, which create an
IAM user with full access and its key, go unauthenticated; every later one must be signed with that
key), so wrong credentials are refused as a real S3 would refuse them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

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
            self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
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
