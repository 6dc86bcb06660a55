"""RemoteService: the facade's methods, answered by a running ``reuse serve`` over gRPC.

The CLI gets a :class:`reuse.service.Service` or a :class:`RemoteService` from ``get_service`` and calls
the same methods either way, with the same signatures; both return the same types (ModelInfo,
ModelDescription, LayerTable, TrainOutcome, Prediction, JobRecord, ...). What both offer is the
:class:`reuse.service.protocol.Facade` Protocol; what is not offered remotely is simply not here.

Data: a ``builtin:`` spec is passed through; a local file is uploaded first as a dataset named for its
content (``upload-<sha256 prefix>``, skipped when the server has it already) and referenced by name.
Training, fine-tuning, evaluation and builds run as server jobs; training progress arrives as job
events and is turned back into the training events the CLI's progress bar reads
(:mod:`reuse.remote.jobs`). Prediction runs through KServe ``ModelInfer``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reuse.errors import InvalidInput, NotFound
from reuse.graph.signature import ModelSignature
from reuse.jobs import JobRecord
from reuse.jobs.calls import JobCalls
from reuse.remote.client import ReuseClient
from reuse.remote.jobs import (
    TrainEvents,
    follow_job,
    job_error,
    outcome_from_result,
    remote_data,
    request_options,
)
from reuse.serving.engine import InferResult
from reuse.store import LayerInfo, ModelInfo, ModelRef
from reuse.store.describe import ModelDescription
from reuse.store.uploads import DatasetInfo

if TYPE_CHECKING:
    from reuse.heads import HeadSpec
    from reuse.rank import Ranking
    from reuse.store.layer_table import LayerTable
    from reuse.train.output import Prediction, TrainOutcome

INFER_CHUNK_BYTES = 4 * 1024 * 1024  # rows per ModelInfer call in predict: well under the message limit


class RemoteService(JobCalls):
    """The same facade as :class:`reuse.service.Service`, over a server at ``target`` (``HOST:PORT``); the
    job operations go to its client."""

    def __init__(self, target: str, *, token: str | None = None, tls_ca: str | os.PathLike[str] | None = None,
                 timeout: float | None = 60.0) -> None:
        self.target = target
        self.client = ReuseClient(target, token=token, tls_ca=tls_ca, timeout=timeout)
        self.job_host = self.client

    def close(self) -> list[str]:
        self.client.close()
        return []

    # -- store -------------------------------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]:
        return self.client.list_models()

    def model_info(self, ref: str) -> ModelInfo:
        return self.describe_model(ref).info

    def register_model(self, model: Any, name: str, **meta: Any) -> ModelInfo:
        """Save ``model`` to a temporary .h5 file and upload it (description and tags travel along)."""
        import keras

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.h5"
            keras.saving.save_model(model, str(path))
            return self.client.upload_model(path, name, description=meta.get("description", ""),
                                            tags=meta.get("tags"), format="h5")

    def describe_model(self, ref: str, *, scope: str | None = None, match: str = "full") -> ModelDescription:
        return self.client.describe_model(ref, scope=scope, match=match)

    @property
    def store_root(self) -> str:
        """Where the models are, for messages ("No models in ...")."""
        return f"server {self.target}"

    def register_file(self, path: str | os.PathLike[str], name: str, *, unsafe: bool = False,
                      description: str = "", tags: dict[str, str] | None = None) -> ModelInfo:
        """Upload a model file (.keras or .h5); the server validates and registers it like the store does."""
        p = Path(path)
        if not p.is_file():
            raise NotFound(f"{p}: no such file")
        fmt = "keras" if p.suffix.lower() == ".keras" else "h5"
        return self.client.upload_model(p, name, description=description, tags=tags,
                                        format=fmt, unsafe=unsafe)

    def model_versions(self, name: str) -> list[ModelInfo]:
        ModelRef.parse(name)
        latest = self.describe_model(name)
        return [latest.info if v == latest.info.version else self.model_info(f"{name}:{v}")
                for v in latest.versions]

    def model_layers(self, ref: str) -> list[LayerInfo]:
        """The top-level layers, as the local store lists them."""
        return [LayerInfo(x.name, x.class_name, x.output_shape, x.params, x.trainable)
                for x in self.describe_model(ref).layers if x.depth == 0]

    # -- selection and building --------------------------------------------------------------------
    def layer_table(self, ref: str, scope: str | None = None, match: str = "full") -> LayerTable:
        """As the local one: the non-input layers, with the scope's dry run when given."""
        from reuse.store.describe import table_of

        return table_of(self.describe_model(ref, scope=scope, match=match), scope, match)

    def build(self, new_name: str, base_ref: str, reuse: str, *, head: str | HeadSpec | None = None,
              head_file: str | os.PathLike[str] | None = None, classes: int | None = None,
              regression: bool | int = False, outputs: int | None = None, trainable: str | None = None,
              match: str = "full", input_shape: tuple[int | None, ...] | None = None, description: str = "",
              seed: int | None = None,
              tags: dict[str, str] | None = None, exits: Sequence[str] | None = None,
              preprocess: str | None = None) -> ModelInfo:
        """Build on the server (the Build RPC, waiting for its job); a head file is sent as its text, a
        HeadSpec as its spec string."""
        from reuse.heads import read_head

        if head_file is not None:
            read_head(head, head_file)  # refuse both, or a bad file, here (naming the local path)
            head = Path(head_file).read_text(encoding="utf-8")
        if head is not None and not isinstance(head, str):
            head = head.to_string()
        req: dict[str, Any] = {"name": new_name, "base": base_ref, "reuse": reuse, "head": head or "",
                               "trainable": trainable or "", "match": match, "description": description,
                               "tags": dict(tags or {}), "regression": bool(regression)}
        if outputs is not None:
            req["outputs"] = outputs  # the server's build checks it (it needs regression)
        elif regression is not True and regression:
            req["outputs"] = int(regression)
        if input_shape is not None:
            req["input_shape"] = [-1 if d is None else d for d in input_shape]
        req.update({k: v for k, v in (("classes", classes), ("seed", seed)) if v is not None})
        if exits:
            req["exits"] = list(exits)
        if preprocess is not None:
            req["preprocess"] = preprocess
        record = self.client.build(**req, wait=True)
        if record.state != "succeeded":
            raise job_error(record)
        return self.model_info(record.model)

    def ensemble(self, new_name: str, members: str | Sequence[str], *,
                 weights: str | Sequence[float] | None = None, vote: bool = False,
                 average_weights: bool = False, data: str | None = None, label: str | int | None = None,
                 relabel: bool = False, description: str = "",
                 tags: dict[str, str] | None = None) -> ModelInfo:
        """Combine models on the server (an ``ensemble`` job, waited for); as ``Service.ensemble``."""
        from reuse.ensemble import parse_members, parse_weights

        refs = parse_members(members if isinstance(members, str) else list(members))
        params: dict[str, Any] = {"name": new_name, "members": refs, "vote": vote,
                                  "average_weights": average_weights, "relabel": relabel,
                                  "description": description, "tags": dict(tags or {})}
        if weights is not None:
            params["weights"] = parse_weights(weights if isinstance(weights, str) else list(weights),
                                              len(refs))
        if data is not None:
            params["data"] = remote_data(self.client, data)
        if label is not None:
            params["label"] = str(label)
        record = self._run_job(self.start_job("ensemble", params))
        return self.model_info(record.model)

    def lineage(self, ref: str) -> list[dict[str, Any]]:
        """Ancestry of ``ref`` (reuse.store.lineage.ancestry, reading each version's metadata from the
        server)."""
        from reuse.store.lineage import ancestry

        return ancestry(_InfoSource(self), ref)

    # -- training, evaluation, prediction ----------------------------------------------------------
    def _run_job(self, record: JobRecord, progress: Any = None,
                 cancel: threading.Event | None = None) -> JobRecord:
        return follow_job(record.id, lambda: self.watch_job(record.id), lambda: self.get_job(record.id),
                          lambda: self.client.cancel_job(record.id), TrainEvents(progress), cancel)

    def _fit_request(self, ref: str, data: str, val: str | None, label: str | int | None, relabel: bool,
                     config: Any, options: dict[str, Any] | None, seeds: int,
                     description: str | None) -> dict:
        req = {"model": ref, "data": remote_data(self.client, data), "relabel": relabel,
               "description": description or "", **request_options(options, config)}
        if val:
            req["val"] = remote_data(self.client, val)
        if label is not None:
            req["label"] = str(label)
        if seeds != 1:
            req["seeds"] = seeds
        return req

    def train_model(self, ref: str, data: str, *, val: str | None = None, label: str | int | None = None,
                    relabel: bool = False, config: Any = None, options: dict[str, Any] | None = None,
                    seeds: int = 1, progress: Any = None, cancel: threading.Event | None = None,
                    description: str | None = None, ensemble: bool = False) -> TrainOutcome:
        """Train on the server (a ``train`` job), following its progress; Ctrl-C or ``cancel`` cancels it.

        Returns a TrainOutcome whose ``result`` holds the reported fields (no model object). ``ensemble``
        goes as a ``train`` job through StartJob (TrainRequest has no such field)."""
        req = self._fit_request(ref, data, val, label, relabel, config, options, seeds, description)
        job = (
            self.start_job("train", {**req, "ensemble": True}) if ensemble else self.client.start_train(**req)
        )
        return self._fit_outcome(self._run_job(job, progress, cancel))

    def _fit_outcome(self, record: JobRecord) -> TrainOutcome:
        outcome = outcome_from_result(record.result, self.model_info(record.model))
        if record.result.get("ensemble"):
            outcome.seed_models = list(record.result.get("seed_models") or [])
            outcome.ensemble = self.model_info(record.result["ensemble"])
        return outcome

    def finetune_model(self, ref: str, unfreeze: str, data: str, *, match: str = "full",
                       val: str | None = None, label: str | int | None = None, relabel: bool = False,
                       config: Any = None, options: dict[str, Any] | None = None, seeds: int = 1,
                       progress: Any = None, cancel: threading.Event | None = None,
                       description: str | None = None, ensemble: bool = False) -> TrainOutcome:
        """Fine-tune on the server (a ``finetune`` job); as :meth:`train_model`."""
        req = self._fit_request(ref, data, val, label, relabel, config, options, seeds, description)
        if ensemble:
            job = self.start_job("finetune", {**req, "unfreeze": unfreeze, "match": match, "ensemble": True})
        else:
            job = self.client.start_finetune(unfreeze, match=match, **req)
        return self._fit_outcome(self._run_job(job, progress, cancel))

    def evaluate_model(self, ref: str, data: str, *, label: str | int | None = None,
                       relabel: bool = False) -> dict[str, Any]:
        """Evaluate on the server (an ``evaluate`` job); ``data`` in the result is the spec given here."""
        params: dict[str, Any] = {"model": ref, "data": remote_data(self.client, data), "relabel": relabel}
        if label is not None:
            params["label"] = str(label)
        record = self._run_job(self.start_job("evaluate", params))
        return {**record.result, "data": data}

    def predict_model(self, ref: str, data: str, *, label: str | int | None = None, no_label: bool = False,
                      out: str | os.PathLike[str] | None = None) -> Prediction:
        """Predict through KServe ModelInfer: the data is read here (and checked against the served
        signature, one array per input) and sent in chunks of rows."""
        from reuse.data import load_data
        from reuse.data.checks import InputSpec, check_features
        from reuse.train.output import prediction_from_outputs, write_prediction

        info = self.model_info(ref)
        sig = self.model_signature(info.ref)
        if len(sig.outputs) != 1:
            raise InvalidInput(f"model {info.ref} has {len(sig.outputs)} outputs; predict expects one")
        specs = [InputSpec(s.name, s.row_shape, s.dtype) for s in sig.inputs]
        ds = check_features(load_data(data, label=label, require_labels=False, has_label=not no_label),
                            specs, info.ref)
        arrays = ds.arrays if ds.named else {specs[0].name: ds.x}
        row_bytes = sum(a[:1].nbytes for a in arrays.values())
        rows = max(1, INFER_CHUNK_BYTES // max(1, row_bytes))
        parts = [self.client.infer(info.name, {k: a[lo:lo + rows] for k, a in arrays.items()},
                                   version=str(info.version))[sig.outputs[0].name]
                 for lo in range(0, len(ds), rows)]
        pred = prediction_from_outputs(info.ref, data, np.concatenate(parts), info.class_names)
        if out is not None:
            write_prediction(pred, out)
        return pred

    # -- ranking -----------------------------------------------------------------------------------
    def rank(self, data: str, *, models: str | None = None, cuts: str | None = None,
             blocks: str | None = None, match: str = "full", metric: str | None = None,
             regression: bool = False, label: str | int | None = None, relabel: bool = False,
             budget: float | None = None, memory_mb: float | None = None, ray: str | None = None,
             ray_cpus: float = 1.0, plot: str | None = None, progress: Any = None,
             cancel: threading.Event | None = None) -> Ranking:
        """Rank on the server (a ``rank`` job through StartJob), following its progress; a local data file
        is uploaded first; the plot is drawn here. As ``Service.rank``; a cancelled job raises Cancelled."""
        from reuse.advise.plot import check_plot_path
        from reuse.rank.ranking import RankNote
        from reuse.rank.result import Ranking

        if plot is not None:
            check_plot_path(plot)
        params: dict[str, Any] = {"data": remote_data(self.client, data), "match": match,
                                  "regression": bool(regression), "relabel": relabel, "ray_cpus": ray_cpus}
        given = {"models": models, "cuts": cuts, "blocks": blocks, "metric": metric, "budget": budget,
                 "memory_mb": memory_mb, "ray": ray, "label": None if label is None else str(label)}
        params.update({k: v for k, v in given.items() if v is not None})

        def on_event(ev: Any) -> None:
            if progress is not None and ev.state == "running" and ev.message:
                progress(RankNote(ev.message))

        record = self.start_job("rank", params)
        done = follow_job(record.id, lambda: self.watch_job(record.id), lambda: self.get_job(record.id),
                          lambda: self.client.cancel_job(record.id), on_event, cancel)
        ranking = Ranking.from_dict({**done.result, "data": data})
        if plot is not None and ranking.candidates:
            from reuse.rank.plot import plot_ranking

            ranking.plot = str(plot_ranking(ranking, plot))
        return ranking

    # -- serving and jobs --------------------------------------------------------------------------
    def model_signature(self, ref: str) -> ModelSignature:
        name, _, version = ref.partition(":")
        return self.client.signature(name, version)

    def infer(self, ref: str,
              inputs: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> InferResult:
        sig = self.model_signature(ref)
        name, _, version = ref.partition(":")
        if not isinstance(inputs, Mapping):
            arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            inputs = {s.name: a for s, a in zip(sig.inputs, arrays, strict=False)}
        out = self.client.infer(name, inputs, version=version)
        return InferResult(sig, [out[s.name] for s in sig.outputs])

    def infer_images(self, ref: str, images: Sequence[bytes]) -> InferResult:
        """Send encoded images as a KServe BYTES tensor; the server decodes and resizes them."""
        from reuse.serving.image_inputs import image_input

        sig = self.model_signature(ref)
        image_input(sig)  # refuse a model that takes no images here, with the same message
        name, _, version = ref.partition(":")
        out = self.client.infer(name, list(images), version=version or str(sig.version))
        return InferResult(sig, [out[s.name] for s in sig.outputs])

    def upload_model(self, chunks: Iterable[bytes], name: str, *, format: str = "h5", description: str = "",
                     tags: Mapping[str, str] | None = None, unsafe: bool = False) -> ModelInfo:
        with _spooled(chunks) as path:
            return self.client.upload_model(path, name, description=description, tags=tags, format=format,
                                            unsafe=unsafe)

    def upload_dataset(self, chunks: Iterable[bytes], name: str, *, format: str, description: str = "",
                       tags: Mapping[str, str] | None = None, overwrite: bool = False) -> DatasetInfo:
        with _spooled(chunks) as path:
            return self.client.upload_dataset(path, name, description=description, tags=tags, format=format,
                                              overwrite=overwrite)

    def list_datasets(self) -> list[DatasetInfo]:
        return self.client.list_datasets()

    def delete_version(self, ref: str) -> ModelInfo:
        info = self.model_info(ref)
        self.client.delete_version(ref)
        return info

    def build_job(self, params: dict[str, Any], *, wait: bool = True,
                  timeout: float | None = None) -> JobRecord:
        return self.client.build(**params, wait=wait)

    def start_train(self, params: dict[str, Any]) -> JobRecord:
        return self.client.start_train(**params)

    def start_finetune(self, params: dict[str, Any]) -> JobRecord:
        params = dict(params)
        return self.client.start_finetune(params.pop("unfreeze", ""), match=params.pop("match", ""), **params)

    def start_advise(self, params: dict[str, Any]) -> JobRecord:
        params = dict(params)
        return self.client.start_advise(params.pop("model", ""), params.pop("data", ""), **params)

    def serving_stats(self) -> dict[str, Any]:
        return self.client.stats()


class _InfoSource:
    """What reuse.store.lineage.ancestry reads from a store (resolve, info), answered by the server."""

    def __init__(self, remote: RemoteService) -> None:
        self.remote = remote

    def resolve(self, ref: str | ModelRef) -> ModelRef:
        return ModelRef.parse(self.remote.model_info(str(ref)).ref)

    def info(self, ref: str | ModelRef) -> ModelInfo:
        return self.remote.model_info(str(ref))


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
