"""Which stored models ``reuse rank`` scores, and which cuts of each.

Models: ``models`` is a list of items separated by ``,`` or ``;``; an item ``NAME:VERSION`` names one
version, any other item is a scope pattern (RE2, whole-name match) over the store's model names, each
matching name at its latest version. ``None`` means every model.

Cuts: by default the advisor's own candidates (:func:`reuse.advise.plan.plan_candidates`): depth ``k``
reuses the layers up to the ``k``-th layer with weights (on a graph base, of the depths where the part can
stand alone), keeping the advisor's depth numbers, and of those only the clean cuts: the ones where
nothing after the cut reads any layer of it but the last. On a chain every depth is clean; on a residual
network only the ends of blocks are (inside a block the skip connection still reads an earlier layer), so
a conv base is cut block by block. A block pattern (``block_{1..16}_``) gives one cut per block as
``advise --blocks`` does. Given
scopes are cuts as written (each its own candidate, matched against every model). A cut is scored only
when it reads the data itself (its entries are the model's inputs); one that reads another layer's
output, matches nothing, or is not a part of the graph that can stand alone gets a reason instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from reuse.data import Dataset
from reuse.data.checks import InputSpec, check_features
from reuse.errors import InvalidInput, InvalidPattern, NotFound, ReuseError
from reuse.graph.arch import Architecture
from reuse.graph.reader import parse_architecture
from reuse.graph.select import select_layers
from reuse.store import ModelRef, ModelStore
from reuse.text import cut as cut_text
from reuse.text import echo, first_line

MAX_MODELS = 500


@dataclass(frozen=True)
class Cut:
    """One candidate of a model: the layers a build with ``scope`` reuses, and their parameters."""

    depth: int  # the advisor's depth (1-based position among the model's cuts)
    scope: str
    layers: tuple[str, ...]
    params: int
    reason: str | None = None  # why it cannot be scored


@dataclass(frozen=True)
class ModelPlan:
    """A model to rank: its cuts, what it takes as input, and why it cannot be ranked (if so)."""

    ref: str
    cuts: tuple[Cut, ...] = ()
    inputs: tuple[InputSpec, ...] = ()
    match: str = "full"
    reason: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.ref.rpartition(":")[0]

    @property
    def version(self) -> int:
        return int(self.ref.rpartition(":")[2])

    @property
    def scorable(self) -> tuple[Cut, ...]:
        return tuple(c for c in self.cuts if c.reason is None) if self.reason is None else ()


def split_items(text: str | Sequence[str] | None) -> list[str] | None:
    """``a,b;c`` as ``["a", "b", "c"]`` (a list is taken as given); None stays None."""
    if text is None:
        return None
    items = [text] if isinstance(text, str) else list(text)
    out = [p.strip() for item in items for p in item.replace(";", ",").split(",")]
    if not out or any(not p for p in out):
        raise InvalidInput(f"invalid model list {echo(text)}: expected NAME, NAME:VERSION or name patterns, "
                           "separated by commas")
    return out


def match_models(store: ModelStore, models: str | Sequence[str] | None) -> list[str]:
    """The ``NAME:VERSION`` refs ``models`` selects (see the module docstring), in name order.

    Raises:
        InvalidPattern: a malformed pattern. NotFound: a named version that does not exist, or nothing
        matched (the message lists the store's models). InvalidInput: more than ``MAX_MODELS``.
    """
    names = store.names()
    items = split_items(models)
    refs: dict[str, str] = {}
    if items is None:
        for n in names:
            refs[n] = str(store.resolve(n))
    else:
        for item in items:
            if ":" in item:
                ref = str(store.resolve(ModelRef.parse(item)))
                refs[ref] = ref
                continue
            for n in select_layers(names, item, require_match=False).matched:
                refs[n] = str(store.resolve(n))
    if not refs:
        shown = cut_text(", ".join(names), 400) or "(the store is empty)"
        raise NotFound(f"no model in the store matches {echo(models) if models is not None else 'any name'}; "
                       f"models: {shown}")
    if len(refs) > MAX_MODELS:
        raise InvalidInput(f"{len(refs)} models match; rank at most {MAX_MODELS} at once (narrow --models)")
    return sorted(set(refs.values()), key=lambda r: (r.rpartition(":")[0], int(r.rpartition(":")[2])))


def _params(store: ModelStore, ref: str) -> dict[str, int]:
    params = {row.name: row.params for row in store.layers(ref)}
    params.update({row["path"]: int(row.get("params", 0)) for row in store.nested_layers(ref)})
    return params


def input_specs(arch: Architecture) -> tuple[InputSpec, ...]:
    """The base's inputs as data must fill them (shape without the batch dimension; None: not recorded)."""
    return tuple(InputSpec(name, tuple(shape[1:]) if shape else (), arch.input_dtypes.get(name) or "float32")
                 for name, shape in arch.inputs.items())


def data_fits(ds: Dataset, specs: Sequence[InputSpec], ref: str) -> str | None:
    """None when the data's samples fit the model's inputs, else why not (the first row is checked)."""
    if any(not s.shape for s in specs):
        return None  # not recorded: the build finds out
    try:
        check_features(ds.take(np.arange(1)), list(specs), ref)
    except InvalidInput as exc:
        return first_line(exc)
    return None


def _standalone(arch: Architecture, layers: tuple[str, ...]) -> tuple[str | None, bool]:
    """Why the part ``layers`` cannot be scored on the data (None: it can), and whether it is a clean
    cut: nothing after it reads any of its layers but the last (false inside a residual block)."""
    from reuse.graph.subgraph import plan_subgraph

    try:
        plan = plan_subgraph(arch, layers)
    except ReuseError as exc:
        return first_line(exc), False
    inner = [e.source for e in plan.entries if not e.ref.input]
    if inner:
        return f"it reads the output of {', '.join(inner[:3])}, not the data", False
    return None, not plan.left_out


def plan_model(store: ModelStore, ref: str, ds: Dataset, *, scopes: Sequence[str] | None = None,
               blocks: str | None = None, match: str = "full") -> ModelPlan:
    """The cuts of ``ref`` and whether the data fits it; problems become reasons, not errors.

    Raises:
        InvalidPattern: a malformed scope or block pattern (it would be malformed for every model).
    """
    from reuse.advise.plan import plan_candidates
    from reuse.graph.subgraph import select_scope

    try:
        arch = parse_architecture(store.model_config(ref))
    except ReuseError as exc:
        return ModelPlan(ref, reason=f"its architecture cannot be read: {first_line(exc)}")
    specs = input_specs(arch)
    misfit = data_fits(ds, specs, ref)
    if misfit is not None:
        return ModelPlan(ref, inputs=specs, reason=f"the data does not fit its input: {misfit}")
    params = _params(store, ref)
    notes: tuple[str, ...] = ()
    cuts: list[Cut] = []
    if scopes is not None:
        for i, scope in enumerate(scopes, start=1):
            try:
                _, layers = select_scope(arch, scope, match=match)
            except InvalidPattern:
                raise
            except ReuseError as exc:
                cuts.append(Cut(i, scope, (), 0, f"scope {echo(scope, 80)} matches no layer"
                                if "matched no layer" in str(exc) else first_line(exc)))
                continue
            reason = _standalone(arch, layers)[0]
            cuts.append(Cut(i, scope, layers, sum(params.get(n, 0) for n in layers), reason))
    else:
        try:
            plan = plan_candidates(store, ref, blocks=blocks, match=match)
        except InvalidPattern:
            raise
        except ReuseError as exc:
            return ModelPlan(ref, inputs=specs, reason=first_line(exc))
        notes = plan.notes
        inside = 0
        for depth, p in sorted(plan.plans.items()):
            if depth == 0:
                continue
            reason, clean = _standalone(arch, p.layers)
            if reason is None and not clean and blocks is None:
                inside += 1  # by default a graph base is cut between blocks, never inside one
                continue
            cuts.append(Cut(depth, p.scope, p.layers, sum(params.get(n, 0) for n in p.layers), reason))
        if inside:
            notes = (*notes, f"{ref}: {inside} of the advisor's depths end inside a block (a later layer "
                             "reads an earlier one of theirs) and were not scored; name them with --cuts to "
                             "score them")
    if not cuts:
        return ModelPlan(ref, inputs=specs, reason="no cut to score", match=match)
    return ModelPlan(ref, tuple(cuts), specs, match, None, notes)
