"""Training a stored version into the next version of its name: load the parent and the data, fit over
seeds (:func:`reuse.train.seeds.train_seeds`), register the first seed's model with its record, and
with ``ensemble`` every seed and their averaged-output ensemble. The facade's ``train_model``,
``finetune_model`` and ``check_fit`` call these, as ``pretrain_model`` and ``report_model`` call
:func:`pretrain_version` and :func:`report_version`; the options a version inherits from how its parent was
trained are :meth:`reuse.train.config.TrainConfig.from_options`'s to decide."""

from __future__ import annotations

import os
from typing import Any

from reuse.data import load_data
from reuse.errors import InvalidInput
from reuse.store import ModelInfo, ModelStore
from reuse.train.config import TrainConfig
from reuse.train.output import PretrainOutcome, Report, TrainOutcome
from reuse.train.records import train_record


def fit_inputs(store: ModelStore, ref: str, data: str, *, unfreeze: str | None, val: str | None,
               label: str | int | None, relabel: bool, config: TrainConfig | None,
               options: dict[str, Any] | None) -> tuple[ModelInfo, Any, Any, TrainConfig, Any]:
    """The parent's info, the training and validation data, the config and the parent's model."""
    parent = store.info(ref)
    names = parent.class_names
    ds = load_data(data, label=label, relabel_labels=relabel, class_names=names)
    vds = load_data(val, label=label, relabel_labels=relabel,
                    class_names=list(ds.class_names) if ds.class_names else names) if val else None
    config = config or TrainConfig.from_options(options or {}, parent.settings or {}, finetune=bool(unfreeze))
    return parent, ds, vds, config, store.load(parent.ref)


def check_fit(store: ModelStore, ref: str, data: str, *, unfreeze: str | None = None, match: str = "full",
              val: str | None = None, label: str | int | None = None, relabel: bool = False,
              options: dict[str, Any] | None = None) -> None:
    """Everything about a train (or, with ``unfreeze``, fine-tune) run that can be checked without
    training: the model, the options, the data against the model (shape, finite features, labels in
    range) and the scope to unfreeze. Raises what the run would raise before its first epoch."""
    from reuse.graph.select import select_layers
    from reuse.train.fit import layer_names, prepare_data

    _, ds, vds, config, model = fit_inputs(store, ref, data, unfreeze=unfreeze, val=val, label=label,
                                           relabel=relabel, config=None, options=options)
    prepare_data(model, ds, vds, config)
    if unfreeze:
        select_layers(layer_names(model), unfreeze, match=match)


def fit_version(store: ModelStore, ref: str, data: str, *, unfreeze: str | None, match: str, val: str | None,
                label: str | int | None, relabel: bool, config: TrainConfig | None,
                options: dict[str, Any] | None, seeds: int, progress: Any, cancel: Any,
                description: str | None, ensemble: bool = False) -> TrainOutcome:
    """Train (``unfreeze``: fine-tune) ``ref`` and register the outcome; see the module docstring."""
    from reuse.train.seeds import train_seeds

    if ensemble and seeds < 2:
        raise InvalidInput("--ensemble needs --seeds 2 or more (an ensemble of the seeds); got "
                           f"--seeds {seeds}")
    parent, ds, vds, config, model = fit_inputs(store, ref, data, unfreeze=unfreeze, val=val, label=label,
                                                relabel=relabel, config=config, options=options)
    names = parent.class_names
    base_lr = parent.settings.get("lr") if parent.settings else None
    res = train_seeds(model, ds, config, seeds, val=vds, finetune_scope=unfreeze, match=match,
                      base_lr=base_lr, progress=progress, cancel=cancel)
    first = res.first
    op = "finetune" if unfreeze else "train"
    extra = {"unfreeze": unfreeze, "match": match} if unfreeze else {}
    if ds.skipped:  # files the data spec left out (images:...&bad=skip): recorded with the version
        extra["skipped_files"] = len(ds.skipped)
    record = train_record(first, op=op, data=data, val=val, parent_ref=parent.ref,
                          parent_lineage=parent.lineage, seeds=res.summary if seeds > 1 else None,
                          extra_settings={"seeds": seeds, **extra})
    if seeds > 1 and res.val is not None:  # the prediction problem, and whether an ensemble remedies it
        from reuse.ensemble import mean_outputs_check

        record["metrics"]["ensemble_check"] = mean_outputs_check(
            [f"seed {r.config.seed}" for r in res.runs], [r.model for r in res.runs], res.val)
    class_names = list(first.class_names) if first.class_names else names
    info = store.register(first.model, parent.name, description=description or parent.description,
                          tags=parent.tags, class_names=class_names, **record)
    outcome = TrainOutcome(info=info, parent=parent.ref, result=first,
                           seeds=res.summary if seeds > 1 else None, skipped=list(ds.skipped))
    if ensemble:
        _register_seed_ensemble(store, outcome, res, parent, data=data, val=val, op=op, extra=extra,
                                class_names=class_names, description=description)
    return outcome


def _register_seed_ensemble(store: ModelStore, outcome: TrainOutcome, res: Any, parent: ModelInfo, *,
                            data: str, val: str | None, op: str, extra: dict[str, Any],
                            class_names: list[str] | None, description: str | None) -> None:
    """Register seeds 2..K (after the first, already registered) and their averaged-output ensemble as
    the next versions of the parent's name; the ensemble is scored on the runs' validation data."""
    from reuse.ensemble import build_ensemble

    refs = [outcome.info.ref]
    for r in res.runs[1:]:
        rec = train_record(r, op=op, data=data, val=val, parent_ref=parent.ref, parent_lineage=parent.lineage,
                           seeds=res.summary, extra_settings={"seeds": len(res.runs), **extra})
        refs.append(store.register(r.model, parent.name, description=description or parent.description,
                                   tags=parent.tags, class_names=class_names, **rec).ref)
    built = build_ensemble(store, refs, name=parent.name, data=res.val)
    assert built is not None
    text = f"ensemble of the {len(refs)} seeds of {op} {parent.ref} ({', '.join(refs)})"
    outcome.seed_models = refs
    outcome.ensemble = store.register(built.model, parent.name, description=text, tags=parent.tags,
                                      class_names=built.class_names, metrics=built.metrics,
                                      lineage=built.lineage)


def pretrain_version(store: ModelStore, name: str, data: str, *, config: Any, test: str | None = None,
                     label: str | int | None = None, relabel: bool = False, progress: Any = None,
                     cancel: Any = None, description: str | None = None) -> PretrainOutcome:
    """Greedy layer-wise pretraining on ``data`` (:func:`reuse.train.pretrain.pretrain`), registered as the
    next version of ``name``; ``test`` defaults to the test split of a built-in set."""
    from reuse.data.builtin import PREFIX, with_split
    from reuse.store import check_name
    from reuse.train.pretrain import pretrain
    from reuse.train.records import lineage

    check_name(name)
    ds = load_data(data, label=label, relabel_labels=relabel)
    if test is None and data.startswith(PREFIX):
        test = with_split(data, "test")
    tds = load_data(test, label=label, relabel_labels=relabel,
                    class_names=list(ds.class_names) if ds.class_names else None) if test else None
    res = pretrain(ds, config, test=tds, progress=progress, cancel=cancel, name=name)
    settings = {**config.to_dict(), "data": data, "test": test}
    step = {"op": "pretrain", "mode": config.mode, "layers": config.layers,
            "units": config.units, "data": data}
    info = store.register(
        res.model, name, description=description or f"greedy layer-wise {config.mode} pretraining",
        class_names=list(ds.class_names) if ds.class_names else None,
        metrics={**res.metrics, "depths": [r.to_dict() for r in res.table]}, history=res.history,
        settings=settings, lineage=lineage(None, None, step))
    return PretrainOutcome(info=info, result=res, test=test)


def report_version(store: ModelStore, ref: str, *, plot: str | os.PathLike[str] | None = None) -> Report:
    """A diagnosis of how ``ref`` was trained, and its learning curves (over its lineage) as a plot."""
    from reuse.train.diagnosis import diagnose

    info = store.info(ref)
    units = info.output_shape[-1] if info.output_shape else None
    findings = diagnose(info.history or {}, info.metrics or {}, n_outputs=units, settings=info.settings or {})
    segments: list[Any] = []
    if plot is not None:
        from reuse.store.lineage import training_history
        from reuse.train.curves import plot_curves

        segments = training_history(store, info.ref)
        chance = None
        if "accuracy" in (info.history or {}) and units:
            chance = 1.0 / units if units > 1 else 0.5
        plot_curves(segments or info.history or {}, plot, title=info.ref, chance=chance)
    return Report(info=info, findings=findings, plot=str(plot) if plot is not None else None,
                  plotted=segments)
