"""An ensemble ready to register: the network, its lineage and its metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reuse.data import Dataset, check_for_model
from reuse.ensemble.check import outputs_check
from reuse.ensemble.graph import check_vote, member_layer_name, output_ensemble
from reuse.ensemble.members import Member, load_members, parse_members, parse_weights
from reuse.ensemble.soup import average_weights, check_same_architecture
from reuse.errors import InvalidInput
from reuse.store import ModelStore
from reuse.train.infer import Predictor
from reuse.train.task import Task

METHODS = ("mean", "vote", "average_weights")


@dataclass
class BuiltEnsemble:
    """``model`` to register with ``lineage``, ``class_names``, ``metrics`` (``ensemble_check`` when
    scored on data) and a default ``description``."""

    model: Any
    lineage: dict[str, Any]
    class_names: list[str] | None
    description: str
    metrics: dict[str, Any] = field(default_factory=dict)


def ensemble_lineage(members: list[Member], weights: list[float], method: str) -> dict[str, Any]:
    """Lineage of an ensemble: ``operation`` "ensemble", ``method``, ``base`` (and ``parent``) = the first
    member, which ``reuse lineage`` follows, and ``members``: name, version, weight and, for an
    averaged-output ensemble, the nested model (``layer``) that holds the member."""
    from reuse.train.records import now

    first = members[0].info
    rows = []
    for i, (m, w) in enumerate(zip(members, weights, strict=True)):
        row: dict[str, Any] = {"name": m.info.name, "version": m.info.version, "weight": w}
        if method != "average_weights":
            row["layer"] = member_layer_name(i)
        rows.append(row)
    step = {"op": "ensemble", "at": now(), "method": method, "members": [m.ref for m in members]}
    return {"operation": "ensemble", "method": method, "base": {"name": first.name, "version": first.version},
            "parent": first.ref, "members": rows, "steps": [step]}


def build_ensemble(store: ModelStore, refs: str | list[str], *, weights: str | list[float] | None = None,
                   vote: bool = False, average: bool = False, name: str = "ensemble",
                   data: Dataset | None = None, check_only: bool = False) -> BuiltEnsemble | None:
    """Load ``refs`` (``"a:1,b:3"`` or a list), check they agree, and combine them.

    Args:
        weights: one non-negative weight per member (normalised), default equal.
        vote: majority vote of class labels instead of the mean of outputs.
        average: one network with the members' mean weights (all members must share one architecture).
        data: labelled held-out data to score each member and the ensemble on (``metrics["ensemble_check"]``).
        check_only: make every check (members, weights, agreement, architectures, vote), build nothing and
            return None.

    Raises:
        InvalidInput: both ``vote`` and ``average``; bad members or weights (see reuse.ensemble.members);
        for ``average``, differing architectures. NotFound: a member not in the store.
    """
    if vote and average:
        raise InvalidInput("give either --vote or --average-weights, not both")
    ref_list = parse_members(refs)
    w = parse_weights(weights, len(ref_list))
    members = load_members(store, ref_list)
    method = "average_weights" if average else "vote" if vote else "mean"
    if check_only:
        if average:
            check_same_architecture(members)
        else:
            check_vote(members, vote)
        if data is not None:
            check_for_model(data, members[0].model, kind=members[0].kind)
        return None
    lineage = ensemble_lineage(members, w, method)
    member_refs = [m.ref for m in members]
    scored = None
    if data is not None:  # the members' outputs before any of them becomes (or gives weights to) the result
        ds = check_for_model(data, members[0].model, kind=members[0].kind)
        scored = (ds, [Predictor(m.model)(ds.x) for m in members])
    model = average_weights(members, w) if average else output_ensemble(members, w, vote=vote, name=name)
    how = {"mean": "mean of outputs", "vote": "majority vote", "average_weights": "mean of weights"}[method]
    weighted = "" if len(set(w)) == 1 else " (weighted " + ", ".join(f"{x:.3g}" for x in w) + ")"
    metrics: dict[str, Any] = {}
    if scored is not None:
        ds, outs = scored
        metrics["ensemble_check"] = outputs_check(member_refs, outs, Predictor(model)(ds.x), ds.y,
                                                  Task.for_output(members[0].kind),
                                                  data=data.source, method=method)
    return BuiltEnsemble(model, lineage, members[0].info.class_names,
                         (f"weight average of {', '.join(member_refs)}{weighted}" if average
                          else f"ensemble of {', '.join(member_refs)}: {how}{weighted}"), metrics)
