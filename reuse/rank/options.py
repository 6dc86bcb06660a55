"""``reuse rank`` for callers that hold plain values (``Service.rank``, hence the CLI and the rank job):
the options are checked before any data is read, then the data are loaded, the ranking runs
(:func:`reuse.rank.ranking.rank`, here or on Ray) and its plot is drawn."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reuse.errors import InvalidInput
from reuse.rank.result import Ranking
from reuse.store import ModelStore
from reuse.text import echo

# Every option of Service.rank besides the data, with what it must be (the job kind checks the same).
RANK_OPTIONS = ("models", "cuts", "blocks", "match", "metric", "regression", "label", "relabel", "budget",
                "memory_mb", "ray", "ray_cpus", "plot")


def parse_cuts(cuts: str | list[str] | None) -> list[str] | None:
    """``auto`` (or None): the advisor's candidates; else scope patterns separated by ``;`` (or, when
    there is no ``;``, by commas outside brackets), or a list of them.

    Raises:
        InvalidInput: an empty pattern, or more than 50.
    """
    from reuse.advise.plan import MAX_CANDIDATES, split_scopes

    if cuts is None or cuts == "auto":
        return None
    scopes = split_scopes(cuts) if isinstance(cuts, str) else list(cuts)
    if not scopes or any(not isinstance(s, str) or not s.strip() for s in scopes):
        raise InvalidInput(f"invalid cuts {echo(cuts)}: expected auto or scope patterns separated by ';', "
                           "e.g. 'hidden1;hidden[12]'")
    if len(scopes) > MAX_CANDIDATES:
        raise InvalidInput(f"{len(scopes)} cut scopes given; at most {MAX_CANDIDATES}")
    return scopes


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that need no data, checked and parsed: ``scopes`` from ``cuts``, the block pattern,
    the plot path, the Ray address. Returns keyword arguments for :func:`reuse.rank.ranking.rank`.

    Raises:
        InvalidInput: an unknown option, a malformed value, ``cuts`` with ``blocks``, an unwritable plot path.
        FailedPrecondition: Ray asked for but not installed.
    """
    unknown = sorted(set(options) - set(RANK_OPTIONS))
    if unknown:
        raise InvalidInput(f"unknown rank option(s) {', '.join(unknown)}; expected some of "
                           f"{', '.join(RANK_OPTIONS)}")
    scopes = parse_cuts(options.get("cuts"))
    blocks = options.get("blocks")
    if blocks is not None:
        from reuse.advise.plan import expand_blocks

        if scopes is not None:
            raise InvalidInput("give either cut scopes or a block pattern, not both")
        expand_blocks(blocks)
    if options.get("plot") is not None:
        from reuse.advise.plot import check_plot_path

        check_plot_path(options["plot"])
    if options.get("ray") is not None:
        from reuse.advise.ray_schedule import check_ray

        check_ray(options["ray"], options.get("ray_cpus") or 1.0)
    budget = options.get("budget")
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        budget = float(budget)
    return {"models": options.get("models"), "scopes": scopes, "blocks": blocks,
            "match": options.get("match") or "full", "metric": options.get("metric"),
            "regression": True if options.get("regression") else None,
            "budget_seconds": budget, "memory_mb": options.get("memory_mb") or default_memory_mb()}


def default_memory_mb() -> float:
    """See :func:`reuse.rank.ranking.default_memory_mb`."""
    from reuse.rank.ranking import default_memory_mb as default

    return default()


def rank_stored(store: ModelStore, data: str, options: Mapping[str, Any], *, progress: Any = None,
                cancel: Any = None, check_only: bool = False) -> Ranking | None:
    """``Service.rank`` on ``store``: ``options`` are its keyword arguments (plain values), ``progress``,
    ``cancel`` and ``check_only`` as there."""
    from reuse.data import load_data
    from reuse.rank.ranking import prepare_rank, rank

    kwargs = check_options(options)
    ds = load_data(data, label=options.get("label"), relabel_labels=bool(options.get("relabel")))
    if check_only:
        prepare_rank(store, ds, **kwargs)
        return None
    runner = None
    if options.get("ray") is not None:
        from reuse.rank.ray_rank import ray_runner

        runner = ray_runner(options["ray"], cpus=options.get("ray_cpus") or 1.0)
    ranking = rank(store, ds, progress=progress, cancel=cancel, runner=runner, **kwargs)
    ranking.data = data
    if options.get("plot") is not None and ranking.candidates:
        from reuse.rank.plot import plot_ranking

        ranking.plot = str(plot_ranking(ranking, options["plot"]))
    return ranking
