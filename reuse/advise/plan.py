"""Which candidates the advisor tries: reuse depths over a base's layers, or a list of scopes.

Depth ``k`` reuses the base's layers up to and including its ``k``-th layer that holds weights, with the
weightless layers that follow it (activation, pooling, flatten), in model order. Layers that are the
identity at inference (dropout, noise) are never selected: the build skips them (its gap rule), so no
reused part drops units while the new head trains. The base's last layer with weights is its output and
is never reused, so the deepest depth ``N`` is the number of layers with weights minus one.

With a list of scopes instead, depth ``i`` (1-based) reuses the chain the ``i``-th scope selects; list
them from the simplest to the most complex. Depth 0 trains from scratch the same architecture as the
deepest candidate (its layer configs, freshly initialised) plus the same head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reuse.arch import INFERENCE_IDENTITY, parse_architecture
from reuse.errors import InvalidInput
from reuse.select import select_layers
from reuse.store import ModelStore
from reuse.text import echo


@dataclass(frozen=True)
class DepthPlan:
    """One reuse depth: the scope given to the build and the base layers it selects."""

    depth: int
    scope: str
    layers: tuple[str, ...]
    given: bool = False  # the scope came from the user (``--scopes``)

    @property
    def short(self) -> str:
        """The layers in a few characters: ``hidden1``, ``hidden1,hidden2``, ``hidden1..hidden4``."""
        if len(self.layers) <= 2:
            return ",".join(self.layers)
        return f"{self.layers[0]}..{self.layers[-1]}"


@dataclass(frozen=True)
class CandidatePlan:
    """The depths to try (``0`` is training from scratch) and what each reuses."""

    base: str
    depths: tuple[int, ...]
    plans: dict[int, DepthPlan]  # every reuse depth asked for, and the scratch architecture's at 0
    max_depth: int

    @property
    def scratch(self) -> DepthPlan | None:
        return self.plans.get(0)


def escape_name(name: str) -> str:
    """``name`` as a scope pattern that matches exactly it."""
    return "".join(c if (c.isalnum() or c == "_") else "\\" + c for c in name)


def exact_scope(names: Sequence[str]) -> str:
    return "|".join(escape_name(n) for n in names)


def depth_layers(store: ModelStore, ref: str) -> list[tuple[str, ...]]:
    """For ``k`` = 1..N, the base layers depth ``k`` selects (index ``k - 1``)."""
    arch = parse_architecture(store.model_config(ref))
    params = {row.name: row.params for row in store.layers(ref)}
    nodes = list(arch.layers)
    weighted = [i for i, n in enumerate(nodes) if params.get(n.name, 0) > 0]
    out = []
    for k in range(1, len(weighted)):
        chosen = [n.name for n in nodes[:weighted[k]] if n.class_name not in INFERENCE_IDENTITY]
        out.append(tuple(chosen))
    return out


def parse_depths(text: str | Sequence[int] | None, max_depth: int, what: str) -> tuple[int, ...]:
    """``0..N``, ``1..3``, ``0,1,3``, ``2`` (``N`` is the deepest) or a list of ints, checked and sorted.

    Raises:
        InvalidInput: malformed, or a depth outside 0..``max_depth``.
    """
    if text is None:
        return tuple(range(max_depth + 1))
    if isinstance(text, str):
        values: list[int] = []
        for part in (p.strip() for p in text.split(",")):
            lo, sep, hi = part.partition("..")
            try:
                if sep:
                    a, b = _depth(lo, max_depth), _depth(hi, max_depth)
                    if b < a:
                        raise ValueError
                    values.extend(range(a, b + 1))
                else:
                    values.append(_depth(part, max_depth))
            except ValueError:
                raise InvalidInput(f"invalid depths {echo(text)}: expected e.g. 0..N, 0..3 or 0,1,3 "
                                   f"(N = {max_depth}, the deepest for {what})") from None
    else:
        values = list(text)
        if any(not isinstance(v, int) or isinstance(v, bool) for v in values):
            raise InvalidInput(f"invalid depths {echo(list(text))}: expected integers")
    if not values:
        raise InvalidInput("no depths given: expected e.g. 0..N or 0,1,3")
    bad = sorted({v for v in values if not 0 <= v <= max_depth})
    if bad:
        raise InvalidInput(f"depth {bad[0]} is out of range: {what} allows depths 0..{max_depth}")
    return tuple(sorted(set(values)))


def _depth(token: str, max_depth: int) -> int:
    token = token.strip()
    if token.upper() == "N":
        return max_depth
    if not (token.isascii() and token.isdigit()):
        raise ValueError(token)
    return int(token)


def split_scopes(text: str) -> list[str]:
    """Split a comma-separated list of scope patterns at the commas outside (), [] and {}.

    ``hidden1,hidden[12],h{1,3}`` gives ``["hidden1", "hidden[12]", "h{1,3}"]``.
    """
    parts, depth, current, escaped = [], 0, [], False
    for c in text:
        if escaped:
            current.append(c)
            escaped = False
            continue
        if c == "\\":
            escaped = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(c)
    parts.append("".join(current).strip())
    return parts


def plan_candidates(store: ModelStore, base_ref: str, *, depths: str | Sequence[int] | None = None,
                    scopes: Sequence[str] | None = None, match: str = "full") -> CandidatePlan:
    """The candidates for ``base_ref``: depths over its layers, or over ``scopes``.

    Raises:
        NotFound: no such base. InvalidPattern, NoLayersMatched: a scope is invalid or selects nothing.
        InvalidInput: bad depths, or a base with no layer below its output.
    """
    ref = str(store.resolve(base_ref))
    if scopes is not None:
        scopes = list(scopes)
        if not scopes or any(not isinstance(s, str) or not s.strip() for s in scopes):
            raise InvalidInput(f"invalid scopes {echo(scopes)}: expected non-empty patterns, e.g. "
                               "hidden1,hidden[12],hidden[123]")
        names = parse_architecture(store.model_config(ref)).names
        plans = {i: DepthPlan(i, s, select_layers(names, s, match=match).matched, given=True)
                 for i, s in enumerate(scopes, start=1)}
        what = f"{len(scopes)} scope(s)"
    else:
        chains = depth_layers(store, ref)
        if not chains:
            raise InvalidInput(f"{ref} has no layer with weights below its output layer: nothing to reuse")
        plans = {k: DepthPlan(k, exact_scope(layers), layers) for k, layers in enumerate(chains, start=1)}
        what = f"{ref} ({len(chains)} reusable layer(s) with weights)"
    max_depth = len(plans)
    chosen = parse_depths(depths, max_depth, what)
    asked = {k: plans[k] for k in chosen if k > 0}
    if 0 in chosen:
        # Scratch copies the deepest candidate's architecture (all of it when only depth 0 is asked).
        pool = list(asked.values()) or list(plans.values())
        widest = max(pool, key=lambda p: (len(p.layers), p.depth))
        asked[0] = DepthPlan(0, widest.scope, widest.layers, widest.given)
    return CandidatePlan(ref, chosen, dict(sorted(asked.items())), max_depth)
