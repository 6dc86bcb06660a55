"""RemoteService: the facade's methods, answered by a running ``reuse serve`` over gRPC.

The CLI gets a :class:`reuse.service.Service` or a :class:`RemoteService` from ``get_service`` and calls
the same methods either way; both return the same types (ModelInfo, ModelDescription, JobRecord, ...).
Methods not offered remotely raise FailedPrecondition naming the command.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reuse.client import ReuseClient
from reuse.describe import LayerInfo, ModelDescription
from reuse.errors import FailedPrecondition
from reuse.jobs import JobEvent, JobRecord
from reuse.select import Selection
from reuse.serving.engine import InferResult
from reuse.serving.signature import ModelSignature, TensorSpec
from reuse.store import ModelInfo
from reuse.uploads import DatasetInfo


def _info(d: Mapping[str, Any]) -> ModelInfo:
    fields = {k: d[k] for k in ModelInfo.__dataclass_fields__ if k in d}
    fields["path"] = Path(str(fields.get("path", "")))
    return ModelInfo(**fields)


def _record(d: Mapping[str, Any]) -> JobRecord:
    return JobRecord.from_dict(dict(d))


class RemoteService:
    """The same facade as :class:`reuse.service.Service`, over a server at ``target`` (``HOST:PORT``)."""

    def __init__(self, target: str, *, token: str | None = None, tls_ca: str | os.PathLike[str] | None = None,
                 timeout: float | None = 60.0) -> None:
        self.target = target
        self.client = ReuseClient(target, token=token, tls_ca=tls_ca, timeout=timeout)

    def close(self) -> list[str]:
        self.client.close()
        return []

    # -- store -------------------------------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]:
        return [_info(d) for d in self.client.list_models()]

    def model_info(self, ref: str) -> ModelInfo:
        return self.describe_model(ref).info

    def register_model(self, model: Any, name: str, **meta: Any) -> ModelInfo:
        """Save ``model`` to a temporary .h5 file and upload it (description and tags travel along)."""
        import keras

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.h5"
            keras.saving.save_model(model, str(path))
            return self.upload_model(_read_chunks(path), name, description=meta.get("description", ""),
                                     tags=meta.get("tags"))

    def describe_model(self, ref: str, *, scope: str = "", match: str = "full") -> ModelDescription:
        d = self.client.describe_model(ref, scope=scope, match=match)
        layers = tuple(LayerInfo(name=x.name, class_name=x.class_name, output_shape=json.loads(x.output_shape_json),
                                 params=x.params, trainable=x.trainable) for x in d.layers)
        selection = (Selection(d.scope, d.match, tuple(d.matched), tuple(d.unmatched)) if d.scope else None)
        return ModelDescription(info=_info(json.loads(d.model.metadata_json)), versions=tuple(d.versions),
                                layers=layers, selection=selection)

    # -- serving and jobs --------------------------------------------------------------------------
    def model_signature(self, ref: str) -> ModelSignature:
        name, _, version = ref.partition(":")
        meta = self.client.model_metadata(name, version)

        def spec(t: Any) -> TensorSpec:
            from reuse.grpc.convert import NP_OF

            return TensorSpec(t.name, NP_OF[t.datatype].name, tuple(None if d < 0 else int(d) for d in t.shape))

        served = int(version) if version else max(int(v) for v in meta.versions)
        return ModelSignature(meta.name, served, tuple(spec(t) for t in meta.inputs),
                              tuple(spec(t) for t in meta.outputs))

    def infer(self, ref: str, inputs: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> InferResult:
        sig = self.model_signature(ref)
        name, _, version = ref.partition(":")
        if not isinstance(inputs, Mapping):
            arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            inputs = {s.name: a for s, a in zip(sig.inputs, arrays, strict=False)}
        out = self.client.infer(name, inputs, version=version)
        return InferResult(sig, [out[s.name] for s in sig.outputs])

    def upload_model(self, chunks: Iterable[bytes], name: str, *, format: str = "h5", description: str = "",
                     tags: Mapping[str, str] | None = None, unsafe: bool = False) -> ModelInfo:
        with _spooled(chunks) as path:
            return _info(self.client.upload_model(path, name, description=description, tags=tags, format=format,
                                                  unsafe=unsafe))

    def upload_dataset(self, chunks: Iterable[bytes], name: str, *, format: str, description: str = "",
                       tags: Mapping[str, str] | None = None, overwrite: bool = False) -> DatasetInfo:
        with _spooled(chunks) as path:
            d = self.client.upload_dataset(path, name, description=description, tags=tags, format=format,
                                           overwrite=overwrite)
        return DatasetInfo(**{k: d.get(k, "" if k != "size_bytes" else 0) for k in DatasetInfo.__dataclass_fields__
                              if k not in ("tags", "path")}, tags=d.get("tags", {}))

    def list_datasets(self) -> list[DatasetInfo]:
        return [DatasetInfo(**{k: d.get(k, 0 if k == "size_bytes" else "") for k in DatasetInfo.__dataclass_fields__
                               if k not in ("tags", "path")}, tags=d.get("tags", {}))
                for d in self.client.list_datasets()]

    def delete_version(self, ref: str) -> ModelInfo:
        info = self.model_info(ref)
        self.client.delete_version(ref)
        return info

    def start_job(self, kind: str, params: dict[str, Any]) -> JobRecord:
        return _record(self.client.start_job(kind, params))

    def build_job(self, params: dict[str, Any], *, wait: bool = True, timeout: float | None = None) -> JobRecord:
        return _record(self.client.build(**params, wait=wait))

    def start_train(self, params: dict[str, Any]) -> JobRecord:
        return _record(self.client.start_train(**params))

    def start_finetune(self, params: dict[str, Any]) -> JobRecord:
        params = dict(params)
        return _record(self.client.start_finetune(params.pop("unfreeze", ""), **params))

    def start_advise(self, params: dict[str, Any]) -> JobRecord:
        params = dict(params)
        return _record(self.client.start_advise(params.pop("model", ""), params.pop("data", ""), **params))

    def list_jobs(self, *, state: str = "", kind: str = "") -> list[JobRecord]:
        return [_record(j) for j in self.client.list_jobs(state=state, kind=kind)]

    def get_job(self, job_id: str) -> JobRecord:
        return _record(self.client.get_job(job_id))

    def cancel_job(self, job_id: str) -> JobRecord:
        return _record(self.client.cancel_job(job_id))

    def watch_job(self, job_id: str, *, after_seq: int = 0) -> Iterator[JobEvent]:
        for e in self.client.watch_job(job_id, after_seq=after_seq):
            yield JobEvent.from_dict(e)

    def serving_stats(self) -> dict[str, Any]:
        return self.client.stats()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise FailedPrecondition(f"{name.replace('_', ' ')} is not available with --server yet; "
                                 "run it against a local --store")


def _read_chunks(path: Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(size):
            yield block


class _spooled:
    """Chunks written to a temporary file (the client streams from a file)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._dir = tempfile.TemporaryDirectory()

    def __enter__(self) -> Path:
        path = Path(self._dir.name) / "upload"
        with open(path, "wb") as f:
            for c in self._chunks:
                f.write(c)
        return path

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()
