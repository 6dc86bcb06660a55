"""Wire <-> core conversion for the reuse.v1 management messages."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import Message

from reuse.describe import ModelDescription
from reuse.errors import InvalidInput
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.jobs import JobEvent, JobRecord
from reuse.store import ModelInfo
from reuse.uploads import DatasetInfo


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def params_of(msg: Message) -> dict[str, Any]:
    """The fields a client set, as plain values (nested messages flattened into their own dicts)."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            out[fd.name] = dict(value)
        elif fd.message_type is not None:
            out[fd.name] = [params_of(v) for v in value] if _repeated(fd) else params_of(value)
        else:
            out[fd.name] = list(value) if _repeated(fd) else value
    return out


def _repeated(fd: Any) -> bool:
    return bool(getattr(fd, "is_repeated", False)) or getattr(fd, "label", None) == 3


def json_params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text) if text else {}
    except ValueError as exc:
        raise InvalidInput(f"params_json is not valid JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise InvalidInput(f"params_json must be a JSON object; got {type(params).__name__}")
    return params


def model_pb(info: ModelInfo) -> pb.Model:
    return pb.Model(name=info.name, version=info.version, created=info.created or "",
                    description=info.description or "", tags={str(k): str(v) for k, v in (info.tags or {}).items()},
                    metadata_json=_json(info.to_dict()))


def description_pb(d: ModelDescription) -> pb.ModelDescription:
    matched = set(d.selection.matched) if d.selection else set()
    out = pb.ModelDescription(model=model_pb(d.info), versions=list(d.versions))
    for layer in d.layers:
        out.layers.add(name=layer.name, class_name=layer.class_name, output_shape_json=_json(layer.output_shape),
                       params=layer.params, trainable=layer.trainable,
                       matched=layer.name in matched or any(layer.name.startswith(m + "/") for m in matched),
                       inputs=list(layer.inputs), depth=layer.depth)
    if d.selection is not None:
        out.scope, out.match = d.selection.pattern, d.selection.match
        out.matched.extend(d.selection.matched)
        out.unmatched.extend(d.selection.unmatched)
    return out


def dataset_pb(d: DatasetInfo) -> pb.Dataset:
    return pb.Dataset(name=d.name, format=d.format, size_bytes=d.size_bytes, sha256=d.sha256, created=d.created,
                      tags=d.tags, description=d.description)


def event_pb(e: JobEvent) -> pb.JobEvent:
    return pb.JobEvent(job_id=e.job_id, seq=e.seq, state=e.state, epoch=e.epoch, epochs=e.epochs, losses=e.losses,
                       metrics=e.metrics, eta_seconds=e.eta_s, message=e.message, model=e.model, error=e.error,
                       time=e.time)


def job_pb(r: JobRecord) -> pb.Job:
    job = pb.Job(id=r.id, kind=r.kind, state=r.state, params_json=_json(r.params), created=r.created,
                 started=r.started, finished=r.finished, model=r.model, result_json=_json(r.result), error=r.error)
    if r.last_event is not None:
        job.last_event.CopyFrom(event_pb(r.last_event))
    return job


def stats_pb(stats: dict[str, Any]) -> pb.ServerStats:
    out = pb.ServerStats(cache_bytes=stats["cache_bytes"], cache_limit_bytes=stats["cache_limit_bytes"])
    for ref, s in sorted(stats["models"].items()):
        out.models.add(model=ref, requests=s["requests"], rows=s["rows"], batches=s["batches"],
                       max_batch_requests=s["max_batch_requests"], batch_requests_histogram=s["histogram"],
                       runtime=s.get("runtime", ""), runtime_reason=s.get("runtime_reason", ""))
    return out


def upload_header(first: pb.UploadChunk | None) -> pb.UploadHeader:
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidInput("upload must start with a header message (name, format, ...); got "
                           f"{'nothing' if first is None else first.WhichOneof('part') or 'an empty message'}")
    return first.header


def chunk_data(msg: pb.UploadChunk) -> bytes:
    if msg.WhichOneof("part") != "data":
        raise InvalidInput("upload: only the first message may carry a header; expected data chunks after it")
    return msg.data
