"""Wire <-> core conversion for the reuse.v1 management messages, both ways.

The servicers turn domain values into messages (``*_pb``); the client turns the answers back into the
same domain values (``*_of``): ModelInfo, ModelDescription, DatasetInfo, JobRecord, JobEvent. Each
message is converted here and nowhere else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from reuse.errors import InvalidInput
from reuse.graph.select import Selection
from reuse.grpc._proto import reuse_v1_pb2 as pb
from reuse.jobs import JobEvent, JobRecord
from reuse.store import LayerInfo, ModelInfo
from reuse.store.describe import ModelDescription
from reuse.store.uploads import DatasetInfo

# JobEvent fields whose message field has another name.
_EVENT_WIRE = {"eta_s": "eta_seconds"}


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
                    description=info.description or "",
                    tags={str(k): str(v) for k, v in (info.tags or {}).items()},
                    metadata_json=_json(info.to_dict()))


def model_of(m: pb.Model) -> ModelInfo:
    """The ModelInfo a Model message carries (``metadata_json`` holds ``ModelInfo.to_dict()``)."""
    d = {"name": m.name, "version": m.version, "created": m.created, "description": m.description,
         "tags": dict(m.tags), **(json.loads(m.metadata_json) if m.metadata_json else {})}
    fields = {k: d[k] for k in ModelInfo.__dataclass_fields__ if k in d}
    fields["path"] = Path(str(fields.get("path", "")))
    return ModelInfo(**fields)


# No scope is None in the domain and the empty string (proto3's unset) on the wire.
def describe_request(ref: str, scope: str | None, match: str) -> pb.DescribeModelRequest:
    return pb.DescribeModelRequest(ref=ref, scope=scope or "", match=match)


def describe_options(request: pb.DescribeModelRequest) -> dict[str, Any]:
    """``describe_model``'s keywords from a request: an empty scope is no scope, an empty match "full"."""
    return {"scope": request.scope or None, "match": request.match or "full"}


def description_pb(d: ModelDescription) -> pb.ModelDescription:
    matched = set(d.selection.matched) if d.selection else set()
    out = pb.ModelDescription(model=model_pb(d.info), versions=list(d.versions))
    for layer in d.layers:
        out.layers.add(name=layer.name, class_name=layer.class_name,
                       output_shape_json=_json(layer.output_shape), params=layer.params,
                       trainable=layer.trainable,
                       matched=layer.name in matched or any(layer.name.startswith(m + "/") for m in matched),
                       inputs=list(layer.inputs), depth=layer.depth)
    if d.selection is not None:
        out.scope, out.match = d.selection.pattern, d.selection.match
        out.matched.extend(d.selection.matched)
        out.unmatched.extend(d.selection.unmatched)
    return out


def description_of(d: pb.ModelDescription) -> ModelDescription:
    """A ModelDescription from its message; ``selection`` only when a scope was given."""
    layers = tuple(LayerInfo(name=x.name, class_name=x.class_name,
                             output_shape=json.loads(x.output_shape_json), params=x.params,
                             trainable=x.trainable, depth=x.depth, inputs=tuple(x.inputs))
                   for x in d.layers)
    selection = Selection(d.scope, d.match, tuple(d.matched), tuple(d.unmatched)) if d.scope else None
    return ModelDescription(info=model_of(d.model), versions=tuple(d.versions), layers=layers,
                            selection=selection)


def dataset_pb(d: DatasetInfo) -> pb.Dataset:
    return pb.Dataset(name=d.name, format=d.format, size_bytes=d.size_bytes, sha256=d.sha256,
                      created=d.created, tags=d.tags, description=d.description)


def dataset_of(d: pb.Dataset) -> DatasetInfo:
    """A DatasetInfo from its message (``path`` is the server's and does not travel: empty)."""
    return DatasetInfo(name=d.name, format=d.format, size_bytes=d.size_bytes, sha256=d.sha256,
                       created=d.created, description=d.description, tags=dict(d.tags))


def event_pb(e: JobEvent) -> pb.JobEvent:
    return pb.JobEvent(**{_EVENT_WIRE.get(k, k): getattr(e, k) for k in JobEvent.__dataclass_fields__})


def event_of(e: pb.JobEvent) -> JobEvent:
    fields = {k: getattr(e, _EVENT_WIRE.get(k, k)) for k in JobEvent.__dataclass_fields__}
    fields.update(losses=dict(e.losses), metrics=dict(e.metrics), cached_layers=tuple(e.cached_layers))
    return JobEvent(**fields)


def job_pb(r: JobRecord) -> pb.Job:
    job = pb.Job(id=r.id, kind=r.kind, state=r.state, params_json=_json(r.params), created=r.created,
                 started=r.started, finished=r.finished, model=r.model,
                 result_json=_json(r.result), error=r.error)
    if r.last_event is not None:
        job.last_event.CopyFrom(event_pb(r.last_event))
    return job


def job_of(j: pb.Job) -> JobRecord:
    return JobRecord(id=j.id, kind=j.kind, state=j.state, params=json.loads(j.params_json or "{}"),
                     created=j.created, started=j.started, finished=j.finished,
                     result=json.loads(j.result_json or "{}"), error=j.error,
                     last_event=event_of(j.last_event) if j.HasField("last_event") else None)


def stats_pb(stats: dict[str, Any]) -> pb.ServerStats:
    out = pb.ServerStats(cache_bytes=stats["cache_bytes"], cache_limit_bytes=stats["cache_limit_bytes"])
    for ref, s in sorted(stats["models"].items()):
        out.models.add(model=ref, requests=s["requests"], rows=s["rows"], batches=s["batches"],
                       max_batch_requests=s["max_batch_requests"], batch_requests_histogram=s["histogram"],
                       runtime=s.get("runtime", ""), runtime_reason=s.get("runtime_reason", ""))
    return out


def stats_of(s: pb.ServerStats) -> dict[str, Any]:
    """``Service.serving_stats()``'s dict from its message."""
    return {"cache_bytes": s.cache_bytes, "cache_limit_bytes": s.cache_limit_bytes,
            "models": {m.model: {"requests": m.requests, "rows": m.rows, "batches": m.batches,
                                 "max_batch_requests": m.max_batch_requests,
                                 "histogram": dict(m.batch_requests_histogram), "runtime": m.runtime,
                                 "runtime_reason": m.runtime_reason} for m in s.models}}


def upload_header(first: pb.UploadChunk | None) -> pb.UploadHeader:
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidInput(
            "upload must start with a header message (name, format, ...); got "
            f"{'nothing' if first is None else first.WhichOneof('part') or 'an empty message'}"
        )
    return first.header


def chunk_data(msg: pb.UploadChunk) -> bytes:
    if msg.WhichOneof("part") != "data":
        raise InvalidInput("upload: only the first message may carry a header; expected data chunks after it")
    return msg.data
