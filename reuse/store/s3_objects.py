"""The objects of one ``s3://BUCKET/PREFIX`` through boto3, with S3's errors turned into ours.

boto3 is imported when a bucket is first opened, never when ``reuse.store`` is imported, so the base
install works without it. The endpoint comes from ``REUSE_S3_ENDPOINT`` (else ``AWS_ENDPOINT_URL``, which
boto3 reads itself); region and credentials from the usual AWS variables, profiles and config files.
Every byte read from a response body is counted in :attr:`Bucket.bytes_read`, so tests and the
benchmark can say what moved over the network.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reuse.config import ENV_S3_ENDPOINT, ENV_S3_TIMEOUT, env_number, import_optional
from reuse.errors import FailedPrecondition, InvalidInput, NotFound, ReuseError, StoreCorrupt, Unauthenticated
from reuse.text import cut, echo

INSTALL_HINT = "the s3:// store needs boto3: pip install 'reuse[s3]'"
MULTIPART_THRESHOLD = 64 * 1024**2  # bigger uploads go in parts; S3 shows the object only once completed
DEFAULT_TIMEOUT_S = 30.0  # per socket read; a dead or silent endpoint fails in seconds, not minutes
CONNECT_TIMEOUT_S = 5.0
_BUSY_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
               "ThrottlingException", "RequestTimeTooSkewed"}
_RETRY_VARS = {"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                     "InvalidClientTokenId", "AuthorizationHeaderMalformed", "UnrecognizedClientException"}


def s3_timeout() -> float:
    """``REUSE_S3_TIMEOUT``: seconds a request may wait on the endpoint (connect at most 5 of them)."""
    return env_number(ENV_S3_TIMEOUT, DEFAULT_TIMEOUT_S, "seconds", zero_ok=False)


class Unavailable(FailedPrecondition):
    """The object store's endpoint cannot be reached (refused, timed out, unknown host)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the store's prefix
    size: int
    etag: str
    mtime_ns: int


class Bucket:
    """The objects under one prefix of one bucket; keys given to its methods are relative to the prefix."""

    def __init__(self, url: str, bucket: str, prefix: str) -> None:
        self.url, self.bucket, self.prefix = url, bucket, prefix
        try:
            boto3 = import_optional("boto3")
            from botocore.config import Config
        except ImportError as exc:
            raise InvalidInput(f"{INSTALL_HINT} (opening {url})") from exc
        endpoint = os.environ.get(ENV_S3_ENDPOINT) or os.environ.get("AWS_ENDPOINT_URL") or None
        self.endpoint = endpoint
        timeout = s3_timeout()
        # boto3's own AWS_MAX_ATTEMPTS / AWS_RETRY_MODE win; a Config's retries would silently replace them.
        retries = None if _RETRY_VARS & os.environ.keys() else {"max_attempts": 3, "mode": "standard"}
        config = Config(retries=retries, connect_timeout=min(timeout, CONNECT_TIMEOUT_S),
                        read_timeout=timeout, max_pool_connections=16)
        try:
            with errors(self, "/"):  # credentials are read here: partial ones fail here
                self.client = boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
        except ValueError as exc:  # botocore: "Invalid endpoint: ..."
            raise InvalidInput(f"{ENV_S3_ENDPOINT} must be an http(s):// URL; received {echo(endpoint)} "
                               f"({cut(str(exc), 200)})") from None
        self._lock = threading.Lock()
        self.bytes_read = 0
        self.requests = 0

    def full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def url_of(self, key: str) -> str:
        return f"{self.url}/{key}"

    def _count(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_read += nbytes
            self.requests += 1

    # -- reading ---------------------------------------------------------------------------------------
    def list(self, under: str = "") -> dict[str, ObjectInfo]:
        """Every object whose relative key starts with ``under``, by relative key (one listing)."""
        out: dict[str, ObjectInfo] = {}
        cut = len(self.full(""))
        with errors(self, under or "/"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                           Prefix=self.full(under))
            for page in pages:
                self._count(0)
                for o in page.get("Contents", []):
                    key = o["Key"][cut:]
                    out[key] = ObjectInfo(key, int(o["Size"]), o["ETag"].strip('"'),
                                          int(o["LastModified"].timestamp() * 1e9))
        return out

    def get(self, key: str, *, limit: int | None = None, what: str = "this object") -> bytes:
        """A whole (small) object; one over ``limit`` bytes is refused before its body is read."""
        with errors(self, key):
            resp = self.client.get_object(Bucket=self.bucket, Key=self.full(key))
            size = int(resp.get("ContentLength") or 0)
            if limit is not None and size > limit:
                resp["Body"].close()
                raise StoreCorrupt(f"{self.url_of(key)}: {size} bytes, more than {what} may have ({limit}); "
                                   "it is not one this store wrote")
            body = resp["Body"].read(limit + 1 if limit is not None else None)
        self._count(len(body))
        return body

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` up to (not including) ``end`` of an object, by one HTTP range request."""
        with errors(self, key):
            resp = self.client.get_object(Bucket=self.bucket, Key=self.full(key),
                                          Range=f"bytes={start}-{end - 1}")
            body = resp["Body"].read()
        self._count(len(body))
        if len(body) != end - start:
            raise StoreCorrupt(f"{self.url_of(key)}: asked for bytes {start}-{end - 1}, received "
                               f"{len(body)}; the object is shorter than its metadata says")
        return body

    def download(self, key: str, dest: Path) -> None:
        from boto3.s3.transfer import TransferConfig

        with errors(self, key):
            self.client.download_file(self.bucket, self.full(key), str(dest),
                                      Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                                            num_download_attempts=2),
                                      Callback=self._count_chunk)
        self._count(0)

    def _count_chunk(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_read += nbytes

    # -- writing ---------------------------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, create: bool = False) -> bool:
        """Write an object; with ``create``, only if none exists (``If-None-Match: *``). Returns False when
        ``create`` lost to an object that is already there."""
        extra: dict[str, Any] = {"IfNoneMatch": "*"} if create else {}
        try:
            with errors(self, key, conditional=create):
                self.client.put_object(Bucket=self.bucket, Key=self.full(key), Body=data, **extra)
        except _Exists:
            return False
        return True

    def upload(self, key: str, path: Path) -> None:
        """Upload a file; past the multipart threshold in parts, so the object appears only when complete."""
        from boto3.s3.transfer import TransferConfig

        with errors(self, key):
            self.client.upload_file(str(path), self.bucket, self.full(key),
                                    Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD))

    def delete(self, key: str) -> None:
        with errors(self, key):
            self.client.delete_object(Bucket=self.bucket, Key=self.full(key))

    def uploads(self, under: str = "") -> dict[str, list[str]]:
        """Unfinished multipart uploads of keys starting with ``under``: relative key -> upload ids."""
        cut, found = len(self.full("")), {}
        with errors(self, under or "/"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket,
                                                                                  Prefix=self.full(under))
            for page in pages:
                for up in page.get("Uploads", []):
                    found.setdefault(up["Key"][cut:], []).append(up["UploadId"])
        return found

    def abort(self, key: str, upload_id: str) -> None:
        with errors(self, key):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.full(key), UploadId=upload_id)


class _Exists(ReuseError):
    """A conditional create found the object there (HTTP 412 or 409)."""


@contextmanager
def errors(bucket: Bucket, key: str, *, conditional: bool = False) -> Iterator[None]:
    """Turn boto3's exceptions into ours, each in one line that says what to do."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    where = bucket.url_of(key) if key != "/" else bucket.url
    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if conditional and (code in ("PreconditionFailed",
                                     "ConditionalRequestConflict") or status in (409, 412)):
            raise _Exists(where) from exc
        if code in ("NoSuchKey", "404", "NotFound"):
            raise NotFound(f"{where}: no such object") from exc
        if code == "NoSuchBucket":
            raise NotFound(f"no bucket {bucket.bucket!r} at {_endpoint(bucket)} (store "
                           f"{bucket.url})") from exc
        if code in _CREDENTIAL_CODES:
            raise Unauthenticated(f"the object store at {_endpoint(bucket)} refused the credentials "
                                  f"({code}): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
                                  "AWS_PROFILE") from exc
        if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
            raise Unauthenticated(f"access denied to {where} at {_endpoint(bucket)} ({code or status}): "
                                  "these credentials may not use this bucket") from exc
        if code == "InvalidRange":
            raise StoreCorrupt(f"{where}: a range outside the object; it is shorter than its metadata says") \
                from exc
        if status >= 500 or code in _BUSY_CODES:  # the server's trouble, not damage: say so, hide nothing
            raise Unavailable(f"the object store at {_endpoint(bucket)} is unavailable for {where} "
                              f"({cut(str(code or status), 80)}: "
                              f"{cut(str(err.get('Message') or exc), 300)}); try again later") from exc
        raise StoreCorrupt(f"{where}: the object store answered {cut(str(code or status), 80)}: "
                           f"{cut(str(err.get('Message') or exc), 300)}") from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise Unauthenticated(f"no usable AWS credentials for {bucket.url} ({exc}): set "
                              "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE") from exc
    except (EndpointConnectionError, ConnectionClosedError) as exc:
        raise Unavailable(f"cannot reach the object store at {_endpoint(bucket)} for {bucket.url}: {exc} "
                          f"(set {ENV_S3_ENDPOINT} for an S3-compatible server)") from exc
    except BotoCoreError as exc:
        raise Unavailable(f"the object store at {_endpoint(bucket)} failed for {where}: "
                          f"{cut(str(exc), 300)}") \
            from exc


def _endpoint(bucket: Bucket) -> str:
    return bucket.endpoint or "the AWS default endpoint"
