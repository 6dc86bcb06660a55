"""Which forward pass serves a version: ONNX Runtime or the compiled Keras model, and why.

``auto`` (the default) serves a version on ONNX Runtime when the onnx extra is installed, the model
exports to ONNX, the file loads in ONNX Runtime and its outputs match Keras on a probe batch within
1e-5; otherwise on the compiled Keras forward pass, with the reason. ``onnx`` insists (a version that
cannot run there is refused with the reason); ``keras`` never tries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reuse.errors import FailedPrecondition, InvalidInput, ReuseError
from reuse.export import onnx_file
from reuse.graph.signature import ModelSignature
from reuse.serving.onnx_runtime import OnnxCache, OnnxForward
from reuse.text import cut

log = logging.getLogger(__name__)
RUNTIMES = ("auto", "onnx", "keras")
Forward = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class RuntimeChoice:
    """The runtime serving one version (``onnx`` or ``keras``), why, and the ONNX file if any."""

    runtime: str
    reason: str
    onnx_file: str = ""


def check_mode(mode: str) -> str:
    """Validate a ``--runtime`` value; for ``onnx``, also that the extra is installed.

    Raises:
        InvalidInput: not one of RUNTIMES. FailedPrecondition: ``onnx`` without the onnx extra.
    """
    if mode not in RUNTIMES:
        raise InvalidInput(f"runtime {cut(str(mode), 40)!r}: expected one of {', '.join(RUNTIMES)}")
    if mode == "onnx":
        onnx_file.require_packages("--runtime onnx")
    return mode


def describe_mode(mode: str) -> str:
    """One line for the server's start-up message."""
    if mode == "keras":
        return "runtime keras (forced)"
    missing = onnx_file.missing_packages()
    if missing:
        return f"runtime keras: {', '.join(missing)} not installed ({onnx_file.install_hint()})"
    if mode == "onnx":
        return "runtime onnx (forced)"
    return "runtime auto: ONNX Runtime for each version that exports and matches Keras, else Keras"


def log_choices_to_stderr() -> None:
    """Show each version's runtime choice on stderr (what ``reuse serve`` prints as models load)."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _onnx_forward(model: Any, sig: ModelSignature, cache: OnnxCache, checksum: str,
                  threads: int) -> tuple[OnnxForward | None, str, Path | None]:
    """An ONNX Runtime forward for the version, or (None, why not, file)."""
    t0 = time.perf_counter()
    path, built = cache.get(sig.name, sig.version, checksum, onnx_file.exporter_versions(),
                            lambda tmp: onnx_file.write_onnx(model, sig, tmp))
    session = onnx_file.open_session(path, threads)
    _, problem = onnx_file.check_session(session, model, sig)
    log.debug("%s: ONNX file %s %s in %.2f s", sig.ref, path, "built" if built else "reused",
              time.perf_counter() - t0)
    return (None, problem, path) if problem else (OnnxForward(session, model), "", path)


def choose(model: Any, sig: ModelSignature, *, mode: str, cache: OnnxCache | None, checksum: str,
           threads: int = 1, keras_forward: Callable[[Any], Forward]) -> tuple[Forward, RuntimeChoice]:
    """The forward pass for one loaded version and the choice made (also logged at INFO).

    Raises:
        FailedPrecondition: ``mode`` is ``onnx`` and the version cannot run on ONNX Runtime.
    """
    reason, path = "", None
    if mode == "keras":
        reason = "forced by --runtime keras"
    elif missing := onnx_file.missing_packages():
        reason = f"{', '.join(missing)} not installed ({onnx_file.install_hint()})"
    elif cache is None:
        reason = "no store folder for the ONNX file"
    else:
        try:
            forward, reason, path = _onnx_forward(model, sig, cache, checksum, threads)
        # The exporter and ONNX Runtime raise many types (ValueError, KeyError, NotImplementedError, their
        # own); each means "not on ONNX Runtime", and the message becomes the reason shown to the user.
        except Exception as exc:  # noqa: BLE001
            said = str(exc) if isinstance(exc, ReuseError) else f"{type(exc).__name__}: {exc}"
            forward, reason = None, f"ONNX export failed: {cut(said, 300)}"
        if forward is not None:
            choice = RuntimeChoice("onnx",
                                   f"ONNX export matches Keras within {onnx_file.TOLERANCE:g} on a probe "
                                           "batch", str(path))
            log.info("%s: serving on ONNX Runtime (%s)", sig.ref, choice.reason)
            return forward, choice
    reason = " ".join(reason.split())  # one line: exporter messages carry newlines
    if mode == "onnx":
        raise FailedPrecondition(f"model {sig.ref} cannot run on ONNX Runtime (--runtime onnx): {reason}")
    log.info("%s: serving on Keras (%s)", sig.ref, reason)
    return keras_forward(model), RuntimeChoice("keras", reason, str(path) if path else "")
