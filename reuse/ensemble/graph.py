"""The averaged-output ensemble as one Keras functional graph over copies of its members."""

from __future__ import annotations

from typing import Any

from reuse.data.checks import last_activation
from reuse.ensemble.members import Member
from reuse.errors import InvalidInput
from reuse.keras_compat import producer_name


def _output_name(model: Any) -> str:
    return producer_name(model.outputs[0]) or "output"


def member_layer_name(index: int) -> str:
    """The name of member ``index`` (0-based) as a nested model in the ensemble: ``member1``, ..."""
    return f"member{index + 1}"


def check_vote(members: list[Member], vote: bool) -> None:
    """Refuse ``vote`` for members that are not k-class classifiers (k > 1)."""
    first = members[0]
    if vote and (first.kind.kind != "multiclass" or first.kind.units < 2):
        raise InvalidInput(f"--vote needs classifiers with two or more class outputs; member {first.ref} "
                           f"outputs {first.kind.kind} values ({first.kind.units} unit(s))")


def output_ensemble(members: list[Member], weights: list[float], *, vote: bool = False,
                    name: str = "ensemble") -> Any:
    """One network: shared inputs (named as the members' inputs) feed each member, nested as
    ``member1``, ``member2``, ...; an :class:`reuse.layers.ensemble_combine.EnsembleCombine` layer, named as
    the members' output, takes their weighted mean (or, with ``vote``, the one-hot of the most-voted class).

    The members' models become part of the graph (the caller loaded them for this); they are renamed.

    Raises:
        InvalidInput: ``vote`` for members that are not k-class classifiers (k > 1).
    """
    import keras

    from reuse.layers.ensemble_combine import EnsembleCombine

    check_vote(members, vote)
    first = members[0]
    out_name = _output_name(first.model)
    taken = {member_layer_name(i) for i in range(len(members))}
    inputs = [keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype, name=t.name) for t in first.model.inputs]
    clash = [t.name for t in first.model.inputs if t.name in taken] + (
        [out_name] if out_name in taken else []
    )
    if clash:
        raise InvalidInput(f"the members' input or output name {clash[0]!r} is the name the ensemble gives a "
                           "member; rename it")
    outs = []
    for i, m in enumerate(members):
        m.model.name = member_layer_name(i)
        outs.append(m.model(inputs if len(inputs) > 1 else inputs[0]))
    # The members' last activation, recorded so that output_kind reads the ensemble as it reads them.
    act = last_activation(first.model)
    combined = EnsembleCombine(list(weights), mode="vote" if vote else "mean", activation=act,
                               name=out_name)(outs)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], combined, name=name)
