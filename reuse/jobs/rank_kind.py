"""The ``rank`` job kind: ``Service.rank`` on the server, started with ``StartJob(kind="rank",
params_json=...)`` (or ``Service.start_rank``), followed with ``WatchJob``.

Parameters: ``data`` (an uploaded dataset's name or ``builtin:...``; required) and the facade's options
by name: ``models``, ``cuts``, ``blocks``, ``match``, ``metric``, ``regression``, ``label``, ``relabel``,
``budget`` (seconds), ``memory_mb``, ``ray``, ``ray_cpus``. Not ``plot``, which would name a server file.
``memory_mb`` may not exceed the server's own limit (half of what its memory budget leaves): a client
cannot make the server hold more. Every check that reads no weight runs when the job is started.
Progress: one event per ranked model (``epoch`` of ``epochs`` models). Result: ``Ranking.to_dict()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from reuse.errors import Cancelled, InvalidInput
from reuse.jobs.records import Progress

# reuse.jobs.kinds registers this kind and hands in its parameter check and data resolution (so this
# module does not import it back): check(kind, params, spec, required), resolve(store_root, spec).
Check = Callable[..., None]
Resolve = Callable[[str, str], str]

_STR, _FLOAT, _BOOL = "a string", "a number", "true or false"
RANK_PARAMS = {"data": _STR, "models": _STR, "cuts": _STR, "blocks": _STR, "match": _STR, "metric": _STR,
               "regression": _BOOL, "label": _STR, "relabel": _BOOL, "budget": _FLOAT, "memory_mb": _FLOAT,
               "ray": _STR, "ray_cpus": _FLOAT}


def _rank_args(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``Service.rank`` from the job parameters (the memory limit checked)."""
    from reuse.rank.options import default_memory_mb

    limit = default_memory_mb()
    asked = params.get("memory_mb")
    if asked is not None and not 0 < asked <= limit:
        raise InvalidInput(f"rank job: parameter 'memory_mb' is {asked}; this server allows at most "
                           f"{limit:g}")
    return {k: v for k, v in params.items() if k in RANK_PARAMS and k != "data" and v is not None}


def validate_rank(svc: Any, params: dict[str, Any], *, check: Check, resolve: Resolve) -> None:
    """The parameters' types, then ``Service.rank(check_only=True)``: the options, the labels, the
    models and their cuts, and the data against each model, without a forward pass."""
    check("rank", params, RANK_PARAMS, ("data",))
    svc.rank(resolve(params["store"], params["data"]), **_rank_args(params), check_only=True)


def rank_job(svc: Any, params: dict[str, Any], progress: Progress, cancel: threading.Event, *,
             resolve: Resolve) -> dict[str, Any]:
    """``Service.rank`` as a job; a cancelled one raises Cancelled (nothing is stored either way)."""
    from reuse.rank import ModelRanked, RankStarted

    def relay(ev: Any) -> None:
        if isinstance(ev, RankStarted):
            progress({"epoch": 0, "epochs": len(ev.models), "message": f"rank: {ev.cuts} cut(s) of "
                      f"{len(ev.models)} model(s)"})
        elif isinstance(ev, ModelRanked):
            progress({"epoch": ev.done, "epochs": ev.total, "metrics": {"cuts_scored": float(ev.scored)},
                      "message": f"{ev.ref}: {ev.scored} cut(s) scored in {ev.seconds:.2f} s"
                      + (f" (stopped: {ev.stopped})" if ev.stopped else "")})

    ranking = svc.rank(resolve(params["store"], params["data"]), **_rank_args(params), progress=relay,
                       cancel=cancel)
    if ranking.stopped == "cancelled":
        raise Cancelled(f"rank cancelled after {len(ranking.candidates)} scored cut(s)")
    return {"model": "", **ranking.to_dict(), "data": params["data"]}
