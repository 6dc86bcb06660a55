"""The job kinds this package ships (:func:`builtin_kinds`), handed to a job manager by whoever makes it.

Each kind calls the same facade method the CLI calls (the facade is injected, never imported here); this
module only turns job parameters into that call, training events into job progress, and the outcome into a
JSON result. Parameters are checked when the job is started (``validate``), so a bad one is INVALID_ARGUMENT
(or NOT_FOUND) at once rather than a failed job later. Each kind's validator also makes every check of its
work that needs no training (patterns against the model's layers, the head, the data against the model),
through the same code the work runs, so no job starts that is bound to fail on its input.

Data: a job names an uploaded dataset (:class:`reuse.store.uploads.DatasetStore`) or a ``builtin:`` spec.
Any other path is refused unless it lies inside the store's datasets folder: a client must not make
the server read a file of its choosing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from reuse.errors import Cancelled, InvalidInput
from reuse.jobs import rank_kind
from reuse.jobs.records import Progress
from reuse.jobs.registry import JobKinds
from reuse.text import echo

_STR, _INT, _FLOAT, _BOOL, _DICT, _INTS = (
    "a string",
    "an integer",
    "a number",
    "true or false",
    "a mapping",
    "a list of integers",
)
_STRS = "a list of strings"
_FLOATS = "a list of numbers"
# The one list of the TrainConfig fields a train or fine-tune job (and so a TrainRequest) carries, by
# name and expected type; ``cache`` travels as ``no_cache``. The remote client and the CLI read it.
TRAIN_OPTIONS = {"epochs": _INT, "batch_size": _INT, "optimizer": _STR, "lr": _FLOAT, "momentum": _FLOAT,
                 "nesterov": _BOOL, "clipnorm": _FLOAT, "clipvalue": _FLOAT, "early_stopping": _INT,
                 "seed": _INT, "val_split": _FLOAT, "data_parallel": _BOOL, "frozen_mode": _STR,
                 "augment": _STR, "augment_views": _INT}
TRAIN_PARAMS = {"model": _STR, "data": _STR, "val": _STR, "label": _STR, "relabel": _BOOL, "seeds": _INT,
                "no_cache": _BOOL, "description": _STR, "ensemble": _BOOL, **TRAIN_OPTIONS}
FINETUNE_PARAMS = {**TRAIN_PARAMS, "unfreeze": _STR, "match": _STR}
BUILD_PARAMS = {"name": _STR, "base": _STR, "reuse": _STR, "trainable": _STR, "match": _STR, "head": _STR,
                "classes": _INT, "regression": _BOOL, "outputs": _INT, "input_shape": _INTS,
                "description": _STR, "tags": _DICT, "seed": _INT, "exits": _STRS, "preprocess": _STR}
EVALUATE_PARAMS = {"model": _STR, "data": _STR, "label": _STR, "relabel": _BOOL}


def _is(value: Any, expected: str) -> bool:
    if expected == _STR:
        return isinstance(value, str)
    if expected == _BOOL:
        return isinstance(value, bool)
    if expected == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == _FLOAT:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == _DICT:
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    if expected == _STRS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if expected == _FLOATS:
        return isinstance(value, list) and all(_is(v, _FLOAT) for v in value)
    return isinstance(value, list) and all(_is(v, _INT) for v in value)


def check_params(kind: str, params: Mapping[str, Any], spec: Mapping[str, str],
                 required: tuple[str, ...]) -> None:
    """Refuse unknown, missing or mistyped parameters, naming the field.

    Raises:
        InvalidInput: ``<kind> job: parameter 'epochs' is 'ten'; expected an integer``.
    """
    for key, value in params.items():
        if key == "store":
            continue
        if key not in spec:
            raise InvalidInput(f"{kind} job: unknown parameter {echo(key)}; expected some of "
                               f"{', '.join(sorted(spec))}")
        if not _is(value, spec[key]):
            raise InvalidInput(f"{kind} job: parameter {key!r} is {echo(value)}; expected {spec[key]}")
    for key in required:
        if params.get(key) in (None, ""):
            raise InvalidInput(f"{kind} job: parameter {key!r} is required")
    for key in ("epochs", "batch_size", "seeds", "classes", "outputs"):
        if key in params and params[key] < 1:
            raise InvalidInput(f"{kind} job: parameter {key!r} is {params[key]}; expected an integer >= 1")


def resolve_data(store_root: str | Path, spec: str, field: str = "data") -> str:
    """The data spec a job may load: ``builtin:...`` as given, an uploaded dataset's name as its file.

    Raises:
        NotFound: no uploaded dataset of that name.
        InvalidInput: any other path (unless inside the store's datasets folder).
    """
    from reuse.data.builtin import PREFIX
    from reuse.names import NAME_RE
    from reuse.store import ModelStore
    from reuse.store.uploads import DatasetStore

    if spec.startswith(PREFIX):
        return spec
    datasets = DatasetStore(ModelStore(store_root))
    if NAME_RE.fullmatch(spec) and ".." not in spec:
        return str(datasets.path(spec))
    folder = datasets.dir.resolve()
    path = Path(spec).resolve()
    if path.is_relative_to(folder) and path.is_file():
        return str(path)
    raise InvalidInput(f"parameter {field!r} is {echo(spec)}: expected the name of an uploaded dataset or "
                       "builtin:NAME; the server reads no other files")


def _train_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """TrainConfig field values, as the CLI's options give them."""
    out = {k: params[k] for k in TRAIN_OPTIONS if params.get(k) is not None}
    if params.get("no_cache"):
        out["cache"] = False
    return out


# -- train and fine-tune -------------------------------------------------------------------------
def _validate_fit(kind: str, spec: Mapping[str, str], required: tuple[str, ...]) -> Callable[..., None]:
    def validate(svc: Any, params: dict[str, Any]) -> None:
        check_params(kind, params, spec, required)
        data = resolve_data(params["store"], params["data"])
        val = resolve_data(params["store"], params["val"], "val") if params.get("val") else None
        if kind == "finetune" and params.get("match", "full") not in ("full", "prefix"):
            raise InvalidInput(f"finetune job: parameter 'match' is {echo(params['match'])}; expected full "
                               "or prefix")
        if params.get("ensemble") and int(params.get("seeds") or 1) < 2:
            raise InvalidInput(f"{kind} job: parameter 'ensemble' needs 'seeds' >= 2")
        svc.check_fit(params["model"], data, unfreeze=params.get("unfreeze") or None,
                      match=params.get("match") or "full", val=val, label=params.get("label") or None,
                      relabel=bool(params.get("relabel")), options=_train_options(params))

    return validate


def _fit(svc: Any, params: dict[str, Any], progress: Progress, cancel: threading.Event, *,
         unfreeze: bool) -> dict[str, Any]:
    from reuse.jobs.progress import job_progress

    common = {"val": resolve_data(params["store"], params["val"], "val") if params.get("val") else None,
              "label": params.get("label") or None, "relabel": bool(params.get("relabel")),
              "options": _train_options(params), "seeds": int(params.get("seeds") or 1),
              "progress": job_progress(progress, cancel), "cancel": cancel,
              "description": params.get("description") or None, "ensemble": bool(params.get("ensemble"))}
    data = resolve_data(params["store"], params["data"])
    if unfreeze:
        outcome = svc.finetune_model(params["model"], params["unfreeze"], data,
                                     match=params.get("match") or "full", **common)
    else:
        outcome = svc.train_model(params["model"], data, **common)
    return outcome.to_dict()  # has "model" and "metrics"; reuse.remote.jobs rebuilds a TrainOutcome from it


def train_job(svc: Any, params: dict[str, Any], progress: Progress,
              cancel: threading.Event) -> dict[str, Any]:
    """``Service.train_model`` as a job. Result: ``TrainOutcome.to_dict()`` (model, metrics, history, ...)."""
    return _fit(svc, params, progress, cancel, unfreeze=False)


def finetune_job(svc: Any, params: dict[str, Any], progress: Progress,
                 cancel: threading.Event) -> dict[str, Any]:
    """``Service.finetune_model`` as a job; the same result as ``train``."""
    return _fit(svc, params, progress, cancel, unfreeze=True)


# -- build ---------------------------------------------------------------------------------------
def _head(kind: str, params: Mapping[str, Any]) -> Any:
    """The ``head`` parameter: the short spec or a head file's JSON/YAML text (reuse.heads says which)."""
    from reuse.heads import head_from_text

    return head_from_text(params.get("head") or "", where=f"{kind} job: parameter 'head'")


def _build_args(params: Mapping[str, Any]) -> dict[str, Any]:
    shape = params.get("input_shape")
    return {"head": _head("build", params), "classes": params.get("classes"),
            "regression": bool(params.get("regression")), "outputs": params.get("outputs"),
            "trainable": params.get("trainable") or None, "match": params.get("match") or "full",
            "input_shape": tuple(None if d == -1 else d for d in shape) if shape else None,
            "description": params.get("description") or "", "seed": params.get("seed"),
            "tags": params.get("tags") or None, "exits": params.get("exits") or None,
            "preprocess": params.get("preprocess") or None}


def _validate_build(svc: Any, params: dict[str, Any]) -> None:
    """The checks of ``Service.build`` that need no weights: the scopes against the base's layer paths
    (``reuse``, then ``trainable`` among the reused ones), the selection as a part of the graph (gaps,
    exits), the preprocessing stage against the new input and the head with its output layer."""
    from reuse.build import plan_build, plan_head, plan_preprocess
    from reuse.store import check_name

    check_params("build", params, BUILD_PARAMS, ("name", "base", "reuse"))
    check_name(params["name"])
    args = _build_args(params)
    store = svc.store
    base = store.info(params["base"]).ref
    plan_build(store, base, params["reuse"], trainable=args["trainable"], match=args["match"],
               exits=args["exits"])
    if args["preprocess"] is not None:
        plan_preprocess(store, base, params["reuse"], args["preprocess"], match=args["match"],
                        exits=args["exits"], input_shape=args["input_shape"])
    plan_head(args["head"], classes=args["classes"], regression=args["regression"], outputs=args["outputs"])


def build_job(svc: Any, params: dict[str, Any], progress: Progress,
              cancel: threading.Event) -> dict[str, Any]:
    """``Service.build`` as a job. Result: ``{"model": "NAME:V", "metrics": {}, "lineage": {...}, "warnings":
    [...]}`` (warnings: the lineage's, e.g. a keras.applications base reused without its preprocessing)."""
    if cancel.is_set():
        raise Cancelled("build cancelled before it started")
    progress({"message": f"building {params['name']} from {params['base']}"})
    info = svc.build(params["name"], params["base"], params["reuse"], **_build_args(params))
    return {"model": info.ref, "metrics": dict(info.metrics or {}), "lineage": info.lineage,
            "warnings": list((info.lineage or {}).get("warnings") or [])}


# -- evaluate ------------------------------------------------------------------------------------
def _validate_evaluate(svc: Any, params: dict[str, Any]) -> None:
    check_params("evaluate", params, EVALUATE_PARAMS, ("model", "data"))
    resolve_data(params["store"], params["data"])
    svc.model_info(params["model"])


def evaluate_job(svc: Any, params: dict[str, Any], progress: Progress,
                 cancel: threading.Event) -> dict[str, Any]:
    """``Service.evaluate_model`` as a job. Result: its dict, with ``data`` as the client gave it."""
    result = svc.evaluate_model(params["model"], resolve_data(params["store"], params["data"]),
                                label=params.get("label") or None, relabel=bool(params.get("relabel")))
    return {**result, "data": params["data"]}


# -- verify --------------------------------------------------------------------------------------
def verify_store(params: dict[str, Any], progress: Progress, cancel: threading.Event) -> dict[str, Any]:
    """The store's own check (``ModelStore.check``: every checksum, and the index), as a job.

    ``params["models"]`` limits the verdict to those names. Returns ``{"checked": N, "corrupt":
    {"name:version": "why"}, "ok": bool, "index_problems": bool}``.
    """
    from reuse.store import ModelStore

    if cancel.is_set():
        raise Cancelled("verify cancelled before it started")
    names = params.get("models")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise InvalidInput(f"verify job: parameter 'models' is {names!r}; expected a list of model names")
    report = ModelStore(params["store"]).check()
    files = [f for f in report.files if names is None or f.ref.partition(":")[0] in names]
    corrupt = {f.ref: f.problem or "damaged" for f in files if not f.ok}
    progress({"epoch": 1, "epochs": 1, "message": f"checked {len(files)} version(s)",
              "metrics": {"corrupt": float(len(corrupt))}})
    return {"checked": len(files), "corrupt": corrupt, "ok": report.ok,
            "index_problems": report.index_problems}


# -- advise --------------------------------------------------------------------------------------
# Every Service.advise option a client may set; not ``plot`` or ``head_file``, which name server files.
ADVISE_PARAMS = {"model": _STR, "data": _STR, "val": _STR, "val_split": _FLOAT, "label": _STR,
                 "relabel": _BOOL, "head": _STR, "classes": _INT, "regression": _BOOL, "depths": _STR,
                 "scopes": _STR, "match": _STR, "blocks": _STR, "seeds": _INT, "seed": _INT, "epochs": _INT,
                 "patience": _INT, "batch_size": _INT, "optimizer": _STR, "lr": _FLOAT, "finetune_lr": _FLOAT,
                 "finetune": _BOOL, "budget_minutes": _FLOAT, "jobs": _INT, "min_margin": _FLOAT,
                 "register": _STR, "register_ensemble": _STR, "description": _STR, "ray": _STR,
                 "ray_cpus": _FLOAT, "ray_gpus": _FLOAT, "shortlist": _INT, "models": _STR, "metric": _STR}


def _advise_args(params: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``Service.advise`` from the job parameters (data resolved, head parsed)."""
    args = {k: v for k, v in params.items() if k in ADVISE_PARAMS and k not in ("model", "data")}
    if params.get("val"):
        args["val"] = resolve_data(params["store"], params["val"], "val")
    if params.get("head"):
        args["head"] = _head("advise", params).to_string()
    return args


def _validate_advise(svc: Any, params: dict[str, Any]) -> None:
    """The parameters' types, then ``Service.advise(check_only=True)``: options, head, candidates and the
    data against each candidate, without training."""
    depths = params.get("depths")
    checked = params
    if isinstance(depths, list) and all(_is(d, _INT) for d in depths):
        checked = {k: v for k, v in params.items() if k != "depths"}
    check_params("advise", checked, ADVISE_PARAMS, ("data",) if params.get("models") else ("model", "data"))
    data = resolve_data(params["store"], params["data"])
    svc.advise(params.get("model") or None, data, **_advise_args(params), check_only=True)


def advise_job(svc: Any, params: dict[str, Any], progress: Progress,
               cancel: threading.Event) -> dict[str, Any]:
    """``Service.advise`` as a job: ``model`` and ``data`` from the request, the other keys of
    ``options_json`` as its keyword arguments. Progress: one event per finished run (``epoch``/``epochs``
    count runs; ``metrics`` holds its score). Result: ``Advice.to_dict()`` (``registered`` is also given
    as ``model``). A cancelled job raises Cancelled and registers nothing.
    """
    from reuse.advise.events import AdviceFinished, AdviceStarted, RunFinished

    metric = ""

    def relay(ev: Any) -> None:
        nonlocal metric
        if isinstance(ev, AdviceStarted):
            metric = ev.metric
            progress({"epoch": 0, "epochs": ev.runs,
                      "message": f"advise: {ev.runs} runs ({len(ev.candidates)} "
                      f"candidates x {len(ev.seeds)} seeds) on {ev.jobs} job(s)"})
        elif isinstance(ev, RunFinished):
            progress({"epoch": ev.done, "epochs": ev.total, "metrics": {metric: ev.score},
                      "message": f"{ev.candidate}, seed {ev.seed}: {metric} {ev.score:.4f} "
                                 f"({ev.seconds:.2f} s)"})
        elif isinstance(ev, AdviceFinished) and ev.stopped:
            progress({"message": f"advise stopped ({ev.stopped}) after {ev.done} of {ev.total} runs"})

    advice = svc.advise(params.get("model") or None, resolve_data(params["store"], params["data"]),
                        **_advise_args(params), progress=relay, cancel=cancel)
    if advice.stopped == "cancelled":
        done = sum(len(r.scores) for r in advice.rows)
        raise Cancelled(f"advise cancelled after {done} finished runs; nothing was registered")
    return {"model": advice.registered, **advice.to_dict()}


# -- ensemble -------------------------------------------------------------------------------------
ENSEMBLE_PARAMS = {"name": _STR, "members": _STRS, "weights": _FLOATS, "vote": _BOOL,
                   "average_weights": _BOOL, "data": _STR, "label": _STR, "relabel": _BOOL,
                   "description": _STR, "tags": _DICT}


def _ensemble_args(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"weights": params.get("weights") or None, "vote": bool(params.get("vote")),
            "average_weights": bool(params.get("average_weights")),
            "data": resolve_data(params["store"], params["data"]) if params.get("data") else None,
            "label": params.get("label") or None, "relabel": bool(params.get("relabel")),
            "description": params.get("description") or "", "tags": params.get("tags") or None}


def _validate_ensemble(svc: Any, params: dict[str, Any]) -> None:
    """``Service.ensemble(check_only=True)``: the members exist and agree, the weights, the method."""
    check_params("ensemble", params, ENSEMBLE_PARAMS, ("name", "members"))
    svc.ensemble(params["name"], params["members"], **_ensemble_args(params), check_only=True)


def ensemble_job(svc: Any, params: dict[str, Any], progress: Progress,
                 cancel: threading.Event) -> dict[str, Any]:
    """``Service.ensemble`` as a job. Result: ``{"model": "NAME:V", "metrics": {...}, "lineage": {...}}``."""
    if cancel.is_set():
        raise Cancelled("ensemble cancelled before it started")
    progress({"message": f"combining {', '.join(params['members'])} into {params['name']}"})
    info = svc.ensemble(params["name"], params["members"], **_ensemble_args(params))
    return {"model": info.ref, "metrics": dict(info.metrics or {}), "lineage": info.lineage}


def builtin_kinds(service_for: Callable[[str], Any]) -> JobKinds:
    """The kinds this package ships, in a fresh table for one :class:`reuse.jobs.JobManager`.

    Args:
        service_for: the facade a kind calls, given the store folder (``params["store"]``); the
            service passes its own class, so this module never imports it.
    """

    def bound(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda params, *rest: fn(service_for(params["store"]), params, *rest)

    kinds = JobKinds()
    kinds.register("verify", verify_store)
    kinds.register("train", bound(train_job),
                   validate=bound(_validate_fit("train", TRAIN_PARAMS, ("model", "data"))))
    kinds.register("finetune", bound(finetune_job),
                   validate=bound(_validate_fit("finetune", FINETUNE_PARAMS, ("model", "data", "unfreeze"))))
    kinds.register("build", bound(build_job), validate=bound(_validate_build))
    kinds.register("evaluate", bound(evaluate_job), validate=bound(_validate_evaluate))
    kinds.register("advise", bound(advise_job), validate=bound(_validate_advise))
    kinds.register("ensemble", bound(ensemble_job), validate=bound(_validate_ensemble))
    kinds.register("rank", bound(partial(rank_kind.rank_job, resolve=resolve_data)),
                   validate=bound(partial(rank_kind.validate_rank, check=check_params, resolve=resolve_data)))
    return kinds
