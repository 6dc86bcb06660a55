"""The facade that both the CLI and the gRPC servicers call.

Each method takes plain values, calls the core, and returns plain values or core objects. No Click,
no gRPC, no printing here. Sections are grouped by area so they grow independently.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from reuse.config import store_root
from reuse.data import load_data
from reuse.errors import InvalidInput
from reuse.jobs.calls import JobCalls
from reuse.jobs.kinds import builtin_kinds
from reuse.service.state import ServerState, StateSettings
from reuse.service.uploads import UploadCalls
from reuse.store import CheckReport, LayerInfo, ModelInfo, ModelStore, check_name
from reuse.train.output import Prediction, PretrainOutcome, Report, TrainOutcome

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import numpy as np

    from reuse.advise import Advice
    from reuse.export.formats import ExportResult
    from reuse.export.triton import TritonExport
    from reuse.graph.signature import ModelSignature
    from reuse.heads import HeadSpec
    from reuse.jobs import JobEvent, JobRecord
    from reuse.rank import Ranking
    from reuse.serving.engine import InferResult, ServingOptions
    from reuse.serving.runtime_choice import RuntimeChoice
    from reuse.store.describe import ModelDescription
    from reuse.store.layer_table import LayerTable
    from reuse.store.lineage import HistorySegment

D = TypeVar("D")


class Service(JobCalls, UploadCalls):
    """Operations on one model store (the job operations go to its server state)."""

    def __init__(self, store: str | os.PathLike[str] | None = None, *,
                 state: ServerState | None = None) -> None:
        """``state``: the serving state to use (its store is then this service's store); by default one
        whose job kinds are the built-in ones, each calling a service of this class on the job's store."""
        if state is not None and store is not None and state.store.root != store_root(store):
            raise InvalidInput(f"the server state serves store {state.store.root}, not {store_root(store)}")
        self.store = state.store if state is not None else ModelStore(store_root(store))
        self.state = state or ServerState(self.store, builtin_kinds(type(self)))
        self.job_host = self.state

    # -- Store -----------------------------------------------------------------------------------
    @property
    def store_root(self) -> Path | str:
        return self.store.root

    def register_model(self, model: Any, name: str, **meta: Any) -> ModelInfo:
        return self.store.register(model, name, **meta)

    def register_file(self, path: str | os.PathLike[str], name: str, *, unsafe: bool = False,
                      description: str = "", tags: dict[str, str] | None = None) -> ModelInfo:
        return self.store.register_file(path, name, unsafe=unsafe, description=description, tags=tags)

    def list_models(self) -> list[ModelInfo]:
        return self.store.list()

    def model_versions(self, name: str) -> list[ModelInfo]:
        return self.store.versions(name)

    def model_info(self, ref: str) -> ModelInfo:
        return self.store.info(ref)

    def model_layers(self, ref: str) -> list[LayerInfo]:
        return self.store.layers(ref)

    def load_model(self, ref: str, *, unsafe: bool = False) -> Any:
        return self.store.load(ref, safe_mode=False if unsafe else None)

    def delete_version(self, ref: str) -> ModelInfo:
        """Delete one version (``NAME:VERSION``), and drop it from the serving cache if loaded."""
        info = self.store.delete(ref)
        self.state.forget(info.ref)
        return info

    def export_model(self, ref: str, out: str | os.PathLike[str], *, overwrite: bool = False,
                     unsafe: bool = False, format: str | None = None) -> ExportResult:
        """Export a version as ``format`` (keras, onnx, savedmodel; default from OUT's suffix, else keras)."""
        from reuse.export.formats import export_version
        return export_version(self.store, ref, Path(out), format=format, overwrite=overwrite, unsafe=unsafe)

    def export_triton(self, ref: str, repo: str | os.PathLike[str], **options: Any) -> TritonExport:
        """A Triton model repository entry for a version (see :func:`reuse.export.triton.export_version`)."""
        from reuse.export.triton import export_version
        return export_version(self.store, ref, Path(repo), **options)

    def check_store(self, *, repair: bool = False) -> CheckReport:
        return self.store.check(repair=repair)

    # -- Selection and building ------------------------------------------------------------------
    def layer_table(self, ref: str, scope: str | None = None, match: str = "full") -> LayerTable:
        """The layers of ``ref``; with ``scope``, a dry run of the selection (see reuse.store.layer_table)."""
        from reuse.store.layer_table import layer_table
        return layer_table(self.store, ref, scope, match)

    def build(self, new_name: str, base_ref: str, reuse: str, *, head: str | HeadSpec | None = None,
              head_file: str | os.PathLike[str] | None = None, classes: int | None = None,
              regression: bool | int = False, outputs: int | None = None, trainable: str | None = None,
              match: str = "full", input_shape: tuple[int | None, ...] | None = None, description: str = "",
              seed: int | None = None,
              tags: dict[str, str] | None = None, exits: Sequence[str] | None = None,
              preprocess: str | None = None) -> ModelInfo:
        """Build a network from the layers of ``base_ref`` that ``reuse`` selects, plus a head, and
        register it as the next version of ``new_name`` with its lineage (see reuse.build).

        ``head`` is a spec string or a parsed HeadSpec (the build job parses a head file's text);
        ``outputs`` the number of regression targets given apart from ``regression`` (which it needs);
        ``preprocess`` a preprocessing spec put in front of the reused layers (reuse.preprocess_spec). The
        lineage's ``warnings`` say what the caller should know (a keras.applications base reused without
        the preprocessing it expects)."""
        from reuse.build import build_network
        from reuse.heads import read_head

        check_name(new_name)
        spec = read_head(head, head_file)
        built = build_network(self.store, base_ref, reuse, head=spec, classes=classes, regression=regression,
                              outputs=outputs, trainable=trainable, match=match, input_shape=input_shape,
                              name=new_name, seed=seed, exits=exits, preprocess=preprocess)
        return self.store.register(built.model, new_name, description=description, tags=tags,
                                   lineage=built.lineage)

    def ensemble(self, new_name: str, members: str | Sequence[str], *,
                 weights: str | Sequence[float] | None = None, vote: bool = False,
                 average_weights: bool = False, data: str | None = None, label: str | int | None = None,
                 relabel: bool = False, description: str = "", tags: dict[str, str] | None = None,
                 check_only: bool = False) -> ModelInfo | None:
        """Register one model combining ``members`` (``"a:1,b:3"`` or a list) as the next version of
        ``new_name``: the (weighted) mean of their outputs, a majority ``vote``, or with
        ``average_weights`` one network with their mean weights (see reuse.ensemble). With ``data``
        (labelled, held out), each member and the ensemble are scored on it (``metrics["ensemble_check"]``,
        which ``reuse report`` reads). ``check_only``: make every check, register nothing, return None."""
        from reuse.ensemble import build_ensemble, parse_members, parse_weights

        check_name(new_name)
        refs = parse_members(members if isinstance(members, str) else list(members))
        weight_list = parse_weights(weights if weights is None or isinstance(weights, str) else list(weights),
                                    len(refs))
        ds = None
        if data is not None:
            first = self.store.info(refs[0])
            ds = load_data(data, label=label, relabel_labels=relabel, class_names=first.class_names)
        built = build_ensemble(self.store, refs, weights=weight_list, vote=vote, average=average_weights,
                               name=new_name, data=ds, check_only=check_only)
        if built is None:
            return None
        return self.store.register(built.model, new_name, description=description or built.description,
                                   tags=tags, class_names=built.class_names, metrics=built.metrics,
                                   lineage=built.lineage)

    def lineage(self, ref: str) -> list[dict[str, Any]]:
        """Ancestry of ``ref``, newest first (see reuse.store.lineage.ancestry)."""
        from reuse.store.lineage import ancestry
        return ancestry(self.store, ref)

    def lineage_graph(self, ref: str) -> dict[str, Any]:
        """The versions ``ref`` was made from, down to layers (see reuse.store.lineage.lineage_graph)."""
        from reuse.store.lineage import lineage_graph
        return lineage_graph(self.store, ref)

    def training_history(self, ref: str) -> list[HistorySegment]:
        """The training of ``ref``'s network along its lineage, oldest first (lineage.training_history)."""
        from reuse.store.lineage import training_history
        return training_history(self.store, ref)

    # -- Training, fine-tuning, evaluation, prediction, pretraining ------------------------------
    def check_fit(self, ref: str, data: str, *, unfreeze: str | None = None, match: str = "full",
                  val: str | None = None, label: str | int | None = None, relabel: bool = False,
                  options: dict[str, Any] | None = None) -> None:
        """Every check of a train (``unfreeze``: fine-tune) run that needs no training; raises what the run
        would raise before its first epoch (see reuse.service.versions.check_fit)."""
        from reuse.service.versions import check_fit

        check_fit(self.store, ref, data, unfreeze=unfreeze, match=match, val=val, label=label,
                  relabel=relabel, options=options)

    def train_model(self, ref: str, data: str, *, val: str | None = None, label: str | int | None = None,
                    relabel: bool = False, config: Any = None, options: dict[str, Any] | None = None,
                    seeds: int = 1, progress: Any = None, cancel: Any = None,
                    description: str | None = None, ensemble: bool = False) -> TrainOutcome:
        """Train version ``ref`` on ``data`` and register the result as the next version of its name.

        Settings: a ``TrainConfig`` as ``config``, or ``options`` (plain ``TrainConfig`` field values;
        the rest default). ``progress`` receives :mod:`reuse.train.events`; setting ``cancel`` (a
        ``threading.Event``) stops the run with ``Cancelled`` and registers nothing. ``ensemble`` (with
        ``seeds`` >= 2): register every seed's model and then their averaged-output ensemble.
        """
        from reuse.service.versions import fit_version
        return fit_version(self.store, ref, data, unfreeze=None, match="full", val=val, label=label,
                           relabel=relabel,
                         config=config, options=options, seeds=seeds, progress=progress, cancel=cancel,
                         description=description, ensemble=ensemble)

    def finetune_model(self, ref: str, unfreeze: str, data: str, *, match: str = "full",
                       val: str | None = None, label: str | int | None = None, relabel: bool = False,
                       config: Any = None, options: dict[str, Any] | None = None, seeds: int = 1,
                       progress: Any = None, cancel: Any = None, description: str | None = None,
                       ensemble: bool = False) -> TrainOutcome:
        """Unfreeze the layers ``unfreeze`` selects in ``ref``, train, register the next version.

        Options not given are inherited from how ``ref`` was trained (optimizer, momentum, batch
        size); the learning rate defaults to a tenth of ``ref``'s. ``ensemble``: as for :meth:`train_model`.
        """
        from reuse.service.versions import fit_version
        return fit_version(self.store, ref, data, unfreeze=unfreeze, match=match, val=val, label=label,
                           relabel=relabel,
                         config=config, options=options, seeds=seeds, progress=progress, cancel=cancel,
                         description=description, ensemble=ensemble)

    def evaluate_model(self, ref: str, data: str, *, label: str | int | None = None,
                       relabel: bool = False) -> dict[str, Any]:
        """Loss and metric of ``ref`` on ``data``: ``{"model", "data", "samples", "loss", "accuracy"}``; for
        an ensemble also ``members``: each member's ``{"model", "loss", "accuracy"}`` (``missing`` when
        deleted), read from the store as its lineage records them."""
        from reuse.ensemble.check import member_scores
        from reuse.train import evaluate

        info = self.store.info(ref)
        ds = load_data(data, label=label, relabel_labels=relabel, class_names=info.class_names)
        result = {"model": info.ref, "data": data, **evaluate(self.store.load(info.ref), ds)}
        if (info.lineage or {}).get("operation") == "ensemble":
            result["members"] = member_scores(self.store, info.lineage, ds)
        return result

    def predict_model(self, ref: str, data: str, *, label: str | int | None = None, no_label: bool = False,
                      out: str | os.PathLike[str] | None = None) -> Prediction:
        """Outputs of ``ref`` for every sample of ``data`` (labels, if any, are ignored); written to
        ``out`` (.npz or .csv) when given. A CSV's label column is found as for training (``label``,
        default the last column) unless ``no_label`` says it has none."""
        from reuse.train import predict
        from reuse.train.output import prediction_from_outputs, write_prediction

        info = self.store.info(ref)
        ds = load_data(data, label=label, require_labels=False, has_label=not no_label)
        outputs = predict(self.store.load(info.ref), ds)
        pred = prediction_from_outputs(info.ref, data, outputs, info.class_names)
        if out is not None:
            write_prediction(pred, out)
        return pred

    def report_model(self, ref: str, *, plot: str | os.PathLike[str] | None = None) -> Report:
        """Learning curves (as a PNG at ``plot``) and a diagnosis of how ``ref`` was trained."""
        from reuse.service.versions import report_version
        return report_version(self.store, ref, plot=plot)

    def pretrain_model(self, name: str, data: str, *, config: Any, test: str | None = None,
                       label: str | int | None = None, relabel: bool = False, progress: Any = None,
                       cancel: Any = None, description: str | None = None) -> PretrainOutcome:
        """Greedy layer-wise pretraining on ``data``; registers the final network as the next version
        of ``name``. ``test`` defaults to the test split of a built-in set."""
        from reuse.service.versions import pretrain_version
        return pretrain_version(self.store, name, data, config=config, test=test, label=label,
                                relabel=relabel, progress=progress, cancel=cancel, description=description)

    # -- Advisor ---------------------------------------------------------------------------------
    def advise(self, base: str | None, data: str, *, val: str | None = None, val_split: float | None = None,
               label: str | int | None = None, relabel: bool = False, head: str | None = None,
               head_file: str | None = None, classes: int | None = None, regression: bool | int = False,
               depths: str | list[int] | None = None, scopes: list[str] | None = None, match: str = "full",
               blocks: str | None = None,
               seeds: int = 3, seed: int = 0, epochs: int = 200, patience: int = 10, batch_size: int = 32,
               optimizer: str = "adam", lr: float | None = None, finetune_lr: float | None = None,
               finetune: bool = True, budget_minutes: float | None = None, jobs: int = 1,
               min_margin: float | None = None, register: str | None = None, description: str | None = None,
               plot: str | None = None, progress: Any = None, cancel: Any = None,
               check_only: bool = False, register_ensemble: str | None = None, ray: str | None = None,
               ray_cpus: float = 1.0, ray_gpus: float = 0.0, shortlist: int | None = None,
               models: str | None = None, metric: str | None = None, augment: str | None = None,
               augment_views: int | None = None) -> Advice | None:
        """Measure how many layers of ``base`` to reuse for the task of ``data``, and whether to reuse.

        Every argument but ``progress`` and ``cancel`` is a plain JSON value. ``progress`` receives
        :mod:`reuse.advise.events`; setting ``cancel`` (a ``threading.Event``) stops the run: the runs that
        finished are kept and the result comes back normally with ``stopped == "cancelled"`` (and nothing
        is registered). ``ray``: run the candidates as Ray tasks (``"local"`` or a cluster address),
        each asking for ``ray_cpus`` CPUs and ``ray_gpus`` GPUs. ``register``: register the recommended
        network (the trained run of its first seed) as the next version of that name. ``plot``: write the
        metric-vs-depth plot there (.png, .pdf, .svg). The result's ``to_dict()`` is the ``--json`` document.
        ``check_only``: make every check that needs no training (options, head, candidates, the data against
        each) and return None. ``register_ensemble``: register every seed of the recommended network and their
        averaged-output ensemble as the next versions of that name (the ensemble last;
        ``advice.registered_ensemble``). ``shortlist``: rank the candidates first (reuse.rank, by ``metric``)
        and train only that many of the best (with scratch); with ``models`` instead of ``base`` the
        candidates are every cut of every model that pattern selects (``base`` None). See docs/rank.md.
        ``augment``, ``augment_views``: augment the training images of every run (see docs/training.md).
        """
        options = {
            k: v
            for k, v in locals().items()
            if k not in ("self", "base", "data", "progress", "cancel", "check_only")
        }
        from reuse.service.advising import advise_stored
        return advise_stored(self.store, base, data, options, progress=progress, cancel=cancel,
                             check_only=check_only)

    # -- Ranking ---------------------------------------------------------------------------------
    def rank(self, data: str, *, models: str | None = None, cuts: str | None = None,
             blocks: str | None = None, match: str = "full", metric: str | None = None,
             regression: bool = False, label: str | int | None = None, relabel: bool = False,
             budget: float | None = None, memory_mb: float | None = None, ray: str | None = None,
             ray_cpus: float = 1.0, plot: str | None = None, progress: Any = None, cancel: Any = None,
             check_only: bool = False) -> Ranking | None:
        """Score every cut of every stored model ``models`` selects (a name pattern or ``NAME:V`` list;
        default all) against the labels of ``data``, without training, and rank them with the raw-input
        baseline (see reuse.rank and docs/rank.md).

        ``cuts``: ``auto`` (the advisor's candidates) or scope patterns separated by ``;``. ``blocks``: a
        block pattern instead. ``metric``: ``auto``, a score, or several. ``budget``: seconds. ``memory_mb``:
        the most the kept features and their scoring may take (default ``$REUSE_MEMORY_MB`` or 2048).
        ``ray``: each model as a Ray task. ``plot``: write the plot there. ``progress`` receives
        reuse.rank's events; setting ``cancel`` stops it (``stopped == "cancelled"``). ``check_only``: make
        every check that reads no weight and return None. The result's ``to_dict()`` is the ``--json``
        document."""
        options = {k: v for k, v in locals().items()
                   if k not in ("self", "data", "progress", "cancel", "check_only")}
        from reuse.rank.options import rank_stored
        return rank_stored(self.store, data, options, progress=progress, cancel=cancel, check_only=check_only)

    # -- Serving and jobs ------------------------------------------------------------------------
    def configure_serving(self, options: ServingOptions | None = None, settings: StateSettings | None = None
                          ) -> None:
        """Settings of the server this service backs (see :meth:`ServerState.configure`)."""
        self.state.configure(options, settings)

    def model_signature(self, ref: str) -> ModelSignature:
        """Inputs and outputs of ``ref`` (loading it into the serving cache)."""
        return self.state.engine.signature(ref)

    def serving_runtime(self, ref: str) -> RuntimeChoice:
        """The runtime (onnx or keras) serving ``ref`` and why (loading it into the serving cache)."""
        return self.state.engine.runtime(ref)

    async def infer_on_loop(self, ref: str, decode: Callable[[ModelSignature], tuple[list[np.ndarray], D]],
                            pool: Executor | None = None, *, decode_in_pool: bool = False
                            ) -> tuple[ModelSignature, list[np.ndarray], D]:
        """One inference from a coroutine on the server's event loop, the data plane of both wire
        adapters (gRPC and HTTP): lookup, (re)load, ``decode`` (the adapter's checks against the
        signature; in ``pool`` with ``decode_in_pool``), batching (see :meth:`InferenceEngine.infer_on_loop`).
        Loads run in ``pool``."""
        return await self.state.engine.infer_on_loop(ref, decode, pool, decode_in_pool=decode_in_pool)

    def infer(self, ref: str,
              inputs: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> InferResult:
        """Run ``ref`` on one array, a list in input order, or a dict by input name."""
        from reuse.graph.signature import input_arrays

        arrays = input_arrays(self.model_signature(ref) if isinstance(inputs, Mapping) else None, inputs)
        return self.state.engine.infer(ref, arrays)

    def infer_images(self, ref: str, images: Sequence[bytes]) -> InferResult:
        """Run an image model on encoded images (PNG, JPEG, BMP, GIF), decoded and resized as the server
        decodes BYTES inputs (reuse.serving.image_inputs); the result's signature carries the class names."""
        from reuse.serving.image_inputs import decode_images, image_input

        sig = self.model_signature(ref)
        spec, target = image_input(sig)
        batch = decode_images("BYTES", [len(images)], list(images), target, name=spec.name)
        return self.state.engine.infer(sig.ref, [batch])

    def describe_model(self, ref: str, *, scope: str | None = None, match: str = "full") -> ModelDescription:
        from reuse.store.describe import describe
        return describe(self.store, ref, scope=scope, match=match)

    def build_job(self, params: dict[str, Any], *, wait: bool = True,
                  timeout: float | None = None) -> JobRecord:
        """Run the ``build`` job kind; by default wait for it and return the finished record."""
        record = self.start_job("build", params)
        return self.state.jobs.wait(record.id, timeout) if wait else record

    def job_events(self, job_id: str, *, after_seq: int = 0, timeout: float | None = None
                   ) -> tuple[list[JobEvent], bool]:
        return self.state.jobs.events(job_id, after_seq, timeout)

    def serving_stats(self) -> dict[str, Any]:
        return self.state.serving_stats()

    def close(self, *, job_timeout: float = 5.0) -> list[str]:
        """Stop serving: mark running jobs interrupted, unload models. Returns the interrupted job ids."""
        return self.state.close(job_timeout=job_timeout)
