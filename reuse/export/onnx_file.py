"""A stored Keras model as an ONNX file, checked against Keras before anyone relies on it.

Keras 3 writes the file (``model.export(path, format="onnx")``; it converts through the backend's
converter, ``tf2onnx`` on TensorFlow and ``jax2onnx`` on JAX: :attr:`reuse.backend.Backend.ONNX_CONVERTER`).
We then name the graph's outputs after the model's output layers, so that a KServe v2 client asks an ONNX
engine for the same tensor names as ``reuse serve`` (Keras leaves ``Identity:0``...). Needs onnx,
onnxruntime and the converter (core dependencies on TensorFlow; jax2onnx is not installed by any extra:
on JAX, export and the ONNX runtime say so, and serving runs Keras).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from reuse.config import assumed_missing
from reuse.errors import FailedPrecondition
from reuse.graph.signature import ModelSignature

log = logging.getLogger(__name__)
TOLERANCE = 1e-5  # most |onnx - keras| (absolute, and relative to |keras|) accepted on the probe batch
PROBE_ROWS = 5


def converter() -> str:
    """The package Keras' ONNX export converts through on the active backend."""
    from reuse.backend import active

    return active().ONNX_CONVERTER


def missing_packages() -> list[str]:
    """The packages ONNX export and serving need that are not installed (empty: they work)."""
    return [p for p in ("onnx", "onnxruntime", converter()) if not _installed(p)]


def install_hint() -> str:
    return f"pip install onnx onnxruntime {converter()}"


def _installed(package: str) -> bool:
    if assumed_missing(package):
        return False
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken install, or a finder that says no
        return False


def require_packages(purpose: str) -> None:
    """Raises FailedPrecondition naming the missing packages and the extra that brings them."""
    missing = missing_packages()
    if missing:
        raise FailedPrecondition(f"{purpose} needs {', '.join(missing)} (not installed): "
                                 f"{install_hint()}")


def exporter_versions() -> str:
    """The versions that shape an ONNX file; part of the cache key, so an upgrade rebuilds the files."""
    from importlib.metadata import version

    import keras

    return " ".join(f"{p}={version(p)}" for p in ("onnx", converter())) + f" keras={keras.__version__}"


def probe_inputs(sig: ModelSignature, rows: int = PROBE_ROWS, seed: int = 0) -> list[np.ndarray]:
    """A fixed pseudo-random batch for the model's inputs (free non-batch dimensions get size 4)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in sig.inputs:
        shape = (rows, *(4 if d is None else d for d in spec.row_shape))
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
        else:  # integer inputs are usually indices (Embedding): keep them small and valid
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
    return arrays


def keras_outputs(model: Any, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``model(x, training=False)`` as numpy arrays, one per output."""
    import keras

    out = model(list(arrays) if len(arrays) > 1 else arrays[0], training=False)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outs]


def difference(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> tuple[float, str]:
    """The largest gap between two output lists, and what is wrong when it is over TOLERANCE ("" if none)."""
    if len(got) != len(want):
        return float("inf"), f"{len(got)} outputs instead of {len(want)}"
    worst = 0.0
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g.shape != w.shape or g.dtype != w.dtype:
            return float("inf"), f"output {i} is {g.dtype}{list(g.shape)} instead of {w.dtype}{list(w.shape)}"
        gap = np.abs(g.astype(np.float64) - w.astype(np.float64))
        worst = max(worst, float(gap.max(initial=0.0)))
        if not np.all(gap <= TOLERANCE * (1.0 + np.abs(w.astype(np.float64)))):
            return worst, f"outputs differ from Keras by up to {worst:.3g} (more than {TOLERANCE:g})"
    return worst, ""


@contextmanager
def _quiet_converter():
    # The converter (tf2onnx) logs every conversion step, and ops it cannot convert at ERROR; we report
    # those ourselves. Importing it creates its loggers, which it sets to INFO itself.
    package = converter()
    importlib.import_module(package)
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == package]
    loggers = [logging.getLogger(n) for n in (package, "absl", *names)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            # Keras' tf2onnx shim probes numpy for a removed alias, which numpy 2 answers with a warning.
            warnings.filterwarnings("ignore", message="In the future `np.object`", category=FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _rename_tensors(path: Path, sig: ModelSignature) -> None:
    """Name the graph's inputs and outputs as the signature does (rewrites ``path`` in place).

    Raises:
        FailedPrecondition: the graph holds ops that ONNX does not define (the converter passes on
        TensorFlow ops it has no translation for, and no ONNX engine can run them).
    """
    import onnx

    proto = onnx.load(str(path))
    graph = proto.graph
    unknown = sorted({n.op_type for n in graph.node if not onnx.defs.has(n.op_type, n.domain)})
    if unknown:
        raise FailedPrecondition(f"the model uses ops that have no ONNX equivalent: {', '.join(unknown)}")
    renames = {}
    for values, specs in ((graph.input, sig.inputs), (graph.output, sig.outputs)):
        if len(values) != len(specs):
            raise FailedPrecondition(f"the ONNX graph has {len(values)} inputs/outputs where the model has "
                                     f"{len(specs)}")
        for value, spec in zip(values, specs, strict=True):
            if value.name != spec.name:
                renames[value.name] = spec.name
                value.name = spec.name
    if renames:
        for node in graph.node:
            node.input[:] = [renames.get(n, n) for n in node.input]
            node.output[:] = [renames.get(n, n) for n in node.output]
    onnx.save(proto, str(path))


def write_onnx(model: Any, sig: ModelSignature, path: Path) -> None:
    """Export ``model`` to ``path`` (the caller makes that write atomic), tensors named as in ``sig``.

    The model is called once on a probe batch first: Keras refuses to export a model that was loaded
    from a file and never called.

    Raises:
        FailedPrecondition: the onnx extra is missing. Whatever Keras' exporter raises for a model it
        cannot convert.
    """
    require_packages("ONNX export")
    keras_outputs(model, probe_inputs(sig, rows=1))
    with _quiet_converter():
        model.export(str(path), format="onnx", verbose=False)
    _rename_tensors(path, sig)


def open_session(path: Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session on ``path`` with ``threads`` intra-op threads, run sequentially."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def check_session(session: Any, model: Any, sig: ModelSignature) -> tuple[float, str]:
    """Run the session and Keras on the probe batch and on one row.

    Returns:
        (the largest difference seen, "" when within TOLERANCE, else what differs).
    """
    names = [i.name for i in session.get_inputs()]
    if names != [s.name for s in sig.inputs]:
        return float("inf"), f"the ONNX graph takes inputs {names}, the model {[s.name for s in sig.inputs]}"
    worst = 0.0
    for rows in (PROBE_ROWS, 1):
        xs = probe_inputs(sig, rows=rows)
        got = session.run(None, dict(zip(names, xs, strict=True)))
        gap, problem = difference([np.asarray(g) for g in got], keras_outputs(model, xs))
        worst = max(worst, gap)
        if problem:
            return worst, f"{problem} on a {rows}-row probe batch"
    return worst, ""


def checked_onnx(model: Any, sig: ModelSignature, path: Path) -> float:
    """Export to ``path`` and check the file in ONNX Runtime against Keras; returns the largest difference.

    Raises:
        FailedPrecondition: the extra is missing, or the file does not run or does not match Keras.
    """
    write_onnx(model, sig, path)
    worst, problem = check_session(open_session(path), model, sig)
    if problem:
        raise FailedPrecondition(f"the ONNX export of {sig.ref} does not match Keras: {problem}")
    return worst
