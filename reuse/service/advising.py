"""The facade's advise operation (``Service.advise``): the options checked, the data loaded, then the
advice run as it is or, with ``shortlist``, on the candidates :mod:`reuse.rank` ranks best
(:mod:`reuse.rank.shortlist`), and the chosen network registered. It sits in the facade's package
because it joins the advisor and the ranking, which sits above it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reuse.advise.advice import Advice
from reuse.advise.options import advise_options
from reuse.data import load_data
from reuse.errors import InvalidInput
from reuse.store import ModelStore


def advise_stored(store: ModelStore, base: str | None, data: str, options: Mapping[str, Any], *,
                  progress: Any = None, cancel: Any = None, check_only: bool = False) -> Advice | None:
    """``Service.advise`` on ``store``: ``options`` are its keyword arguments (plain values; its docstring
    says what each does), ``progress``, ``cancel`` and ``check_only`` as there. With ``shortlist`` the
    candidates are ranked first and only the best are trained (:mod:`reuse.rank.shortlist`)."""
    from reuse.advise.advice import advise as run_advice
    from reuse.advise.advice import prepare_advice
    from reuse.advise.plot import plot_advice
    from reuse.advise.register import register_advice

    o = dict(options)
    label, classes, depths, description = (
        o.pop(k, None) for k in ("label", "classes", "depths", "description")
    )
    relabel, regression, match = o.pop("relabel", False), o.pop("regression", False), o.pop("match", "full")
    shortlist, models, metric = (o.pop(k, None) for k in ("shortlist", "models", "metric"))
    val, register, register_ensemble, plot, blocks = (
        o.get(k) for k in ("val", "register", "register_ensemble", "plot", "blocks")
    )
    _check_shortlist(base, shortlist, models, metric, register_ensemble)
    opts = advise_options(**o)
    spec, scopes, config = opts.head, opts.scopes, opts.config
    if base is not None:
        store.resolve(base)
    ds = load_data(data, label=label, relabel_labels=relabel)
    vds = load_data(val, label=label, relabel_labels=relabel,
                    class_names=list(ds.class_names) if ds.class_names else None) if val else None
    common = {"val": vds, "head": spec, "classes": classes, "regression": regression, "depths": depths,
              "scopes": scopes, "match": match, "blocks": blocks, "config": config}
    if shortlist is not None:
        if check_only:
            _check_shortlist_data(store, base, models, ds, scopes, blocks, match, metric)
            return None
        from reuse.rank.shortlist import part_of, shortlist_advice

        advice = shortlist_advice(store, ds, k=shortlist, base=base, models=models, metric=metric,
                                  keep_weights="seeds" if register_ensemble else register is not None,
                                  progress=progress, cancel=cancel, **common)
    elif check_only:
        prepare_advice(store, str(base), ds, **common)
        return None
    else:
        keep = "seeds" if register_ensemble else register is not None
        advice = run_advice(store, str(base), ds, keep_weights=keep, progress=progress, cancel=cancel,
                            **common)
    advice.data, advice.val = data, val or advice.val
    if plot is not None and any(r.scores for r in advice.rows):
        advice.plot = str(plot_advice(advice, plot))
    source = advice if shortlist is None else part_of(advice)
    register_advice(store, source, register=register, register_ensemble=register_ensemble, data=data,
                    val=val, description=description,
                    class_names=list(ds.class_names) if ds.class_names else None)
    advice.registered, advice.registered_ensemble = source.registered, source.registered_ensemble
    return advice


def _check_shortlist(base: str | None, shortlist: int | None, models: str | None, metric: str | None,
                     register_ensemble: str | None) -> None:
    """The shortlist options that need nothing else: one of a base and --models, a sane K."""
    from reuse.rank.shortlist import MAX_SHORTLIST

    if shortlist is None:
        if models is not None or metric is not None:
            raise InvalidInput("--models and --metric choose what --shortlist ranks; give --shortlist K too")
        if base is None:
            raise InvalidInput("give the base network (--from NAME), or --models with --shortlist K")
        return
    if isinstance(shortlist, bool) or not isinstance(shortlist, int) or not 1 <= shortlist <= MAX_SHORTLIST:
        raise InvalidInput(f"invalid shortlist {shortlist!r}: expected an integer 1..{MAX_SHORTLIST}")
    if (base is None) == (models is None):
        raise InvalidInput("--shortlist ranks the candidates of one base (--from NAME) or of the models "
                           "--models selects: give exactly one of them")
    if models is not None and register_ensemble is not None:
        raise InvalidInput("--register-ensemble is not available with --models: the seeds kept are those of "
                           "each base's own choice; give --from NAME")


def _check_shortlist_data(store: ModelStore, base: str | None, models: str | None, ds: Any, scopes: Any,
                          blocks: str | None, match: str, metric: str | None) -> None:
    """What the ranking of a shortlist checks before any pass (the rank job's own checks)."""
    from reuse.rank.ranking import prepare_rank

    prepare_rank(store, ds, models=str(store.resolve(base)) if base is not None else models, scopes=scopes,
                 blocks=blocks, match=match, metric=metric)
