"""A Python client for a ``reuse serve`` server: v2 inference with numpy, and the management API.

    from reuse.client import ReuseClient          # or reuse.remote
    with ReuseClient("127.0.0.1:8500", token="...") as c:
        probs = c.infer("digits", x)["output"]      # x: a numpy batch
        probs = c.infer("pets", ["cat.png", "dog.jpg"])["output"]   # images: paths or bytes
        top = c.infer("pets", [png_bytes], classification=3)["output"]  # [[b"0.91:2:cat", ...]]
        job = c.start_job("verify", {})             # a reuse.jobs.JobRecord
        for event in c.watch_job(job.id):           # reuse.jobs.JobEvent
            print(event.state, event.message)

Answers are the domain types the local facade returns (ModelInfo, ModelDescription, DatasetInfo,
JobRecord, JobEvent, ModelSignature), converted by the same modules the servicers use
(:mod:`reuse.grpc.convert`, :mod:`reuse.grpc.convert_mgmt`). Failed calls raise the matching
:mod:`reuse.errors` exception (NotFound, InvalidInput, ...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from reuse.errors import InvalidInput, NotFound
from reuse.graph.signature import ModelSignature
from reuse.grpc import convert
from reuse.grpc import convert_mgmt as cm
from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc._proto import inference_pb2_grpc as igrpc
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc._proto import reuse_v1_pb2_grpc as rgrpc
from reuse.grpc.status import error_of
from reuse.jobs import JobEvent, JobRecord
from reuse.store import ModelInfo
from reuse.store.describe import ModelDescription
from reuse.store.uploads import DatasetInfo

CHUNK_BYTES = 1024 * 1024
MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024  # the most of one image file read to send (the server caps lower)


def _images(inputs: Any) -> list[bytes] | None:
    """Encoded images from one path or bytes, or a list of them; None for anything else (arrays)."""
    one = isinstance(inputs, (bytes, bytearray, str, os.PathLike))
    items = [inputs] if one else inputs
    if not isinstance(items, (list, tuple)) or not items or not all(
            isinstance(x, (bytes, bytearray, str, os.PathLike)) for x in items):
        return None
    out = []
    for x in items:
        if isinstance(x, (bytes, bytearray)):
            out.append(bytes(x))
            continue
        path = Path(x)
        if not path.is_file():
            raise NotFound(f"{path}: no such image file")
        if path.stat().st_size > MAX_IMAGE_FILE_BYTES:
            raise InvalidInput(f"{path}: {path.stat().st_size} bytes, more than an image may have "
                               f"({MAX_IMAGE_FILE_BYTES})")
        out.append(path.read_bytes())
    return out


class ReuseClient:
    """A connection to one server.

    Args:
        target: ``HOST:PORT``.
        token: bearer token (default: ``$REUSE_TOKEN``).
        tls_ca: CA certificate file to verify a TLS server; ``tls=True`` uses the system roots.
        timeout: seconds per call (None: no deadline).
    """

    def __init__(self, target: str, *, token: str | None = None, tls_ca: str | os.PathLike[str] | None = None,
                 tls: bool = False, timeout: float | None = 60.0,
                 max_message_bytes: int = 64 * 1024 * 1024) -> None:
        token = token if token is not None else os.environ.get("REUSE_TOKEN") or None
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if tls_ca or tls:
            roots = Path(tls_ca).read_bytes() if tls_ca else None
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(roots), options)
        else:
            self.channel = grpc.insecure_channel(target, options)
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.inference = igrpc.GRPCInferenceServiceStub(self.channel)
        self.api = rgrpc.ReuseServiceStub(self.channel)
        self._meta_cache: dict[str, ipb.ModelMetadataResponse] = {}

    def _call(self, method: Any, request: Any, **kw: Any) -> Any:
        try:
            return method(request, metadata=self._metadata, timeout=kw.pop("timeout", self.timeout), **kw)
        except grpc.RpcError as exc:
            raise error_of(exc.code(), exc.details()) from None

    def _stream(self, method: Any, request: Any) -> Iterator[Any]:
        try:
            yield from method(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_of(exc.code(), exc.details()) from None

    # -- inference (KServe v2) -----------------------------------------------------------------
    def server_live(self) -> bool:
        return self._call(self.inference.ServerLive, ipb.ServerLiveRequest()).live

    def model_metadata(self, model: str, version: str = "") -> ipb.ModelMetadataResponse:
        return self._call(self.inference.ModelMetadata, ipb.ModelMetadataRequest(name=model, version=version))

    def _cached_metadata(self, model: str, version: str) -> ipb.ModelMetadataResponse:
        key = f"{model}:{version}"
        return self._meta_cache.get(key) or self._meta_cache.setdefault(
            key, self.model_metadata(model, version)
        )

    def infer(self, model: str, inputs: Any, *, version: str = "", raw: bool = True,
              outputs: Sequence[str] = (), classification: int = 0) -> dict[str, np.ndarray]:
        """Run the model on numpy inputs (one array, a list in input order, or a dict by name), or on images
        for an image model: one image or a list of them, each a file path or the encoded bytes (PNG, JPEG,
        BMP, GIF), sent as a KServe BYTES tensor that the server decodes and resizes.

        Returns the outputs by name. ``raw=False`` sends typed contents instead of raw bytes.
        ``classification`` = k: each output (``outputs``, default all) comes back as its top-k classes, a
        ``[n, k]`` object array of ``b"score:index:label"``
        (:func:`reuse.grpc.convert_images.parse_classification` reads them).
        """
        images = _images(inputs)
        if images is not None or not isinstance(inputs, Mapping):
            meta = self._cached_metadata(model, version)
            if images is not None:
                inputs = {meta.inputs[0].name: images} if meta.inputs else {}
            else:
                arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
                inputs = {t.name: a for t, a in zip(meta.inputs, arrays, strict=False)}
            if classification and not outputs:
                outputs = [t.name for t in meta.outputs]
        elif classification and not outputs:
            outputs = [t.name for t in self._cached_metadata(model, version).outputs]
        req = convert.infer_request(model, version, inputs, raw=raw, outputs=outputs,
                                    classification=classification)
        return convert.decode_outputs(self._call(self.inference.ModelInfer, req))

    def signature(self, model: str, version: str = "") -> ModelSignature:
        """The served signature of ``model`` (``version`` empty: the latest), from ModelMetadata."""
        return convert.signature_of(self.model_metadata(model, version), version)

    # -- management (reuse.v1) -----------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]:
        return [cm.model_of(m) for m in self._call(self.api.ListModels, pb.ListModelsRequest()).models]

    def describe_model(self, ref: str, *, scope: str | None = None, match: str = "full") -> ModelDescription:
        return cm.description_of(self._call(self.api.DescribeModel, cm.describe_request(ref, scope, match)))

    def _upload(self, method: Any, path: str | os.PathLike[str], header: pb.UploadHeader) -> Any:
        def chunks() -> Iterator[pb.UploadChunk]:
            yield pb.UploadChunk(header=header)
            with open(path, "rb") as f:
                while block := f.read(CHUNK_BYTES):
                    yield pb.UploadChunk(data=block)

        return self._call(method, chunks())

    def upload_model(self, path: str | os.PathLike[str], name: str, *, description: str = "",
                     tags: Mapping[str, str] | None = None, format: str = "",
                     unsafe: bool = False) -> ModelInfo:
        fmt = format or ("keras" if str(path).endswith(".keras") else "h5")
        header = pb.UploadHeader(name=name, description=description, tags=dict(tags or {}),
                                 format=fmt, unsafe=unsafe)
        return cm.model_of(self._upload(self.api.UploadModel, path, header))

    def upload_dataset(self, path: str | os.PathLike[str], name: str, *, description: str = "",
                       tags: Mapping[str, str] | None = None, format: str = "", overwrite: bool = False
                       ) -> DatasetInfo:
        fmt = format or Path(path).suffix.lstrip(".")
        header = pb.UploadHeader(name=name, description=description, tags=dict(tags or {}), format=fmt,
                                 overwrite=overwrite)
        return cm.dataset_of(self._upload(self.api.UploadDataset, path, header))

    def list_datasets(self) -> list[DatasetInfo]:
        return [cm.dataset_of(d) for d in self._call(self.api.ListDatasets,
                                                     pb.ListDatasetsRequest()).datasets]

    def delete_version(self, ref: str) -> str:
        return self._call(self.api.DeleteVersion, pb.DeleteVersionRequest(ref=ref)).deleted

    def start_job(self, kind: str, params: Mapping[str, Any]) -> JobRecord:
        req = pb.StartJobRequest(kind=kind, params_json=json.dumps(dict(params)))
        return cm.job_of(self._call(self.api.StartJob, req))

    def build(self, **params: Any) -> JobRecord:
        """Fields of ``BuildRequest`` (name, base, reuse, head, classes, ...); waits unless wait=False."""
        return cm.job_of(self._call(self.api.Build, pb.BuildRequest(**params), timeout=None))

    def start_train(self, **params: Any) -> JobRecord:
        """Fields of ``TrainRequest`` as keywords (model, data, epochs, data_parallel, ...)."""
        return cm.job_of(self._call(self.api.StartTrain, pb.TrainRequest(**params)))

    def start_finetune(self, unfreeze: str, *, match: str = "", **train: Any) -> JobRecord:
        """Fields of ``TrainRequest`` as keywords, plus the scope to unfreeze and its match mode."""
        req = pb.FinetuneRequest(unfreeze=unfreeze, match=match, train=pb.TrainRequest(**train))
        return cm.job_of(self._call(self.api.StartFinetune, req))

    def start_advise(self, model: str, data: str, **options: Any) -> JobRecord:
        req = pb.AdviseRequest(model=model, data=data, options_json=json.dumps(options))
        return cm.job_of(self._call(self.api.StartAdvise, req))

    def list_jobs(self, *, state: str = "", kind: str = "") -> list[JobRecord]:
        jobs = self._call(self.api.ListJobs, pb.ListJobsRequest(state=state, kind=kind)).jobs
        return [cm.job_of(j) for j in jobs]

    def get_job(self, job_id: str) -> JobRecord:
        return cm.job_of(self._call(self.api.GetJob, pb.GetJobRequest(id=job_id)))

    def cancel_job(self, job_id: str) -> JobRecord:
        return cm.job_of(self._call(self.api.CancelJob, pb.CancelJobRequest(id=job_id)))

    def watch_job(self, job_id: str, *, after_seq: int = 0) -> Iterator[JobEvent]:
        """Yield the job's events until it finishes."""
        for e in self._stream(self.api.WatchJob, pb.WatchJobRequest(id=job_id, after_seq=after_seq)):
            yield cm.event_of(e)

    def stats(self) -> dict[str, Any]:
        """As ``Service.serving_stats()``: cache bytes, and per served version requests, rows, batches."""
        return cm.stats_of(self._call(self.api.GetServerStats, pb.GetServerStatsRequest()))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ReuseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

