"""Which candidates the advisor tries: reuse depths over a base's layers, or a list of scopes.

Depth ``k`` reuses the base's layers up to and including its ``k``-th layer that holds weights, with the
weightless layers that follow it (activation, pooling, flatten), in model order. Layers that are the
identity at inference (dropout, noise) are never selected: the build skips them (its gap rule), so no
reused part drops units while the new head trains. The base's last layer with weights is its output and
is never reused, so the deepest depth ``N`` is the number of layers with weights minus one.

With a list of scopes instead, depth ``i`` (1-based) reuses the chain the ``i``-th scope selects; list
them from the simplest to the most complex. Depth 0 trains from scratch the same architecture as the
deepest candidate (its layer configs, freshly initialised) plus the same head.

With a block pattern (``--blocks 'block_{1..6}_'``), a base built of repeated blocks (MobileNetV2's
``block_1_...``, ResNet's ``conv2_block1_...``) gives one candidate per block. The text with
``{LO..HI}`` replaced by ``k`` is a literal name prefix, and block ``k`` is every layer whose name starts
with it. Candidate ``k - LO + 1`` (depth ``k - LO + 1``) reuses every layer of the base, in base order, up
to and including the last layer of block ``k``: the stem below the first block, blocks ``LO..k``, and any
layer between them; never a layer after block ``k``. As with depths, layers that are the identity at
inference are left out, unless the candidate's scope would then pass the pattern length limit (a note
says so). Each block must hold at least one layer, no layer may be in two blocks (``block_1`` is also a
prefix of ``block_10_...``: end the pattern with the separator), and every layer of block ``k`` must come
before the first layer of any later block. At most ``MAX_CANDIDATES`` (50) candidates. The scope of each
candidate is written compactly and checked to select exactly its layers: each layer as the shortest
prefix ending in ``_`` (or its block's prefix) that two or more layers share, all of them in the
candidate, written ``PREFIX.*``, else by name; e.g. ``Conv1|bn_Conv1|Conv1_relu|expanded_.*|block_1_.*``
for MobileNetV2's first block, ``conv1_.*|pool1_.*|conv2_.*|conv3_.*|conv4_block1_.*`` for ResNet50's
``conv4_block{1..6}_``.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

from reuse.errors import InvalidInput, NoLayersMatched
from reuse.graph.arch import INFERENCE_IDENTITY, escape, exact_scope
from reuse.graph.reader import parse_architecture
from reuse.graph.select import MAX_PATTERN_LENGTH, select_layers
from reuse.store import ModelStore
from reuse.text import echo

MAX_CANDIDATES = 50
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


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
    notes: tuple[str, ...] = ()  # things the advice should say about the candidates

    @property
    def scratch(self) -> DepthPlan | None:
        return self.plans.get(0)


def depth_layers(store: ModelStore, ref: str) -> list[tuple[str, ...]]:
    """For ``k`` = 1..N, the base layers depth ``k`` selects (index ``k - 1``).

    Depth ``k`` reuses the layers (paths, base order) before the ``k+1``-th layer with weights. On a graph
    that is not a chain only the depths whose layers form a part of the graph that can stand alone (one
    exit, no gap: e.g. the end of a residual block, not its middle) are candidates, numbered in order.
    """
    from reuse.errors import IncompatibleShapes
    from reuse.graph.subgraph import plan_subgraph

    arch = parse_architecture(store.model_config(ref))
    params = {row.name: row.params for row in store.layers(ref)}
    params.update({row["path"]: int(row.get("params", 0)) for row in store.nested_layers(ref)})
    nodes = list(arch.layers)
    weighted = [i for i, n in enumerate(nodes) if params.get(n.name, 0) > 0]
    out = []
    for k in range(1, len(weighted)):
        chosen = tuple(n.name for n in nodes[:weighted[k]] if n.class_name not in INFERENCE_IDENTITY)
        try:
            plan_subgraph(arch, chosen)
        except IncompatibleShapes:
            continue
        out.append(chosen)
    return out


def depth_scope(names: Sequence[str], layers: Sequence[str]) -> str:
    """The scope of a depth candidate: its layers by name, or a compact form when that is too long."""
    scope = exact_scope(layers)
    if len(scope) <= MAX_PATTERN_LENGTH:
        return scope
    compact = _compact(layers, set(layers), _Prefixes(names), {})
    if select_layers(names, compact).matched == tuple(layers):
        return compact
    return scope


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
    """Split a list of scope patterns at the ``;`` outside (), [] and {} or, when there is none, at the
    commas outside them.

    ``hidden1,hidden[12],h{1,3}`` gives ``["hidden1", "hidden[12]", "h{1,3}"]``; ``a,b;c`` gives
    ``["a,b", "c"]`` (with ``;``, a comma anywhere belongs to a pattern).
    """
    sep = ";" if ";" in _top_level(text) else ","
    parts: list[str] = []
    current: list[str] = []
    for c, outside in _scan(text):
        if c == sep and outside:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(c)
    parts.append("".join(current).strip())
    return parts


def _scan(text: str) -> Iterator[tuple[str, bool]]:
    """Each character of ``text`` and whether it stands outside (), [] and {} and is not escaped."""
    depth, escaped = 0, False
    for c in text:
        if escaped:
            escaped = False
            yield c, False
            continue
        if c == "\\":
            escaped = True
            yield c, False
            continue
        if c in "([{":
            depth += 1
            yield c, False
        elif c in ")]}":
            depth = max(0, depth - 1)
            yield c, False
        else:
            yield c, depth == 0


def _top_level(text: str) -> str:
    """The characters of ``text`` outside (), [] and {} and not escaped."""
    return "".join(c for c, outside in _scan(text) if outside)


def expand_blocks(pattern: str) -> list[tuple[int, str]]:
    """``block_{1..3}_`` as ``[(1, "block_1_"), (2, "block_2_"), (3, "block_3_")]``.

    Raises:
        InvalidInput: not exactly one ``{LO..HI}`` range, ``LO > HI``, or more than ``MAX_CANDIDATES`` blocks.
    """
    example = "e.g. 'block_{1..16}_' for layers named block_1_..., block_2_..."
    if not isinstance(pattern, str):
        raise InvalidInput(f"invalid block pattern {pattern!r}: expected a string with one {{LO..HI}} range, "
                           f"{example}")
    ranges = list(_RANGE.finditer(pattern))
    if len(ranges) != 1:
        raise InvalidInput(f"invalid block pattern {pattern!r}: expected exactly one {{LO..HI}} range, "
                           f"found {len(ranges)}; {example}")
    m = ranges[0]
    lo, hi = int(m.group(1)), int(m.group(2))
    if lo > hi:
        raise InvalidInput(f"invalid block range {{{lo}..{hi}}} in {pattern!r}: expected LO <= HI")
    if hi - lo + 1 > MAX_CANDIDATES:
        raise InvalidInput(f"block pattern {pattern!r} gives {hi - lo + 1} candidates; at most "
                           f"{MAX_CANDIDATES} are allowed")
    head, tail = pattern[:m.start()], pattern[m.end():]
    return [(k, f"{head}{k}{tail}") for k in range(lo, hi + 1)]


def _anchored(scope: str, match: str) -> str:
    # Under prefix matching `Conv1` would also select `Conv1_relu`; `(?:...)$` matches whole names only.
    return scope if match == "full" else f"(?:{scope})$"


class _Prefixes:
    """Which layer names start with a given prefix (names sorted once; a prefix's names are contiguous)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.sorted = sorted(names)
        self.cache: dict[str, list[str]] = {}

    def __call__(self, prefix: str) -> list[str]:
        if prefix not in self.cache:
            lo = bisect_left(self.sorted, prefix)
            hi = lo
            while hi < len(self.sorted) and self.sorted[hi].startswith(prefix):
                hi += 1
            self.cache[prefix] = self.sorted[lo:hi]
        return self.cache[prefix]


def _compact(wanted: Sequence[str], allowed: Collection[str], with_prefix: _Prefixes,
             extra_prefixes: dict[str, str]) -> str:
    """A short scope that selects every name in ``wanted`` and nothing outside ``allowed``, in base order.

    Each name is written as the shortest of its prefixes that end in ``_`` (or its block's prefix, from
    ``extra_prefixes``) whose every layer is allowed and that is shared by two layers or more (a block's
    prefix may name one), as ``PREFIX.*``; as itself when there is none. So ``conv1_pad|conv1_conv|conv1_bn``
    becomes ``conv1_.*`` when no other layer starts with ``conv1_``.
    """
    tokens: list[str] = []
    for n in wanted:
        candidates = sorted({n[:i + 1] for i, c in enumerate(n[:-1]) if c == "_"}
                            | ({extra_prefixes[n]} if n in extra_prefixes else set()), key=len)
        fit = next((p for p in candidates if all(m in allowed for m in with_prefix(p))
                    and (len(with_prefix(p)) > 1 or p == extra_prefixes.get(n))), None)
        token = escape(n) if fit is None else escape(fit) + ".*"
        if token not in tokens:
            tokens.append(token)
    return "|".join(tokens)


def block_plans(names: Sequence[str], pattern: str, *, skip: Collection[str] = (),
                match: str = "full") -> tuple[list[DepthPlan], list[str]]:
    """The candidates of a block pattern over the layer ``names`` (base order); see the module docstring.

    Args:
        names: the base's layer names in base order (inputs excluded).
        pattern: e.g. ``block_{1..16}_``.
        skip: layers that are the identity at inference (left out of every candidate when possible).
        match: the match mode the scopes will be used with (``full`` or ``prefix``).

    Returns:
        One :class:`DepthPlan` per block (depth 1 for the first), and notes for the advice.

    Raises:
        InvalidInput: a bad pattern (see :func:`expand_blocks`), a layer in two blocks, or blocks out of
            order. NoLayersMatched: a block with no layer.
    """
    blocks = expand_blocks(pattern)
    index = {n: i for i, n in enumerate(names)}
    members: dict[int, list[str]] = {}
    owner: dict[str, int] = {}
    for k, prefix in blocks:
        members[k] = [n for n in names if n.startswith(prefix)]
        if not members[k]:
            shown = ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")
            raise NoLayersMatched(f"block {k} of {pattern!r}: no layer name starts with {prefix!r}; "
                                  f"layers are: {shown}")
        for n in members[k]:
            if n in owner:
                raise InvalidInput(f"layer {n} is in block {owner[n]} ({dict(blocks)[owner[n]]!r}) and "
                                   f"in block {k} ({prefix!r}) of {pattern!r}: end the pattern with the "
                                   "separator that follows the number, e.g. 'block_{1..16}_'")
            owner[n] = k
    keys = [k for k, _ in blocks]
    for a, b in zip(keys, keys[1:], strict=False):
        last_a = max(index[n] for n in members[a])
        first_b = min(index[n] for n in members[b])
        if first_b < last_a:
            raise InvalidInput(f"blocks {a} and {b} of {pattern!r} interleave in the base: layer "
                               f"{names[first_b]} of block {b} comes before layer {names[last_a]} of block "
                               f"{a}; give the candidates as --scopes instead")
    prefix_of = dict(blocks)
    block_prefix = {n: prefix_of[k] for n, k in owner.items()}
    with_prefix = _Prefixes(names)
    skipped = set(skip)
    plans, notes = [], []
    for depth, k in enumerate(keys, start=1):
        upto = names[:max(index[n] for n in members[k]) + 1]
        strict = tuple(n for n in upto if n not in skipped)
        scope = _anchored(_compact(strict, set(strict), with_prefix, block_prefix), match)
        layers = strict
        if len(scope) <= MAX_PATTERN_LENGTH and select_layers(names, scope, match=match).matched != strict:
            scope = _anchored(exact_scope(strict), match)  # a safety net: the compact form selects exactly
        if len(scope) > MAX_PATTERN_LENGTH:
            # Whole blocks, their dropout layers included, may be short enough where listing was not.
            loose = _anchored(_compact(strict, set(upto), with_prefix, block_prefix), match)
            if len(loose) <= MAX_PATTERN_LENGTH:
                scope, layers = loose, select_layers(names, loose, match=match).matched
                extra = [n for n in layers if n in skipped]
                notes.append(f"block {k}'s candidate also reuses {len(extra)} layer(s) that are the "
                             "identity at inference "
                             f"({', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''}): listing the "
                             f"layers without them passes the {MAX_PATTERN_LENGTH}-character pattern limit")
        if len(scope) > MAX_PATTERN_LENGTH:
            raise InvalidInput(f"block {k} of {pattern!r}: its candidate's scope has {len(scope)} "
                               f"characters, more than {MAX_PATTERN_LENGTH}; give the candidates as "
                               "--scopes instead")
        plans.append(DepthPlan(depth, scope, layers))
    return plans, notes


def plan_candidates(store: ModelStore, base_ref: str, *, depths: str | Sequence[int] | None = None,
                    scopes: Sequence[str] | None = None, match: str = "full",
                    blocks: str | None = None) -> CandidatePlan:
    """The candidates for ``base_ref``: depths over its layers, over ``scopes``, or over the blocks of a
    block pattern (``blocks``, e.g. ``block_{1..16}_``).

    Raises:
        NotFound: no such base. InvalidPattern, NoLayersMatched: a scope is invalid or selects nothing,
        or a block holds no layer. InvalidInput: bad depths or block pattern, both scopes and blocks, more
        than ``MAX_CANDIDATES`` candidates, or a base with no layer below its output.
    """
    ref = str(store.resolve(base_ref))
    notes: list[str] = []
    if scopes is not None and blocks is not None:
        raise InvalidInput("give either scopes or a block pattern, not both")
    if blocks is not None:
        arch = parse_architecture(store.model_config(ref))
        skip = [n.name for n in arch.layers if n.class_name in INFERENCE_IDENTITY]
        block_list, notes = block_plans(arch.names, blocks, skip=skip, match=match)
        plans = {p.depth: p for p in block_list}
        what = f"block pattern {blocks!r} ({len(plans)} block(s))"
    elif scopes is not None:
        scopes = list(scopes)
        if not scopes or any(not isinstance(s, str) or not s.strip() for s in scopes):
            raise InvalidInput(f"invalid scopes {echo(scopes)}: expected non-empty patterns, e.g. "
                               "hidden1,hidden[12],hidden[123]")
        if len(scopes) > MAX_CANDIDATES:
            raise InvalidInput(f"{len(scopes)} scopes given; at most {MAX_CANDIDATES} candidates are allowed")
        names = parse_architecture(store.model_config(ref)).names
        plans = {i: DepthPlan(i, s, select_layers(names, s, match=match).matched, given=True)
                 for i, s in enumerate(scopes, start=1)}
        what = f"{len(scopes)} scope(s)"
    else:
        chains = depth_layers(store, ref)
        if not chains:
            raise InvalidInput(f"{ref} has no layer with weights below its output layer: nothing to reuse")
        names = parse_architecture(store.model_config(ref)).names
        plans = {
            k: DepthPlan(k, depth_scope(names, layers), layers) for k, layers in enumerate(chains, start=1)
        }
        what = f"{ref} ({len(chains)} reusable layer(s) with weights)"
    max_depth = len(plans)
    chosen = parse_depths(depths, max_depth, what)
    asked = {k: plans[k] for k in chosen if k > 0}
    if 0 in chosen:
        # Scratch copies the deepest candidate's architecture (all of it when only depth 0 is asked).
        pool = list(asked.values()) or list(plans.values())
        widest = max(pool, key=lambda p: (len(p.layers), p.depth))
        asked[0] = DepthPlan(0, widest.scope, widest.layers, widest.given)
    return CandidatePlan(ref, chosen, dict(sorted(asked.items())), max_depth, tuple(notes))
