"""Registering the recommended network: the model trained in the advice run, with its lineage and the
advice table in its metadata."""

from __future__ import annotations

from typing import Any

from reuse.advise.advice import Advice
from reuse.advise.runner import Unit, UnitContext, build_candidate
from reuse.errors import FailedPrecondition
from reuse.store import ModelInfo, ModelStore
from reuse.train.finetune import unfreeze_layers
from reuse.train.records import now


def rebuild_choice(store: ModelStore, advice: Advice, run: Any = None) -> tuple[Any, dict[str, Any], Any]:
    """The recommended candidate's network with the weights of its first finished seed (or of ``run``,
    one of ``advice.kept_seeds``).

    Returns:
        (model, build lineage, the run's record).

    Raises:
        FailedPrecondition: no recommendation, or its weights were not kept (``keep_weights``).
    """
    rec = advice.recommendation
    if rec is None or advice.plan is None or advice.job is None:
        raise FailedPrecondition("no candidate finished, so there is nothing to register")
    cand = rec.choice.candidate
    run = run or advice.kept.get(cand)
    if run is None or run.weights is None:
        raise FailedPrecondition(f"the weights of {cand.label} were not kept; run the advice with "
                                 "keep_weights")
    plan = advice.plan.plans[cand.depth]
    ctx = UnitContext(store, None, None)  # type: ignore[arg-type]  # building reads only the store
    model, lineage = build_candidate(ctx, advice.job, Unit(cand.depth, plan.scope, run.seed, False))
    if run.unfrozen:
        unfreeze_layers(model, run.unfrozen)
    model.set_weights(run.weights)
    return model, lineage, run


def register_choice(store: ModelStore, advice: Advice, name: str, *, data: str, val: str | None,
                    description: str | None = None, class_names: list[str] | None = None,
                    run: Any = None) -> ModelInfo:
    """Register the recommended network as the next version of ``name``.

    Lineage: for a reuse candidate, the build's (base, scope, copied layers, head) with ``operation``
    ``advise``; for training from scratch, no ``base`` (no weight was copied) but ``architecture_from``.
    Both carry ``advice`` (the chosen candidate and seed) and ``steps`` (build, train, finetune).
    Metrics: the run's final metrics plus ``advice`` (the whole table, as ``Advice.to_dict``).

    Raises:
        FailedPrecondition: as :func:`rebuild_choice`. InvalidName: a bad ``name``.
    """
    model, built, run = rebuild_choice(store, advice, run)
    cand = run.candidate
    choice = {"candidate": cand.label, "depth": cand.depth, "finetune": cand.finetune, "seed": run.seed,
              "metric": advice.metric, "score": run.score}
    steps = [{"op": "build", "at": now(), "from": advice.base, "scope": built["scope"]},
             {"op": "train", "at": now(), "data": data, "frozen": [x["name"] for x in built["layers"]]
              if cand.depth else []}]
    if cand.finetune:
        steps.append({"op": "finetune", "at": now(), "data": data, "unfrozen": list(run.unfrozen)})
    if cand.depth > 0:
        lineage = {**built, "operation": "advise", "advice": choice, "steps": steps}
    else:
        lineage = {k: v for k, v in built.items() if k != "base"}
        lineage["layers"] = [{k: v for k, v in x.items() if k != "from"} | {"trainable": True}
                             for x in built["layers"]]
        lineage.update(operation="advise", architecture_from=built["base"], advice=choice, steps=steps)
    assert advice.job is not None
    settings = {**advice.job.config.to_dict(), "seed": run.seed, "data": data, "val": val,
                "finetune_lr": advice.job.finetune_lr if cand.finetune else None, "advice": advice.settings}
    summary = advice.to_dict()
    summary.pop("settings", None)
    text = description or f"advisor's choice for {data}: {cand.label} of {advice.base}"
    return store.register(model, name, description=text, class_names=class_names,
                          metrics={**run.metrics, "advice": summary}, history=run.history or {},
                          lineage=lineage, settings=settings)


def register_ensemble_choice(store: ModelStore, advice: Advice, name: str, *, data: str, val: str | None,
                             description: str | None = None,
                             class_names: list[str] | None = None) -> ModelInfo:
    """Register every kept seed of the recommended candidate (``advice.kept_seeds``, from
    ``keep_weights="seeds"``) as versions of ``name``, as :func:`register_choice` does for one, then their
    averaged-output ensemble (reuse.ensemble) as the next version, scored on the advisor's validation data.

    Returns:
        the ensemble's info.

    Raises:
        FailedPrecondition: no recommendation, or fewer than two seeds of it kept.
    """
    from reuse.ensemble import build_ensemble

    runs = advice.kept_seeds
    if advice.recommendation is None:
        raise FailedPrecondition("no candidate finished, so there is nothing to register")
    if len(runs) < 2:
        raise FailedPrecondition("an ensemble needs two or more seeds of "
                                 f"{advice.recommendation.choice.candidate.label}; {len(runs)} finished with "
                                 "their weights kept (advise with --seeds 2 or more)")
    refs = [register_choice(store, advice, name, data=data, val=val, description=description,
                            class_names=class_names, run=run).ref for run in runs]
    built = build_ensemble(store, refs, name=name, data=advice.val_data)
    assert built is not None
    text = f"ensemble of the advisor's choice for {data}: {len(refs)} seeds ({', '.join(refs)})"
    return store.register(built.model, name, description=text, class_names=built.class_names,
                          metrics=built.metrics, lineage=built.lineage)


def register_advice(store: ModelStore, advice: Advice, *, register: str | None, register_ensemble: str | None,
                    data: str, val: str | None, description: str | None = None,
                    class_names: list[str] | None = None) -> None:
    """What an advice run was asked to register, unless it was cancelled or recommends nothing: the
    choice as ``register`` (:func:`register_choice`), its seeds and their ensemble as ``register_ensemble``
    (:func:`register_ensemble_choice`). Sets ``advice.registered`` and ``advice.registered_ensemble``."""
    if advice.recommendation is None or advice.stopped == "cancelled":
        return
    if register is not None:
        advice.registered = register_choice(store, advice, register, data=data, val=val,
                                            description=description, class_names=class_names).ref
    if register_ensemble is not None:
        advice.registered_ensemble = register_ensemble_choice(store, advice, register_ensemble, data=data,
                                                              val=val, description=description,
                                                              class_names=class_names).ref
