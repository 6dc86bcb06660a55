"""The facade that both the CLI and the gRPC servicers call.

Each method takes plain values, calls the core, and returns plain values or core objects. No Click,
no gRPC, no printing here. Sections are grouped by area so they grow independently.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reuse.config import store_root
from reuse.errors import FailedPrecondition, InvalidInput
from reuse.jobs.kinds import builtin_kinds
from reuse.store import CheckReport, LayerInfo, ModelInfo, ModelStore, check_name
from reuse.train.output import Prediction, PretrainOutcome, Report, TrainOutcome

if TYPE_CHECKING:
    import numpy as np

    from reuse.advise import Advice
    from reuse.describe import ModelDescription
    from reuse.heads import HeadSpec
    from reuse.jobs import JobEvent, JobManager, JobRecord
    from reuse.layer_table import LayerTable
    from reuse.serving.engine import InferenceEngine, InferResult, ServingOptions
    from reuse.serving.signature import ModelSignature
    from reuse.uploads import DatasetInfo, Upload


class Service:
    """Operations on one model store."""

    def __init__(self, store: str | os.PathLike[str] | None = None) -> None:
        self.store = ModelStore(store_root(store))
        self._engine: InferenceEngine | None = None
        self._jobs: JobManager | None = None
        self._serving_lock = threading.Lock()
        self._serving_options: ServingOptions | None = None
        self._job_workers = 2
        # The kinds its job manager runs; the built-in kinds call back into this class for their store.
        self.job_kinds = builtin_kinds(type(self))
        self.max_upload_bytes = 2 * 1024**3
        self.allow_unsafe_uploads = False

    # ---------------------------------------------------------------------------------------
    # Store
    # ---------------------------------------------------------------------------------------
    @property
    def store_root(self) -> Path:
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
        return self.store.load(ref, safe_mode=not unsafe)

    def delete_version(self, ref: str) -> ModelInfo:
        """Delete one version (``NAME:VERSION``), and drop it from the serving cache if loaded."""
        info = self.store.delete(ref)
        if self._engine is not None:
            self._engine.forget(info.ref)
        return info

    def export_model(self, ref: str, out: str | os.PathLike[str], *, overwrite: bool = False,
                     unsafe: bool = False) -> Path:
        return self.store.export(ref, out, overwrite=overwrite, safe_mode=not unsafe)

    def check_store(self, *, repair: bool = False) -> CheckReport:
        return self.store.check(repair=repair)

    # ---------------------------------------------------------------------------------------
    # Selection and building
    # ---------------------------------------------------------------------------------------
    def layer_table(self, ref: str, scope: str | None = None, match: str = "full") -> LayerTable:
        """The layers of ``ref``; with ``scope``, a dry run of the selection (see reuse.layer_table)."""
        from reuse.layer_table import layer_table

        return layer_table(self.store, ref, scope, match)

    def build(
        self,
        new_name: str,
        base_ref: str,
        reuse: str,
        *,
        head: str | HeadSpec | None = None,
        head_file: str | os.PathLike[str] | None = None,
        classes: int | None = None,
        regression: bool | int = False,
        trainable: str | None = None,
        match: str = "full",
        input_shape: tuple[int | None, ...] | None = None,
        description: str = "",
        seed: int | None = None,
        tags: dict[str, str] | None = None,
        exits: Sequence[str] | None = None,
    ) -> ModelInfo:
        """Build a network from the layers of ``base_ref`` that ``reuse`` selects, plus a head, and
        register it as the next version of ``new_name`` with its lineage (see reuse.build).

        ``head`` is a spec string or a parsed HeadSpec (the build job parses a head file's text)."""
        from reuse.build import build_network
        from reuse.errors import InvalidInput
        from reuse.heads import HeadSpec, load_head_file, parse_head
        from reuse.store import check_name

        check_name(new_name)
        if head is not None and head_file is not None:
            raise InvalidInput("give either a head spec or a head file, not both")
        if head_file is not None:
            spec = load_head_file(head_file)
        else:
            spec = head if isinstance(head, HeadSpec) else parse_head(head or "")
        built = build_network(self.store, base_ref, reuse, head=spec, classes=classes, regression=regression,
                              trainable=trainable, match=match, input_shape=input_shape, name=new_name, seed=seed,
                              exits=exits)
        return self.store.register(built.model, new_name, description=description, tags=tags,
                                   lineage=built.lineage)

    def ensemble(self, new_name: str, members: str | Sequence[str], *, weights: str | Sequence[float] | None = None,
                 vote: bool = False, average_weights: bool = False, data: str | None = None,
                 label: str | int | None = None, relabel: bool = False, description: str = "",
                 tags: dict[str, str] | None = None, check_only: bool = False) -> ModelInfo | None:
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
            ds = self._load_data(data, label=label, relabel=relabel, class_names=first.class_names)
        built = build_ensemble(self.store, refs, weights=weight_list, vote=vote, average=average_weights,
                               name=new_name, data=ds, check_only=check_only)
        if built is None:
            return None
        return self.store.register(built.model, new_name, description=description or built.description, tags=tags,
                                   class_names=built.class_names, metrics=built.metrics, lineage=built.lineage)

    def lineage(self, ref: str) -> list[dict[str, Any]]:
        """Ancestry of ``ref``, newest first (see reuse.lineage.ancestry)."""
        from reuse.lineage import ancestry

        return ancestry(self.store, ref)

    # ---------------------------------------------------------------------------------------
    # Training, fine-tuning, evaluation, prediction, pretraining
    # ---------------------------------------------------------------------------------------
    def _load_data(self, spec: str, *, label: str | int | None = None, relabel: bool = False,
                   class_names: list[str] | None = None, require_labels: bool = True,
                   has_label: bool = True) -> Any:
        from reuse.data import load_data

        return load_data(spec, label=label, relabel_labels=relabel, require_labels=require_labels,
                         class_names=class_names, has_label=has_label)

    def _fit_inputs(self, ref: str, data: str, *, unfreeze: str | None, val: str | None,
                    label: str | int | None, relabel: bool, config: Any,
                    options: dict[str, Any] | None) -> tuple[ModelInfo, Any, Any, Any, Any]:
        """The parent's info, training and validation data, config and model, as ``_fit`` uses them."""
        from reuse.train.config import TrainConfig

        parent = self.store.info(ref)
        names = parent.class_names
        ds = self._load_data(data, label=label, relabel=relabel, class_names=names)
        vds = self._load_data(val, label=label, relabel=relabel,
                              class_names=list(ds.class_names) if ds.class_names else names) if val else None
        config = config or TrainConfig.from_options(options or {}, parent.settings or {}, finetune=bool(unfreeze))
        return parent, ds, vds, config, self.store.load(parent.ref)

    def check_fit(self, ref: str, data: str, *, unfreeze: str | None = None, match: str = "full",
                  val: str | None = None, label: str | int | None = None, relabel: bool = False,
                  options: dict[str, Any] | None = None) -> None:
        """Everything about a train (or, with ``unfreeze``, fine-tune) run that can be checked without
        training: the model, the options, the data against the model (shape, finite features, labels in
        range) and the scope to unfreeze. Raises what the run would raise before its first epoch."""
        from reuse.select import select_layers
        from reuse.train.fit import layer_names, prepare_data

        _, ds, vds, config, model = self._fit_inputs(ref, data, unfreeze=unfreeze, val=val, label=label,
                                                     relabel=relabel, config=None, options=options)
        prepare_data(model, ds, vds, config)
        if unfreeze:
            select_layers(layer_names(model), unfreeze, match=match)

    def _fit(self, ref: str, data: str, *, unfreeze: str | None, match: str, val: str | None,
             label: str | int | None, relabel: bool, config: Any, options: dict[str, Any] | None,
             seeds: int, progress: Any, cancel: Any, description: str | None,
             ensemble: bool = False) -> TrainOutcome:
        from reuse.train import train_seeds
        from reuse.train.records import train_record

        if ensemble and seeds < 2:
            raise InvalidInput(f"--ensemble needs --seeds 2 or more (an ensemble of the seeds); got --seeds {seeds}")
        parent, ds, vds, config, model = self._fit_inputs(ref, data, unfreeze=unfreeze, val=val, label=label,
                                                          relabel=relabel, config=config, options=options)
        names = parent.class_names
        base_lr = parent.settings.get("lr") if parent.settings else None
        res = train_seeds(model, ds, config, seeds, val=vds, finetune_scope=unfreeze, match=match,
                          base_lr=base_lr, progress=progress, cancel=cancel)
        first = res.first
        op = "finetune" if unfreeze else "train"
        extra = {"unfreeze": unfreeze, "match": match} if unfreeze else {}
        record = train_record(first, op=op, data=data, val=val, parent_ref=parent.ref,
                              parent_lineage=parent.lineage, seeds=res.summary if seeds > 1 else None,
                              extra_settings={"seeds": seeds, **extra})
        if seeds > 1 and res.val is not None:  # the prediction problem, and whether an ensemble remedies it
            from reuse.ensemble import mean_outputs_check

            record["metrics"]["ensemble_check"] = mean_outputs_check(
                [f"seed {r.config.seed}" for r in res.runs], [r.model for r in res.runs], res.val)
        class_names = list(first.class_names) if first.class_names else names
        info = self.store.register(first.model, parent.name, description=description or parent.description,
                                   tags=parent.tags, class_names=class_names, **record)
        outcome = TrainOutcome(info=info, parent=parent.ref, result=first, seeds=res.summary if seeds > 1 else None)
        if ensemble:
            self._register_seed_ensemble(outcome, res, parent, data=data, val=val, op=op, extra=extra,
                                         class_names=class_names, description=description)
        return outcome

    def _register_seed_ensemble(self, outcome: TrainOutcome, res: Any, parent: ModelInfo, *, data: str,
                                val: str | None, op: str, extra: dict[str, Any], class_names: list[str] | None,
                                description: str | None) -> None:
        """Register seeds 2..K (after the first, already registered) and their averaged-output ensemble as
        the next versions of the parent's name; the ensemble is scored on the runs' validation data."""
        from reuse.ensemble import build_ensemble
        from reuse.train.records import train_record

        refs = [outcome.info.ref]
        for r in res.runs[1:]:
            rec = train_record(r, op=op, data=data, val=val, parent_ref=parent.ref, parent_lineage=parent.lineage,
                               seeds=res.summary, extra_settings={"seeds": len(res.runs), **extra})
            refs.append(self.store.register(r.model, parent.name, description=description or parent.description,
                                            tags=parent.tags, class_names=class_names, **rec).ref)
        built = build_ensemble(self.store, refs, name=parent.name, data=res.val)
        assert built is not None
        text = f"ensemble of the {len(refs)} seeds of {op} {parent.ref} ({', '.join(refs)})"
        outcome.seed_models = refs
        outcome.ensemble = self.store.register(built.model, parent.name, description=text, tags=parent.tags,
                                               class_names=built.class_names, metrics=built.metrics,
                                               lineage=built.lineage)

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
        return self._fit(ref, data, unfreeze=None, match="full", val=val, label=label, relabel=relabel,
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
        return self._fit(ref, data, unfreeze=unfreeze, match=match, val=val, label=label, relabel=relabel,
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
        ds = self._load_data(data, label=label, relabel=relabel, class_names=info.class_names)
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
        ds = self._load_data(data, label=label, require_labels=False, has_label=not no_label)
        outputs = predict(self.store.load(info.ref), ds)
        pred = prediction_from_outputs(info.ref, data, outputs, info.class_names)
        if out is not None:
            write_prediction(pred, out)
        return pred

    def report_model(self, ref: str, *, plot: str | os.PathLike[str] | None = None) -> Report:
        """Learning curves (as a PNG at ``plot``) and a diagnosis of how ``ref`` was trained."""
        from reuse.train.diagnosis import diagnose
        from reuse.train.output import Report

        info = self.store.info(ref)
        units = info.output_shape[-1] if info.output_shape else None
        findings = diagnose(info.history or {}, info.metrics or {}, n_outputs=units)
        segments: list[Any] = []
        if plot is not None:
            from reuse.lineage import training_history
            from reuse.train.curves import plot_curves

            segments = training_history(self.store, info.ref)
            chance = None
            if "accuracy" in (info.history or {}) and units:
                chance = 1.0 / units if units > 1 else 0.5
            plot_curves(segments or info.history or {}, plot, title=info.ref, chance=chance)
        return Report(info=info, findings=findings, plot=str(plot) if plot is not None else None, plotted=segments)

    def pretrain_model(self, name: str, data: str, *, config: Any, test: str | None = None,
                       label: str | int | None = None, relabel: bool = False, progress: Any = None,
                       cancel: Any = None, description: str | None = None) -> PretrainOutcome:
        """Greedy layer-wise pretraining on ``data``; registers the final network as the next version
        of ``name``. ``test`` defaults to the test split of a built-in set."""
        from reuse.data.builtin import PREFIX, with_split
        from reuse.train.pretrain import pretrain
        from reuse.train.records import lineage

        check_name(name)
        ds = self._load_data(data, label=label, relabel=relabel)
        if test is None and data.startswith(PREFIX):
            test = with_split(data, "test")
        tds = self._load_data(test, label=label, relabel=relabel,
                              class_names=list(ds.class_names) if ds.class_names else None) if test else None
        res = pretrain(ds, config, test=tds, progress=progress, cancel=cancel, name=name)
        settings = {**config.to_dict(), "data": data, "test": test}
        step = {"op": "pretrain", "mode": config.mode, "layers": config.layers, "units": config.units,
                "data": data}
        info = self.store.register(
            res.model, name, description=description or f"greedy layer-wise {config.mode} pretraining",
            class_names=list(ds.class_names) if ds.class_names else None,
            metrics={**res.metrics, "depths": [r.to_dict() for r in res.table]}, history=res.history,
            settings=settings, lineage=lineage(None, None, step))
        return PretrainOutcome(info=info, result=res, test=test)

    # ---------------------------------------------------------------------------------------
    # Advisor
    # ---------------------------------------------------------------------------------------
    def advise(self, base: str, data: str, *, val: str | None = None, val_split: float | None = None,
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
               ray_cpus: float = 1.0, ray_gpus: float = 0.0) -> Advice | None:
        """Measure how many layers of ``base`` to reuse for the task of ``data``, and whether to reuse.

        Every argument but ``progress`` and ``cancel`` is a plain JSON value. ``progress`` receives
        :mod:`reuse.advise.events`; setting ``cancel`` (a ``threading.Event``) stops the run: the runs that
        finished are kept and the result comes back normally with ``stopped == "cancelled"`` (and nothing
        is registered). ``ray``: run the candidates as Ray tasks (``"local"`` or a cluster address),
        each asking for ``ray_cpus`` CPUs and ``ray_gpus`` GPUs. ``register``: register the recommended network (the trained run of its first
        seed) as the next version of that name. ``plot``: write the metric-vs-depth plot there (.png,
        .pdf, .svg). The result's ``to_dict()`` is the ``--json`` document. ``check_only``: make every check
        that needs no training (options, head, candidates, the data against each) and return None.
        ``register_ensemble``: register every seed of the recommended network and their averaged-output
        ensemble as the next versions of that name (the ensemble last; ``advice.registered_ensemble``).
        """
        from reuse.advise import AdviseConfig
        from reuse.advise import advise as run_advice
        from reuse.advise.advice import prepare_advice
        from reuse.advise.plan import expand_blocks, split_scopes
        from reuse.advise.plot import check_plot_path, plot_advice
        from reuse.advise.register import register_choice
        from reuse.heads import load_head_file, parse_head

        if register is not None:
            check_name(register)
        if register_ensemble is not None:
            check_name(register_ensemble)
            if seeds < 2:
                raise InvalidInput(f"--register-ensemble needs --seeds 2 or more; got --seeds {seeds}")
        if plot is not None:
            check_plot_path(plot)
        if head is not None and head_file is not None:
            raise InvalidInput("give either a head spec or a head file, not both")
        if val is not None and val_split is not None:
            raise InvalidInput("give validation data or a validation split, not both")
        if isinstance(scopes, str):
            scopes = split_scopes(scopes)
        if blocks is not None:
            if scopes is not None:
                raise InvalidInput("give either scopes or a block pattern, not both")
            expand_blocks(blocks)  # a malformed pattern is refused before the data are read
        spec = load_head_file(head_file) if head_file is not None else parse_head(head or "")
        given = {"val_split": val_split, "lr": lr, "finetune_lr": finetune_lr, "budget_minutes": budget_minutes,
                 "min_margin": min_margin}
        config = AdviseConfig(seeds=seeds, seed=seed, epochs=epochs, patience=patience, batch_size=batch_size,
                              optimizer=optimizer, finetune=finetune, jobs=jobs, ray=ray, ray_cpus=ray_cpus,
                              ray_gpus=ray_gpus,
                              **{k: v for k, v in given.items() if v is not None})
        self.store.resolve(base)
        ds = self._load_data(data, label=label, relabel=relabel)
        vds = self._load_data(val, label=label, relabel=relabel,
                              class_names=list(ds.class_names) if ds.class_names else None) if val else None
        if check_only:
            prepare_advice(self.store, base, ds, val=vds, head=spec, classes=classes, regression=regression,
                           depths=depths, scopes=scopes, match=match, blocks=blocks, config=config)
            return None
        advice = run_advice(self.store, base, ds, val=vds, head=spec, classes=classes, regression=regression,
                            depths=depths, scopes=scopes, match=match, blocks=blocks, config=config,
                            keep_weights="seeds" if register_ensemble else register is not None,
                            progress=progress, cancel=cancel)
        advice.data, advice.val = data, val or advice.val
        if plot is not None and any(r.scores for r in advice.rows):
            advice.plot = str(plot_advice(advice, plot))
        if register is not None and advice.recommendation is not None and advice.stopped != "cancelled":
            info = register_choice(self.store, advice, register, data=data, val=val, description=description,
                                   class_names=list(ds.class_names) if ds.class_names else None)
            advice.registered = info.ref
        if register_ensemble is not None and advice.recommendation is not None and advice.stopped != "cancelled":
            from reuse.advise.register import register_ensemble_choice

            ens = register_ensemble_choice(self.store, advice, register_ensemble, data=data, val=val,
                                           description=description,
                                           class_names=list(ds.class_names) if ds.class_names else None)
            advice.registered_ensemble = ens.ref
        return advice

    # ---------------------------------------------------------------------------------------
    # Serving and jobs
    # ---------------------------------------------------------------------------------------
    def configure_serving(self, options: ServingOptions | None = None, *, job_workers: int = 2,
                          max_upload_bytes: int = 2 * 1024**3, allow_unsafe_uploads: bool = False) -> None:
        """Settings of the server this service backs; call before the first request."""
        self._serving_options = options
        self._job_workers = job_workers
        self.max_upload_bytes = max_upload_bytes
        self.allow_unsafe_uploads = allow_unsafe_uploads

    @property
    def engine(self) -> InferenceEngine:
        with self._serving_lock:
            if self._engine is None:
                from reuse.serving.engine import InferenceEngine

                self._engine = InferenceEngine(self.store, self._serving_options)
            return self._engine

    @property
    def jobs(self) -> JobManager:
        with self._serving_lock:
            if self._jobs is None:
                from reuse.jobs import JobManager

                self._jobs = JobManager(self.store.state_dir / "jobs", self.store.root, workers=self._job_workers,
                                        kinds=self.job_kinds)
            return self._jobs

    def model_signature(self, ref: str) -> ModelSignature:
        """Inputs and outputs of ``ref`` (loading it into the serving cache)."""
        return self.engine.signature(ref)

    def cached_signature(self, ref: str) -> ModelSignature | None:
        """The signature of ``ref`` if it is loaded already, else None (never loads; cheap)."""
        return self.engine.cached_signature(ref)

    def submit_infer(self, ref: str | ModelSignature, arrays: list[np.ndarray]) -> tuple[ModelSignature, Future]:
        """Queue one inference (arrays in the model's input order) on the dynamic batcher."""
        return self.engine.submit(ref, arrays)

    def infer(self, ref: str, inputs: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> InferResult:
        """Run ``ref`` on one array, a list in input order, or a dict by input name."""
        import numpy as np

        if isinstance(inputs, Mapping):
            sig = self.model_signature(ref)
            missing = [s.name for s in sig.inputs if s.name not in inputs]
            if missing or len(inputs) != len(sig.inputs):
                raise InvalidInput(f"inputs {sorted(inputs)}; model {sig.ref} takes {[s.name for s in sig.inputs]}")
            arrays = [np.asarray(inputs[s.name]) for s in sig.inputs]
        else:
            arrays = [np.asarray(inputs)] if isinstance(inputs, np.ndarray) else [np.asarray(a) for a in inputs]
        return self.engine.infer(ref, arrays)

    def describe_model(self, ref: str, *, scope: str = "", match: str = "full") -> ModelDescription:
        from reuse.describe import describe

        return describe(self.store, ref, scope=scope, match=match)

    def open_upload(self) -> Upload:
        """A staging file in the store for a model or dataset being received."""
        from reuse.uploads import Upload

        return Upload(self.store.state_dir / "uploads", self.max_upload_bytes)

    def register_upload(self, upload: Upload, name: str, *, format: str = "h5", description: str = "",
                        tags: dict[str, str] | None = None, unsafe: bool = False) -> ModelInfo:
        """Validate a received model file and register it as the next version of ``name``."""
        from reuse.uploads import register_model_file

        if unsafe and not self.allow_unsafe_uploads:
            raise FailedPrecondition("this server refuses unsafe models (they run code when loaded); "
                                     "start it with --allow-unsafe-uploads to accept them")
        return register_model_file(self.store, upload.finish(), name, fmt=format or "h5", unsafe=unsafe,
                                   description=description, tags=tags)

    def store_dataset_upload(self, upload: Upload, name: str, *, format: str, description: str = "",
                             tags: dict[str, str] | None = None, overwrite: bool = False) -> DatasetInfo:
        from reuse.uploads import DatasetStore

        return DatasetStore(self.store).put(upload, name, fmt=format, description=description, tags=tags,
                                            overwrite=overwrite)

    def upload_model(self, chunks: Iterable[bytes], name: str, *, format: str = "h5", description: str = "",
                     tags: Mapping[str, str] | None = None, unsafe: bool = False) -> ModelInfo:
        with self.open_upload() as up:
            for chunk in chunks:
                up.write(chunk)
            return self.register_upload(up, name, format=format, description=description,
                                        tags=dict(tags) if tags is not None else None, unsafe=unsafe)

    def upload_dataset(self, chunks: Iterable[bytes], name: str, *, format: str, description: str = "",
                       tags: Mapping[str, str] | None = None, overwrite: bool = False) -> DatasetInfo:
        with self.open_upload() as up:
            for chunk in chunks:
                up.write(chunk)
            return self.store_dataset_upload(up, name, format=format, description=description,
                                             tags=dict(tags) if tags is not None else None, overwrite=overwrite)

    def list_datasets(self) -> list[DatasetInfo]:
        from reuse.uploads import DatasetStore

        return DatasetStore(self.store).list()

    def dataset_path(self, name: str) -> Path:
        from reuse.uploads import DatasetStore

        return DatasetStore(self.store).path(name)

    def start_job(self, kind: str, params: dict[str, Any]) -> JobRecord:
        return self.jobs.start(kind, params)

    def build_job(self, params: dict[str, Any], *, wait: bool = True, timeout: float | None = None) -> JobRecord:
        """Run the ``build`` job kind; by default wait for it and return the finished record."""
        record = self.jobs.start("build", params)
        return self.jobs.wait(record.id, timeout) if wait else record

    def start_train(self, params: dict[str, Any]) -> JobRecord:
        return self.jobs.start("train", params)

    def start_finetune(self, params: dict[str, Any]) -> JobRecord:
        return self.jobs.start("finetune", params)

    def start_advise(self, params: dict[str, Any]) -> JobRecord:
        return self.jobs.start("advise", params)

    def list_jobs(self, *, state: str = "", kind: str = "") -> list[JobRecord]:
        """Jobs oldest first. Without a running manager (local CLI), read the records without touching them."""
        if self._jobs is not None:
            return self.jobs.list(state=state, kind=kind)
        from reuse.jobs import read_records

        return sorted((r for r in read_records(self.store.state_dir / "jobs")
                       if (not state or r.state == state) and (not kind or r.kind == kind)),
                      key=lambda r: (r.created, r.id))

    def get_job(self, job_id: str) -> JobRecord:
        if self._jobs is not None:
            return self.jobs.get(job_id)
        from reuse.errors import NotFound

        for r in self.list_jobs():
            if r.id == job_id:
                return r
        from reuse.text import echo

        raise NotFound(f"no job {echo(job_id)} in store {self.store.root}")

    def cancel_job(self, job_id: str) -> JobRecord:
        if self._jobs is None:
            raise FailedPrecondition("jobs run inside a server; cancel them with --server HOST:PORT")
        return self.jobs.cancel(job_id)

    def job_events(self, job_id: str, *, after_seq: int = 0, timeout: float | None = None
                   ) -> tuple[list[JobEvent], bool]:
        return self.jobs.events(job_id, after_seq, timeout)

    def watch_job(self, job_id: str, *, after_seq: int = 0) -> Iterator[JobEvent]:
        """Yield the job's events until it finishes (locally without a server: its last event)."""
        if self._jobs is None:
            last = self.get_job(job_id).last_event
            yield from ([last] if last is not None else [])
            return
        while True:
            events, done = self.jobs.events(job_id, after_seq, timeout=1.0)
            yield from events
            after_seq = events[-1].seq if events else after_seq
            if done and not events:
                return

    def serving_stats(self) -> dict[str, Any]:
        engine = self._engine
        if engine is None:
            return {"models": {}, "cache_bytes": 0, "cache_limit_bytes": 0}
        return {"models": {k: vars(v) for k, v in engine.stats().items()}, "cache_bytes": engine.cache.nbytes,
                "cache_limit_bytes": engine.cache.limit_bytes}

    def close(self, *, job_timeout: float = 5.0) -> list[str]:
        """Stop serving: mark running jobs interrupted, unload models. Returns the interrupted job ids."""
        interrupted = self._jobs.shutdown(job_timeout) if self._jobs is not None else []
        if self._engine is not None:
            self._engine.close()
        return interrupted
