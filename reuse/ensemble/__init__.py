"""Ensembles of stored models: one registered network that averages (or votes over) its members'
outputs, or one network whose weights are the members' mean (a "model soup").

Public API::

    parse_members(text) -> list[str];  parse_weights(text, n) -> list[float]
    load_members(store, refs) -> list[Member]          (checks they agree on inputs and outputs)
    output_ensemble(members, weights, *, vote, name) -> keras.Model
    average_weights(members, weights) -> keras.Model     (refuses differing architectures)
    ensemble_check(models, ensemble_outputs, data) -> dict   (spread of members vs the ensemble)
    build_ensemble(store, refs, ...) -> BuiltEnsemble     (model + lineage + metadata to register)
"""

from __future__ import annotations

from reuse.ensemble.build import BuiltEnsemble, build_ensemble, ensemble_lineage
from reuse.ensemble.check import ensemble_check, mean_outputs_check, outputs_check
from reuse.ensemble.graph import output_ensemble
from reuse.ensemble.members import Member, load_members, parse_members, parse_weights
from reuse.ensemble.soup import average_weights

__all__ = ["BuiltEnsemble", "Member", "average_weights", "build_ensemble", "ensemble_check",
           "ensemble_lineage", "load_members", "mean_outputs_check", "outputs_check", "output_ensemble",
           "parse_members", "parse_weights"]
