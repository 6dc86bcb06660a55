"""The facade that both the CLI and the gRPC servicers call.

Each method takes plain values, calls the core, and returns plain values or core objects. No Click,
no gRPC, no printing here. Sections are grouped by area so they grow independently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reuse.config import store_root
from reuse.store import CheckReport, LayerInfo, ModelInfo, ModelStore, check_name
from reuse.train.output import Prediction, PretrainOutcome, Report, TrainOutcome

if TYPE_CHECKING:
    from reuse.advise import Advice


def _train_config(options: dict[str, Any], parent: dict[str, Any], *, finetune: bool) -> Any:
    """A TrainConfig from plain option values; fine-tuning inherits the parent's optimizer settings."""
    from reuse.train import TrainConfig

    given = {k: v for k, v in options.items() if v is not None}
    if finetune and "optimizer" not in given and parent.get("optimizer"):
        for key in ("optimizer", "momentum", "nesterov", "batch_size"):
            if key not in given and key in parent:
                given[key] = parent[key]
    unknown = sorted(set(given) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        from reuse.errors import InvalidInput

        raise InvalidInput(f"unknown training options {unknown}; expected TrainConfig fields")
    return TrainConfig(**given)

if TYPE_CHECKING:
    from reuse.layer_table import LayerTable


class Service:
    """Operations on one model store."""

    def __init__(self, store: str | os.PathLike[str] | None = None) -> None:
        self.store = ModelStore(store_root(store))

    # ---------------------------------------------------------------------------------------
    # Store (issue 2)
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
        return self.store.delete(ref)

    def export_model(self, ref: str, out: str | os.PathLike[str], *, overwrite: bool = False,
                     unsafe: bool = False) -> Path:
        return self.store.export(ref, out, overwrite=overwrite, safe_mode=not unsafe)

    def check_store(self, *, repair: bool = False) -> CheckReport:
        return self.store.check(repair=repair)

    # ---------------------------------------------------------------------------------------
    # Selection and building (issue 3)
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
        head: str | None = None,
        head_file: str | os.PathLike[str] | None = None,
        classes: int | None = None,
        regression: bool | int = False,
        trainable: str | None = None,
        match: str = "full",
        input_shape: tuple[int | None, ...] | None = None,
        description: str = "",
        seed: int | None = None,
    ) -> ModelInfo:
        """Build a network from the layers of ``base_ref`` that ``reuse`` selects, plus a head, and
        register it as the next version of ``new_name`` with its lineage (see reuse.build)."""
        from reuse.build import build_network
        from reuse.errors import InvalidInput
        from reuse.heads import load_head_file, parse_head
        from reuse.store import check_name

        check_name(new_name)
        if head is not None and head_file is not None:
            raise InvalidInput("give either a head spec or a head file, not both")
        spec = load_head_file(head_file) if head_file is not None else parse_head(head or "")
        built = build_network(self.store, base_ref, reuse, head=spec, classes=classes, regression=regression,
                              trainable=trainable, match=match, input_shape=input_shape, name=new_name, seed=seed)
        return self.store.register(built.model, new_name, description=description, lineage=built.lineage)

    def lineage(self, ref: str) -> list[dict[str, Any]]:
        """Ancestry of ``ref``, newest first (see reuse.lineage.ancestry)."""
        from reuse.lineage import ancestry

        return ancestry(self.store, ref)

    # ---------------------------------------------------------------------------------------
    # Training, fine-tuning, evaluation, prediction, pretraining (issue 4)
    # ---------------------------------------------------------------------------------------
    def _load_data(self, spec: str, *, label: str | int | None = None, relabel: bool = False,
                   class_names: list[str] | None = None, require_labels: bool = True) -> Any:
        from reuse.data import load_data

        return load_data(spec, label=label, relabel_labels=relabel, require_labels=require_labels,
                         class_names=class_names)

    def _fit(self, ref: str, data: str, *, unfreeze: str | None, match: str, val: str | None,
             label: str | int | None, relabel: bool, config: Any, options: dict[str, Any] | None,
             seeds: int, progress: Any, cancel: Any, description: str | None) -> TrainOutcome:
        from reuse.train import train_seeds
        from reuse.train.records import train_record

        parent = self.store.info(ref)
        names = parent.class_names
        ds = self._load_data(data, label=label, relabel=relabel, class_names=names)
        vds = self._load_data(val, label=label, relabel=relabel,
                              class_names=list(ds.class_names) if ds.class_names else names) if val else None
        config = config or _train_config(options or {}, parent.settings or {}, finetune=bool(unfreeze))
        base_lr = parent.settings.get("lr") if parent.settings else None
        model = self.store.load(parent.ref)
        res = train_seeds(model, ds, config, seeds, val=vds, finetune_scope=unfreeze, match=match,
                          base_lr=base_lr, progress=progress, cancel=cancel)
        first = res.first
        op = "finetune" if unfreeze else "train"
        extra = {"unfreeze": unfreeze, "match": match} if unfreeze else {}
        record = train_record(first, op=op, data=data, val=val, parent_ref=parent.ref,
                              parent_lineage=parent.lineage, seeds=res.summary if seeds > 1 else None,
                              extra_settings={"seeds": seeds, **extra})
        class_names = list(first.class_names) if first.class_names else names
        info = self.store.register(first.model, parent.name, description=description or parent.description,
                                   tags=parent.tags, class_names=class_names, **record)
        return TrainOutcome(info=info, parent=parent.ref, result=first,
                            seeds=res.summary if seeds > 1 else None)

    def train_model(self, ref: str, data: str, *, val: str | None = None, label: str | int | None = None,
                    relabel: bool = False, config: Any = None, options: dict[str, Any] | None = None,
                    seeds: int = 1, progress: Any = None, cancel: Any = None,
                    description: str | None = None) -> TrainOutcome:
        """Train version ``ref`` on ``data`` and register the result as the next version of its name.

        Settings: a ``TrainConfig`` as ``config``, or ``options`` (plain ``TrainConfig`` field values;
        the rest default). ``progress`` receives :mod:`reuse.train.events`; setting ``cancel`` (a
        ``threading.Event``) stops the run with ``Cancelled`` and registers nothing.
        """
        return self._fit(ref, data, unfreeze=None, match="full", val=val, label=label, relabel=relabel,
                         config=config, options=options, seeds=seeds, progress=progress, cancel=cancel,
                         description=description)

    def finetune_model(self, ref: str, unfreeze: str, data: str, *, match: str = "full",
                       val: str | None = None, label: str | int | None = None, relabel: bool = False,
                       config: Any = None, options: dict[str, Any] | None = None, seeds: int = 1,
                       progress: Any = None, cancel: Any = None, description: str | None = None) -> TrainOutcome:
        """Unfreeze the layers ``unfreeze`` selects in ``ref``, train, register the next version.

        Options not given are inherited from how ``ref`` was trained (optimizer, momentum, batch
        size); the learning rate defaults to a tenth of ``ref``'s.
        """
        return self._fit(ref, data, unfreeze=unfreeze, match=match, val=val, label=label, relabel=relabel,
                         config=config, options=options, seeds=seeds, progress=progress, cancel=cancel,
                         description=description)

    def evaluate_model(self, ref: str, data: str, *, label: str | int | None = None,
                       relabel: bool = False) -> dict[str, Any]:
        """Loss and metric of ``ref`` on ``data``: ``{"model", "data", "samples", "loss", "accuracy"}``."""
        from reuse.train import evaluate

        info = self.store.info(ref)
        ds = self._load_data(data, label=label, relabel=relabel, class_names=info.class_names)
        result = evaluate(self.store.load(info.ref), ds)
        return {"model": info.ref, "data": data, **result}

    def predict_model(self, ref: str, data: str, *, label: str | int | None = None,
                      out: str | os.PathLike[str] | None = None) -> Prediction:
        """Outputs of ``ref`` for every sample of ``data`` (labels, if any, are ignored); written to
        ``out`` (.npz or .csv) when given."""
        from reuse.train import predict
        from reuse.train.output import prediction_from_outputs, write_prediction

        info = self.store.info(ref)
        ds = self._load_data(data, label=label, require_labels=False)
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
        if plot is not None:
            from reuse.train.curves import plot_curves

            plot_curves(info.history or {}, plot, title=info.ref)
        return Report(info=info, findings=findings, plot=str(plot) if plot is not None else None)

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
    # Advisor (issue 7)
    # ---------------------------------------------------------------------------------------
    def advise(self, base: str, data: str, *, val: str | None = None, val_split: float | None = None,
               label: str | int | None = None, relabel: bool = False, head: str | None = None,
               head_file: str | None = None, classes: int | None = None, regression: bool | int = False,
               depths: str | list[int] | None = None, scopes: list[str] | None = None, match: str = "full",
               seeds: int = 3, seed: int = 0, epochs: int = 200, patience: int = 10, batch_size: int = 32,
               optimizer: str = "adam", lr: float | None = None, finetune_lr: float | None = None,
               finetune: bool = True, budget_minutes: float | None = None, jobs: int = 1,
               min_margin: float | None = None, register: str | None = None, description: str | None = None,
               plot: str | None = None, progress: Any = None, cancel: Any = None) -> Advice:
        """Measure how many layers of ``base`` to reuse for the task of ``data``, and whether to reuse.

        Every argument but ``progress`` and ``cancel`` is a plain JSON value. ``progress`` receives
        :mod:`reuse.advise.events`; setting ``cancel`` (a ``threading.Event``) stops the run: the runs that
        finished are kept and the result comes back normally with ``stopped == "cancelled"`` (and nothing
        is registered). ``register``: register the recommended network (the trained run of its first
        seed) as the next version of that name. ``plot``: write the metric-vs-depth plot there (.png,
        .pdf, .svg). The result's ``to_dict()`` is the ``--json`` document.
        """
        from reuse.advise import AdviseConfig
        from reuse.advise import advise as run_advice
        from reuse.advise.plan import split_scopes
        from reuse.advise.plot import check_plot_path, plot_advice
        from reuse.advise.register import register_choice
        from reuse.errors import InvalidInput
        from reuse.heads import load_head_file, parse_head

        if register is not None:
            check_name(register)
        if plot is not None:
            check_plot_path(plot)
        if head is not None and head_file is not None:
            raise InvalidInput("give either a head spec or a head file, not both")
        if val is not None and val_split is not None:
            raise InvalidInput("give validation data or a validation split, not both")
        if isinstance(scopes, str):
            scopes = split_scopes(scopes)
        spec = load_head_file(head_file) if head_file is not None else parse_head(head or "")
        given = {"val_split": val_split, "lr": lr, "finetune_lr": finetune_lr, "budget_minutes": budget_minutes,
                 "min_margin": min_margin}
        config = AdviseConfig(seeds=seeds, seed=seed, epochs=epochs, patience=patience, batch_size=batch_size,
                              optimizer=optimizer, finetune=finetune, jobs=jobs,
                              **{k: v for k, v in given.items() if v is not None})
        self.store.resolve(base)
        ds = self._load_data(data, label=label, relabel=relabel)
        vds = self._load_data(val, label=label, relabel=relabel,
                              class_names=list(ds.class_names) if ds.class_names else None) if val else None
        advice = run_advice(self.store, base, ds, val=vds, head=spec, classes=classes, regression=regression,
                            depths=depths, scopes=scopes, match=match, config=config,
                            keep_weights=register is not None, progress=progress, cancel=cancel)
        advice.data, advice.val = data, val or advice.val
        if plot is not None and any(r.scores for r in advice.rows):
            advice.plot = str(plot_advice(advice, plot))
        if register is not None and advice.recommendation is not None and advice.stopped != "cancelled":
            info = register_choice(self.store, advice, register, data=data, val=val, description=description,
                                   class_names=list(ds.class_names) if ds.class_names else None)
            advice.registered = info.ref
        return advice
