"""The checks of a build that read no weight: the head (:func:`plan_head`), and the scopes, the selection as
a part of the graph and the classes of the layers it copies (:func:`plan_build`). A build job runs them
before it starts; :func:`reuse.build.network.build_network` runs them again as its first step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reuse.errors import InvalidInput
from reuse.graph.arch import Architecture, node_entry
from reuse.graph.reader import parse_architecture
from reuse.graph.subgraph import Plan, plan_subgraph, select_scope
from reuse.heads import HeadSpec, parse_head
from reuse.store import ModelStore
from reuse.trust import check_config, unsafe_code_allowed


def plan_head(head: HeadSpec | str | None, *, classes: int | None = None, regression: bool | int = False,
              outputs: int | None = None) -> tuple[HeadSpec, HeadSpec, bool | int]:
    """The head checks of a build: the head as given, that head with its output layer, and the regression
    targets (``outputs``, given apart from the flag as the CLI's ``--outputs`` and a build job's
    ``outputs`` are, needs ``regression``). Something must go on top of the reused layers.

    Raises:
        InvalidInput: naming what was wrong.
    """
    spec = parse_head(head) if isinstance(head, str) else (head or HeadSpec())
    if not isinstance(spec, HeadSpec):
        raise InvalidInput(f"invalid head {head!r}: expected a HeadSpec or a head spec string")
    if outputs is not None:
        if regression is False:
            raise InvalidInput("--outputs needs --regression")
        regression = outputs
    full = spec.with_output(classes=classes, regression=regression)
    if not full.layers:
        raise InvalidInput("nothing to put on top of the reused layers: give a head, classes or regression")
    return spec, full, regression


def plan_build(store: ModelStore, base_ref: Any, reuse: str, *, trainable: str | None = None,
               match: str = "full", exits: Sequence[str] | None = None,
               unsafe: bool | None = None) -> tuple[Architecture, Plan, set[str]]:
    """Every check of a build that reads no weight: the scopes (``reuse`` over the base's paths, then
    ``trainable`` among the reused layers), the selection as a part of the graph, and the classes of the
    layers it copies (Keras' own, ours or a trusted module's).

    Returns the architecture, the plan and the reused layers to leave trainable.

    Raises:
        NotFound, InvalidPattern, NoLayersMatched, InvalidInput, IncompatibleShapes, UnsafeModel,
        StoreCorrupt.
    """
    arch = parse_architecture(store.model_config(base_ref))
    _, leaves = select_scope(arch, reuse, match=match)
    keep_trainable: set[str] = set()
    if trainable is not None:
        sub = Architecture(arch.kind, arch.name, arch.inputs, tuple(arch.node(n) for n in leaves),
                           containers=arch.containers, order=tuple(
                               n for n in arch.order if n in leaves or _has_leaf(arch, n, leaves)))
        keep_trainable = set(select_scope(sub, trainable, match=match)[1])
    unsafe = unsafe_code_allowed() if unsafe is None else unsafe
    plan = plan_subgraph(arch, leaves, reuse, _exit_paths(arch, exits, leaves), unsafe=unsafe)
    for p in plan.layers:
        check_config(node_entry(arch.node(p)), f"layer {p}", model=False)
    return arch, plan, keep_trainable


def _has_leaf(arch: Architecture, name: str, leaves: Sequence[str]) -> bool:
    c = arch.container(name)
    return c is not None and any(x in leaves for x in c.leaves)


def _exit_paths(arch: Architecture, exits: Sequence[str] | None, leaves: Sequence[str]) -> list[str] | None:
    if not exits:
        return None
    out = []
    for e in exits:
        if e in leaves:
            out.append(e)
            continue
        found = [p for p in leaves if arch.node(p).leaf == e]
        if len(found) != 1:
            raise InvalidInput(f"exit {e!r} is not one of the selected layers")
        out.append(found[0])
    return out
