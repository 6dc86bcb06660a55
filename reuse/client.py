"""A Python client for a ``reuse serve`` server: v2 inference with numpy, and the management API.

    from reuse.client import ReuseClient
    with ReuseClient("127.0.0.1:8500", token="...") as c:
        probs = c.infer("digits", x)["output"]      # x: a numpy batch
        job = c.start_job("verify", {})
        for event in c.watch_job(job["id"]):
            print(event["state"], event["message"])

Failed calls raise the matching :mod:`reuse.errors` exception (NotFound, InvalidInput, ...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from reuse.grpc._proto import inference_pb2 as ipb
from reuse.grpc._proto import inference_pb2_grpc as igrpc
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.grpc._proto import reuse_v1_pb2_grpc as rgrpc
from reuse.grpc.convert import FIELD_OF, NP_OF, v2_datatype
from reuse.grpc.convert_mgmt import params_of
from reuse.grpc.status import error_of

CHUNK_BYTES = 1024 * 1024


def _job(j: pb.Job) -> dict[str, Any]:
    return {"id": j.id, "kind": j.kind, "state": j.state, "params": json.loads(j.params_json or "{}"),
            "created": j.created, "started": j.started, "finished": j.finished, "model": j.model,
            "result": json.loads(j.result_json or "{}"), "error": j.error,
            "last_event": _event(j.last_event) if j.HasField("last_event") else None}


def _event(e: pb.JobEvent) -> dict[str, Any]:
    return {"job_id": e.job_id, "seq": e.seq, "state": e.state, "epoch": e.epoch, "epochs": e.epochs,
            "losses": dict(e.losses), "metrics": dict(e.metrics), "eta_s": e.eta_seconds, "message": e.message,
            "model": e.model, "error": e.error, "time": e.time}


def _model(m: pb.Model) -> dict[str, Any]:
    return json.loads(m.metadata_json) if m.metadata_json else {"name": m.name, "version": m.version}


class ReuseClient:
    """A connection to one server.

    Args:
        target: ``HOST:PORT``.
        token: bearer token (default: ``$REUSE_TOKEN``).
        tls_ca: CA certificate file to verify a TLS server; ``tls=True`` uses the system roots.
        timeout: seconds per call (None: no deadline).
    """

    def __init__(self, target: str, *, token: str | None = None, tls_ca: str | os.PathLike[str] | None = None,
                 tls: bool = False, timeout: float | None = 60.0, max_message_bytes: int = 64 * 1024 * 1024) -> None:
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

    def infer(self, model: str, inputs: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray], *,
              version: str = "", raw: bool = True, outputs: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Run the model on numpy inputs (one array, a list in input order, or a dict by name).

        Returns the outputs by name. ``raw=False`` sends typed contents instead of raw bytes.
        """
        if not isinstance(inputs, Mapping):
            key = f"{model}:{version}"
            meta = self._meta_cache.get(key) or self._meta_cache.setdefault(key, self.model_metadata(model, version))
            arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            inputs = {t.name: a for t, a in zip(meta.inputs, arrays, strict=False)}
        req = ipb.ModelInferRequest(model_name=model, model_version=version,
                                    outputs=[{"name": n} for n in outputs])
        for name, arr in inputs.items():
            arr = np.asarray(arr)
            dt = v2_datatype(arr.dtype)
            tensor = req.inputs.add(name=name, datatype=dt, shape=arr.shape)
            if raw:
                req.raw_input_contents.append(np.ascontiguousarray(arr, NP_OF[dt]).tobytes())
            else:
                getattr(tensor.contents, FIELD_OF[dt]).extend(arr.ravel().tolist())
        resp = self._call(self.inference.ModelInfer, req)
        return decode_outputs(resp)

    # -- management (reuse.v1) -----------------------------------------------------------------
    def list_models(self) -> list[dict[str, Any]]:
        return [_model(m) for m in self._call(self.api.ListModels, pb.ListModelsRequest()).models]

    def describe_model(self, ref: str, *, scope: str = "", match: str = "full") -> pb.ModelDescription:
        return self._call(self.api.DescribeModel, pb.DescribeModelRequest(ref=ref, scope=scope, match=match))

    def _upload(self, method: Any, path: str | os.PathLike[str], header: pb.UploadHeader) -> Any:
        def chunks() -> Iterator[pb.UploadChunk]:
            yield pb.UploadChunk(header=header)
            with open(path, "rb") as f:
                while block := f.read(CHUNK_BYTES):
                    yield pb.UploadChunk(data=block)

        return self._call(method, chunks())

    def upload_model(self, path: str | os.PathLike[str], name: str, *, description: str = "",
                     tags: Mapping[str, str] | None = None, format: str = "", unsafe: bool = False) -> dict[str, Any]:
        fmt = format or ("keras" if str(path).endswith(".keras") else "h5")
        header = pb.UploadHeader(name=name, description=description, tags=dict(tags or {}), format=fmt, unsafe=unsafe)
        return _model(self._upload(self.api.UploadModel, path, header))

    def upload_dataset(self, path: str | os.PathLike[str], name: str, *, description: str = "",
                       tags: Mapping[str, str] | None = None, format: str = "", overwrite: bool = False
                       ) -> dict[str, Any]:
        fmt = format or Path(path).suffix.lstrip(".")
        header = pb.UploadHeader(name=name, description=description, tags=dict(tags or {}), format=fmt,
                                 overwrite=overwrite)
        return params_of(self._upload(self.api.UploadDataset, path, header))

    def list_datasets(self) -> list[dict[str, Any]]:
        return [params_of(d) for d in self._call(self.api.ListDatasets, pb.ListDatasetsRequest()).datasets]

    def delete_version(self, ref: str) -> str:
        return self._call(self.api.DeleteVersion, pb.DeleteVersionRequest(ref=ref)).deleted

    def start_job(self, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return _job(self._call(self.api.StartJob, pb.StartJobRequest(kind=kind, params_json=json.dumps(dict(params)))))

    def build(self, **params: Any) -> dict[str, Any]:
        """Fields of ``BuildRequest`` (name, base, reuse, head, classes, ...); waits unless wait=False."""
        return _job(self._call(self.api.Build, pb.BuildRequest(**params), timeout=None))

    def start_train(self, **params: Any) -> dict[str, Any]:
        return _job(self._call(self.api.StartTrain, pb.TrainRequest(**params)))

    def start_finetune(self, unfreeze: str, *, match: str = "", **train: Any) -> dict[str, Any]:
        """Fields of ``TrainRequest`` as keywords, plus the scope to unfreeze and its match mode."""
        return _job(self._call(self.api.StartFinetune,
                               pb.FinetuneRequest(unfreeze=unfreeze, match=match, train=pb.TrainRequest(**train))))

    def start_advise(self, model: str, data: str, **options: Any) -> dict[str, Any]:
        req = pb.AdviseRequest(model=model, data=data, options_json=json.dumps(options))
        return _job(self._call(self.api.StartAdvise, req))

    def list_jobs(self, *, state: str = "", kind: str = "") -> list[dict[str, Any]]:
        return [_job(j) for j in self._call(self.api.ListJobs, pb.ListJobsRequest(state=state, kind=kind)).jobs]

    def get_job(self, job_id: str) -> dict[str, Any]:
        return _job(self._call(self.api.GetJob, pb.GetJobRequest(id=job_id)))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return _job(self._call(self.api.CancelJob, pb.CancelJobRequest(id=job_id)))

    def watch_job(self, job_id: str, *, after_seq: int = 0) -> Iterator[dict[str, Any]]:
        """Yield the job's events (as dicts) until it finishes."""
        for e in self._stream(self.api.WatchJob, pb.WatchJobRequest(id=job_id, after_seq=after_seq)):
            yield _event(e)

    def stats(self) -> dict[str, Any]:
        s = self._call(self.api.GetServerStats, pb.GetServerStatsRequest())
        return {"cache_bytes": s.cache_bytes, "cache_limit_bytes": s.cache_limit_bytes,
                "models": {m.model: {"requests": m.requests, "rows": m.rows, "batches": m.batches,
                                     "max_batch_requests": m.max_batch_requests,
                                     "histogram": dict(m.batch_requests_histogram)} for m in s.models}}

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ReuseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_outputs(resp: ipb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Outputs of a v2 response by name, from raw bytes or typed contents."""
    out = {}
    for i, t in enumerate(resp.outputs):
        dtype = NP_OF[t.datatype]
        if resp.raw_output_contents:
            arr = np.frombuffer(resp.raw_output_contents[i], dtype=dtype)
        else:
            arr = np.asarray(getattr(t.contents, FIELD_OF[t.datatype]), dtype=dtype)
        out[t.name] = arr.reshape(tuple(t.shape))
    return out
