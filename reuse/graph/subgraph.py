"""Which part of a base graph a selection of layers is, and whether it can stand alone.

A selection (a set of leaf layers) is valid when the calls of those layers form a connected part of
the base graph that reads from *entry* tensors — the base's inputs, or outputs of unselected layers
that do not depend on any selected layer — and ends in one *exit* tensor (or several, when named).

Gap rule: an unselected layer whose input depends on a selected layer and whose output a selected
layer reads sits *between* selected layers. It is skipped when it is the identity at inference and
holds no weights (dropout, noise, random augmentation); anything else there is refused, naming it and a
scope that closes the gap, because the layers after it were trained on its output. Operation nodes
(``x + y``, ``ops.mean``) are nodes like layers: selected, they are replayed; in a gap, they are named.
Random augmentation layers (``RandomFlip``, ...) are skipped even when selected: the built model has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reuse.errors import IncompatibleShapes, InvalidInput, UnsafeModel
from reuse.graph.arch import (
    AUGMENTATION,
    INFERENCE_IDENTITY,
    MODEL_CLASSES,
    UNSAFE_CLASSES,
    UNSAFE_HINT,
    Architecture,
    Call,
    Ref,
    exact_scope,
)
from reuse.graph.select import Selection, select_layers


@dataclass(frozen=True)
class Entry:
    """An input of the new network: the base tensor it stands for, and where that tensor came from."""

    ref: Ref
    source: str  # a base input's name, or the unselected layer (path) that produced it


@dataclass(frozen=True)
class Plan:
    """The selected calls in replay order, with what feeds them and where they end."""

    layers: tuple[str, ...]  # selected leaf paths, in base order
    calls: tuple[Call, ...]
    entries: tuple[Entry, ...]
    exits: tuple[Ref, ...]
    skipped: tuple[str, ...]  # identity layers skipped in gaps (paths, base order)
    substitute: dict[Ref, Ref]  # a skipped layer's output -> the tensor it passed through
    left_out: dict[str, tuple[str, ...]]  # selected layer -> unselected layers that also read it


def select_scope(arch: Architecture, pattern: str, *, match: str = "full",
                 require_match: bool = True) -> tuple[Selection, tuple[str, ...]]:
    """Match ``pattern`` against every path (nested models and leaf layers, in display order).

    Returns the selection and the leaf layers it selects: a matched nested model selects every layer
    inside it.
    """
    names = list(arch.order) or arch.names
    selection = select_layers(names, pattern, match=match, require_match=require_match)
    chosen: set[str] = set()
    for name in selection.matched:
        c = arch.container(name)
        chosen.update(c.leaves if c is not None else (name,))
    return selection, tuple(n for n in arch.names if n in chosen)


def upstream(producer: dict[str, Call], refs: Sequence[Ref]) -> set[str]:
    """The keys of the calls that produce ``refs`` and of every call above them."""
    seen: set[str] = set()
    stack = [r.call for r in refs if not r.input]
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        stack.extend(r.call for r in producer[k].inputs if not r.input)
    return seen


def _refused(msg: str) -> IncompatibleShapes:
    return IncompatibleShapes(msg)


def plan_subgraph(arch: Architecture, selected: Sequence[str], pattern: str = "",
                  exits: Sequence[str] | None = None, *, unsafe: bool = False) -> Plan:
    """Check that the layers ``selected`` (leaf paths) form a part of the graph that can be replayed.

    Args:
        arch: the base's architecture.
        selected: leaf layer and operation paths.
        pattern: the user's scope, quoted in hints.
        exits: layers (paths) whose outputs end the selection; default: the one tensor that no selected
            layer reads.
        unsafe: Lambda layers may be selected (the build will run their Python code).

    Raises:
        IncompatibleShapes: a gap holds a layer that cannot be skipped, or the selection ends in several
            tensors (the message names them and how to fix it).
        UnsafeModel: a selected layer runs arbitrary Python code (Lambda) and not ``unsafe``.
        InvalidInput: an exit that is not selected; a selection of augmentation layers only.
    """
    by_name = {n.name: n for n in arch.layers}
    augment = {n for n in selected if by_name[n].class_name in AUGMENTATION}
    chosen = set(selected) - augment
    if not chosen:
        raise InvalidInput("the scope selects only random augmentation layers "
                           f"({', '.join(sorted(augment)[:5])}), which are the identity at inference and "
                           "never copied; select layers after them too")
    for name in selected:
        node = by_name[name]
        if node.class_name in UNSAFE_CLASSES and not unsafe:
            raise UnsafeModel(f"layer {name} is a {node.class_name} layer, which runs arbitrary Python "
                              f"code; {UNSAFE_HINT}")
        assert node.class_name not in MODEL_CLASSES
    calls = {c.key: c for c in arch.calls}
    producer = {c.key: c for c in arch.calls}
    consumers: dict[str, list[Call]] = {}
    for c in arch.calls:
        for r in c.inputs:
            if not r.input:
                consumers.setdefault(r.call, []).append(c)
    sel_calls = [c for c in arch.calls if c.layer in chosen]
    # Calls downstream of a selected call (forward closure), and upstream of one (backward closure).
    down: set[str] = set()
    stack = [c.key for c in sel_calls]
    while stack:
        k = stack.pop()
        for c in consumers.get(k, []):
            if c.key not in down:
                down.add(c.key)
                stack.append(c.key)
    up = upstream(producer, [r for c in sel_calls for r in c.inputs])
    order = {c.key: i for i, c in enumerate(arch.calls)}
    gap = [calls[k] for k in (down & up) if calls[k].layer not in chosen]
    gap.sort(key=lambda c: order[c.key])
    blocking = [c for c in gap
                if arch.node(c.layer).class_name not in INFERENCE_IDENTITY or len(c.inputs) != 1]
    if blocking:
        raise _gap_error(arch, blocking, chosen, producer, consumers, pattern, unsafe)
    gap_keys = {c.key for c in gap}
    # Augmentation above the selection is passed through too, so the new input is the tensor it augmented.
    above = {c.key for c in arch.calls if c.key in up and arch.node(c.layer).class_name in AUGMENTATION
             and len(c.inputs) == 1}
    skipped = [c for c in arch.calls if c.key in gap_keys or c.key in above or c.layer in augment]
    for c in skipped:
        if len(c.inputs) != 1:
            raise IncompatibleShapes(f"layer {c.layer} ({arch.node(c.layer).class_name}) reads "
                                     f"{len(c.inputs)} tensors, so it cannot be skipped; leave it out")
    substitute: dict[Ref, Ref] = {}
    for c in skipped:  # in graph order, so a chain of skipped layers resolves to its first input
        src = c.inputs[0]
        substitute[Ref(call=c.key, index=0)] = substitute.get(src, src)

    def real(r: Ref) -> Ref:
        return substitute.get(r, r)

    entries: dict[Ref, Entry] = {}
    read_inside: set[Ref] = set()
    for c in sel_calls:
        for r in map(real, c.inputs):
            if r.input:
                entries.setdefault(r, Entry(r, r.input))
            elif producer[r.call].layer in chosen:
                read_inside.add(r)
            else:
                entries.setdefault(r, Entry(r, producer[r.call].layer))
    produced = _produced(arch, sel_calls, consumers)
    if exits:
        out = _named_exits(arch, exits, chosen, sel_calls, produced)
    else:
        out = [r for r in produced if r not in read_inside]
        if len(out) != 1:
            raise _exit_error(out, producer)
    _check_reaches(arch, sel_calls, out, producer)
    left_out: dict[str, tuple[str, ...]] = {}
    for c in sel_calls:
        readers = sorted({x.layer for x in consumers.get(c.key, [])
                          if x.layer not in chosen and x.key not in gap_keys})
        if readers and Ref(call=c.key) not in out:
            left_out[c.layer] = tuple(readers)
    return Plan(tuple(n for n in arch.names if n in chosen), tuple(sel_calls), tuple(entries.values()),
                tuple(out), tuple(dict.fromkeys(c.layer for c in skipped)), substitute, left_out)


def _produced(arch: Architecture, sel_calls: list[Call], consumers: dict[str, list[Call]]) -> list[Ref]:
    """Every output tensor of the selected calls that the base uses (read by a call or a base output)."""
    used: dict[Ref, None] = {}
    keys = {c.key for c in sel_calls}
    for c in arch.calls:
        for r in c.inputs:
            if not r.input and r.call in keys:
                used[r] = None
    for r in arch.outputs:
        if not r.input and r.call in keys:
            used[r] = None
    for c in sel_calls:  # an output nothing reads
        if not any(r.call == c.key for r in used):
            used[Ref(call=c.key)] = None
    order = {c.key: i for i, c in enumerate(arch.calls)}
    return sorted(used, key=lambda r: (order[r.call], r.index))


def _named_exits(arch: Architecture, exits: Sequence[str], chosen: set[str], sel_calls: list[Call],
                 produced: list[Ref]) -> list[Ref]:
    out: list[Ref] = []
    for name in exits:
        if name not in chosen:
            raise InvalidInput(f"exit {name!r} is not a selected layer; selected: "
                               f"{', '.join(sorted(chosen))}")
        keys = [c.key for c in sel_calls if c.layer == name]
        refs = [r for r in produced if r.call in keys]
        out.extend(refs or [Ref(call=keys[-1])])
    return list(dict.fromkeys(out))


def _check_reaches(arch: Architecture, sel_calls: list[Call], out: list[Ref],
                   producer: dict[str, Call]) -> None:
    """Every selected call must feed an exit (else the selection is not connected to it)."""
    reach = upstream(producer, out)
    stray = sorted({c.layer for c in sel_calls if c.key not in reach})
    if stray:
        ends = ", ".join(str(r) for r in out)
        raise _refused(f"selected layer(s) {', '.join(stray[:10])} do not feed the end of the selection "
                       f"({ends}); leave them out or name them as exits too")


def _gap_error(arch: Architecture, blocking: list[Call], chosen: set[str], producer: dict[str, Call],
               consumers: dict[str, list[Call]], pattern: str, unsafe: bool) -> IncompatibleShapes:
    names = list(dict.fromkeys(c.layer for c in blocking))
    first = blocking[0]
    # The nearest selected layer above the gap and the selected layer that reads from it.
    above = _nearest_selected(first, chosen, producer)
    below = None
    for c in blocking:
        for x in consumers.get(c.key, []):
            if x.layer in chosen:
                below = x.layer
                break
        if below:
            break
    below = below or "a selected layer"
    listed = ", ".join(f"{n} ({arch.node(n).class_name})" for n in names[:12])
    if len(names) > 12:
        listed += f" and {len(names) - 12} more"
    them = "it" if len(names) == 1 else "them"
    hint_names = exact_scope(names)
    hint = (
        f"; select {them} too, e.g. --reuse '{pattern}|{hint_names}',"
        if pattern and len(hint_names) < 400
        else f"; select {them} too,"
    )
    # Never suggest what the build would then refuse without saying what it needs, or at all.
    needs, never = _gap_needs(arch, names, unsafe)
    if never:
        hint = f"; {never},"
    elif needs:
        hint += f" {' and '.join(needs)},"
    end = f" or end the selection at {above}" if above else " or end the selection before them"
    return _refused(f"unselected layer(s) {listed} sit between selected layers {above or '?'} and {below}, "
                    f"and {below} was trained on their output{hint}{end}")


def _gap_needs(arch: Architecture, names: list[str], unsafe: bool) -> tuple[list[str], str]:
    """What selecting the gap layers ``names`` would take (--unsafe for a Lambda, --trust-module for a class
    of the user's own), and why it cannot be done at all, if so (a class this Keras does not define)."""
    from reuse.errors import UntrustedClass
    from reuse.graph.arch import node_entry
    from reuse.trust import check_config

    needs = []
    lambdas = [n for n in names if arch.node(n).class_name in UNSAFE_CLASSES]
    if lambdas and not unsafe:
        needs.append(f"with --unsafe ({', '.join(lambdas[:3])} {'runs' if len(lambdas) == 1 else 'run'} "
                     "Python code)")
    untrusted = []
    for n in names:
        if n in lambdas:
            continue
        try:
            check_config(node_entry(arch.node(n)), f"layer {n}", model=False)
        except UntrustedClass:
            untrusted.append(n)
        except InvalidInput as exc:
            return needs, f"{n} cannot be rebuilt here ({str(exc).split(': ', 1)[-1]})"
    if untrusted:
        needs.append(f"with --trust-module naming the module that defines {', '.join(untrusted[:3])}")
    return needs, ""


def _nearest_selected(call: Call, chosen: set[str], producer: dict[str, Call]) -> str | None:
    seen: set[str] = set()
    frontier = [r.call for r in call.inputs if not r.input]
    while frontier:
        nxt = []
        for k in frontier:
            if k in seen:
                continue
            seen.add(k)
            if producer[k].layer in chosen:
                return producer[k].layer
            nxt.extend(r.call for r in producer[k].inputs if not r.input)
        frontier = nxt
    return None


def _exit_error(out: list[Ref], producer: dict[str, Call]) -> IncompatibleShapes:
    ends = [producer[r.call].layer for r in out]
    listed = ", ".join(dict.fromkeys(ends[:10]))
    return _refused(
        f"the selection ends in {len(out)} tensors (outputs of {listed}), but a head reads one; select the "
        "layers that join them (e.g. the Add or Concatenate after them), or end the selection at one of "
        "them, or name the exits (--exit) to feed them all to the head")
