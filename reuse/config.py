"""Settings from ``REUSE_*`` environment variables; command-line flags override them."""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from reuse.errors import InvalidInput
from reuse.text import echo

DEFAULT_STORE = Path("models")
ENV_STORE = "REUSE_STORE"
ENV_TOKEN = "REUSE_TOKEN"
ENV_SERVER = "REUSE_SERVER"


# ``SCHEME://`` at the start of a store location: a URL, never a folder name (``a:b`` stays a folder).
_URL_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_RE = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
URL_SCHEMES: tuple[str, ...] = ("s3",)  # the object stores a ModelStore has a backend for
STORE_KINDS = "a folder path" + "".join(f", or {s}://BUCKET/PREFIX" for s in URL_SCHEMES)
ENV_STATE = "REUSE_STATE"
ENV_S3_ENDPOINT = "REUSE_S3_ENDPOINT"
ENV_S3_CACHE_MB = "REUSE_S3_CACHE_MB"
ENV_S3_TIMEOUT = "REUSE_S3_TIMEOUT"
ENV_TRUSTED_MODULES = "REUSE_TRUSTED_MODULES"
ENV_ASSUME_MISSING = "REUSE_ASSUME_MISSING"


def env_trusted_modules() -> tuple[str, ...]:
    """The Python modules named in ``$REUSE_TRUSTED_MODULES`` (separated by commas or spaces), in order."""
    raw = os.environ.get(ENV_TRUSTED_MODULES, "")
    return tuple(dict.fromkeys(m for m in re.split(r"[,\s]+", raw) if m))


def assumed_missing(package: str) -> bool:
    """Whether ``$REUSE_ASSUME_MISSING`` (names separated by commas or spaces) names ``package``: an optional
    package (onnx, onnxruntime, tf2onnx, boto3, ray) reuse then treats as not installed, to show what an
    install without its extra does."""
    return package in re.split(r"[,\s]+", os.environ.get(ENV_ASSUME_MISSING, ""))


def import_optional(module: str) -> ModuleType:
    """``import module`` for an optional package, which may be absent (or named in ``$REUSE_ASSUME_MISSING``).

    Raises:
        ModuleNotFoundError: it is not installed, or assumed not to be.
    """
    if assumed_missing(module.partition(".")[0]):
        raise ModuleNotFoundError(f"No module named {module!r} ({ENV_ASSUME_MISSING} names it)", name=module)
    return importlib.import_module(module)


def env_number(name: str, default: float, unit: str, *, zero_ok: bool) -> float:
    """The finite number in ``$name`` (``default`` when unset), at least 0 (above 0 unless ``zero_ok``).

    Raises:
        InvalidInput: not a number, not finite (``nan``, ``inf``) or out of range; the message names ``name``.
    """
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = float("nan")
    if not (value >= 0 if zero_ok else value > 0) or value == float("inf"):
        raise InvalidInput(f"{name} must be a number of {unit}, {'0 or more' if zero_ok else 'above 0'}; "
                           f"received {echo(raw)}")
    return value


def store_root(explicit: str | os.PathLike[str] | None = None) -> Path | str:
    """The store location: the explicit value, else ``$REUSE_STORE``, else ``./models``.

    Returns a folder as a Path, an object-store URL as its normalised text (``s3://bucket/prefix``).

    Raises:
        InvalidInput: a ``SCHEME://`` URL whose scheme is not supported, or a malformed s3 URL (checked
            before anything is written, so ``gs://b/p`` never becomes a folder named ``gs:``).
    """
    value = os.fspath(explicit) if explicit else os.environ.get(ENV_STORE) or ""
    return store_location(value) if value else DEFAULT_STORE


def store_location(value: str | os.PathLike[str]) -> Path | str:
    """A folder path as a Path, ``s3://BUCKET[/PREFIX]`` as its normalised text; other URLs refused."""
    if isinstance(value, Path):
        return value
    text = os.fspath(value)
    m = _URL_RE.match(text)
    if not m:
        return Path(text)
    if m.group(1) not in URL_SCHEMES:
        raise InvalidInput(f"unsupported store URL scheme {m.group(1)!r} in {echo(text)}; "
                           f"supported: {STORE_KINDS}")
    bucket, _, prefix = text[m.end():].partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise InvalidInput(f"invalid S3 bucket name in {echo(text)}: expected 3-63 characters of a-z, 0-9, "
                           "'.' and '-' (s3://BUCKET/PREFIX)")
    if prefix and (not _PREFIX_RE.fullmatch(prefix) or any(p in (".", "..") for p in prefix.split("/"))):
        raise InvalidInput(f"invalid S3 prefix in {echo(text)}: expected path segments of A-Z, a-z, 0-9, "
                           "'.', '_' and '-', none of them '.' or '..'")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8500
    max_message_bytes: int = 64 * 1024 * 1024
    max_batch_size: int = 64
    max_batch_delay_ms: float = 1.0
    workers: int = 2
    cache_mb: int = 1024
    max_upload_mb: int = 2048
