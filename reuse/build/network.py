"""New networks from the reused layers of a stored one, plus a new head.

The selected part of the base graph is replayed with the Keras functional API on fresh copies of the
selected layers (new layer objects made from their configs, weights copied bit for bit; nothing of the
base object is shared), then the head is put on its exit. Only the architecture and the selected layers'
weights are read from the base's file.

Rules (docs/building.md has the full text):

- A scope selects leaf layers by path (``backbone/block_1_expand``; a nested model's own path selects
  every layer inside it). The selected calls must form a connected part of the graph (see
  :mod:`reuse.graph.subgraph`): residual adds, concatenations, shared layers and nested models all replay.
- Each *entry* — a base input, or the output of an unselected layer that a selected one reads — becomes
  an ``Input`` of the new network with the base tensor's shape and dtype (int token ids stay int).
- Gap rule: an unselected layer between selected ones is skipped if it is the identity at inference
  and holds no weights (Dropout, GaussianNoise, ...); any other makes the build fail, naming it and a
  wider scope that includes it.
- Reused layers keep their base names (a layer inside a nested model keeps its own name, or takes its path
  with ``_`` for ``/`` when two selected layers share a name), and are frozen unless ``trainable``
  selects them. A frozen BatchNormalization runs in inference mode, so its moving statistics stay as
  copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reuse.build.plan import plan_build, plan_head
from reuse.build.stage import StagePlan, plan_stage
from reuse.errors import IncompatibleShapes, InvalidInput, StoreCorrupt
from reuse.graph.arch import Architecture, LayerNode, Ref, new_layer
from reuse.graph.replay import fmt_shape, producer, run_call
from reuse.graph.subgraph import Plan, upstream
from reuse.heads import HeadSpec
from reuse.store import ModelStore
from reuse.text import first_line
from reuse.trust import unsafe_code_allowed

LINEAGE_FORMAT = 1


@dataclass(frozen=True)
class BuiltNetwork:
    """A built, uncompiled Keras model and the lineage to register with it."""

    model: Any
    lineage: dict[str, Any]


def _input_shape(value: Sequence[int | None] | None) -> tuple[int | None, ...] | None:
    if value is None:
        return None
    shape = tuple(value)
    if not shape or any(
        d is not None and (not isinstance(d, int) or isinstance(d, bool) or d < 1) for d in shape
    ):
        raise InvalidInput(f"invalid input shape {value!r}: expected positive integers (or None), e.g. (64,) "
                           "or (28, 28, 1), without the batch dimension")
    return shape


def _order_weights(layer: Any, stored: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
    """Stored arrays in the order of ``layer``'s trainable-then-non-trainable variables.

    Keras saved a layer's weights in that order as they were when it was saved; a layer inside a frozen
    nested model had them all non-trainable, so the order is recovered from the names when they are
    unambiguous.
    """
    targets = list(layer.trainable_weights) + list(layer.non_trainable_weights)
    arrays = [a for _, a in stored]
    wanted = [v.name for v in targets]
    have = [n.rsplit("/", 1)[-1] for n, _ in stored]
    if wanted == have or len(set(have)) != len(have) or sorted(wanted) != sorted(have):
        return arrays
    by_name = dict(zip(have, arrays, strict=True))
    return [by_name[n] for n in wanted]


def _copy_weights(layer: Any, stored: list[tuple[str, np.ndarray]], node: LayerNode, base: str,
                  got: Any) -> None:
    targets = list(layer.trainable_weights) + list(layer.non_trainable_weights)
    arrays = _order_weights(layer, stored)
    built = [tuple(v.shape) for v in targets]
    shapes = [tuple(a.shape) for a in arrays]
    if len(targets) != len(arrays):
        raise StoreCorrupt(f"{base}: layer {node.name} has {len(arrays)} stored weights but a "
                           f"{node.class_name} built from its config has {len(targets)}")
    if built != shapes:
        raise IncompatibleShapes(
            f"layer {node.name} ({node.class_name}) gets input of shape {fmt_shape(got)} here, which gives "
            f"it weights of shapes {built}, but its weights in {base} have shapes {shapes}"
        )
    for var, arr in zip(targets, arrays, strict=True):
        var.assign(arr)


def build_network(
    store: ModelStore,
    base_ref: str,
    reuse: str,
    *,
    head: HeadSpec | str | None = None,
    classes: int | None = None,
    regression: bool | int = False,
    outputs: int | None = None,
    trainable: str | None = None,
    match: str = "full",
    input_shape: Sequence[int | None] | None = None,
    name: str = "built",
    seed: int | None = None,
    exits: Sequence[str] | None = None,
    preprocess: str | None = None,
    unsafe: bool | None = None,
) -> BuiltNetwork:
    """Build a new network from the layers of ``base_ref`` that the scope ``reuse`` selects.

    Args:
        store: the store holding the base.
        base_ref: ``NAME`` or ``NAME:VERSION`` of the base.
        reuse: scope pattern over layer paths (see :func:`reuse.graph.select.select_layers`).
        head: a :class:`HeadSpec` or its short string; may be empty when ``classes``/``regression`` is given.
        classes: append a softmax output layer with this many classes.
        regression: append a linear output layer (True: one target; an int: that many).
        outputs: the number of regression targets given apart from the flag (needs ``regression``).
        trainable: scope pattern (same ``match`` mode) of reused layers to leave trainable; others are frozen.
        match: ``"full"`` or ``"prefix"`` for both patterns.
        input_shape: the new input's shape without batch dimension (one entry only); default: the shape of
            the base tensor the entry stands for.
        name: the Keras model name.
        seed: makes head initialisation and dropout reproducible.
        exits: selected layers whose outputs end the reused part (default: the one tensor no selected layer
            reads); several are joined along the last axis before the head.
        preprocess: a preprocessing spec (:mod:`reuse.preprocess_spec`) put in front of the reused layers
            as a ``reuse>Preprocess`` layer, so the new network takes raw pixels; ``none`` for no stage.
            Without it, a base recognised as a keras.applications model that expects preprocessing gets
            a warning in the lineage (``warnings``).
        unsafe: Lambda layers may be selected (their Python code is rebuilt); None: as this process allows
            (``reuse.trust.allow_unsafe_code``, the CLI's ``--unsafe``).

    Returns:
        The uncompiled model and its lineage dict (see docs/building.md).

    Raises:
        NotFound, InvalidPattern, NoLayersMatched, InvalidInput, IncompatibleShapes, UnsafeModel,
        StoreCorrupt.
    """
    spec, full_head, regression = plan_head(head, classes=classes, regression=regression, outputs=outputs)
    shape_override = _input_shape(input_shape)
    ref = store.resolve(base_ref)
    base = str(ref)
    unsafe = unsafe_code_allowed() if unsafe is None else unsafe
    arch, plan, keep_trainable = plan_build(store, ref, reuse, trainable=trainable, match=match, exits=exits,
                                            unsafe=unsafe)
    weights = store.read_weights(ref, [p for p in plan.layers if not arch.node(p).op])  # operations hold none
    specs = _entry_specs(arch, plan, shape_override, unsafe)
    stage = plan_stage(arch, plan, specs, preprocess, base)
    output = "classes" if classes is not None else ("regression" if regression is not False else None)
    model, head_names, new_names = _assemble(arch, plan, weights, specs, full_head, keep_trainable, base,
                                             name, seed, output_appended=full_head is not spec, output=output,
                                             stage=stage, unsafe=unsafe)
    lineage = {
        "format": LINEAGE_FORMAT,
        "operation": "build",
        "base": {"name": ref.name, "version": ref.version},
        "scope": reuse,
        "match": match,
        "trainable": trainable,
        "head": spec.to_string(),
        "head_spec": spec.to_dict(),
        "output": _output_entry(classes, regression),
        "input_shape": list(specs[0][1]) if len(specs) == 1 else [list(s[1]) for s in specs],
        "inputs": [{"name": input_name, "shape": list(shape), "dtype": dtype, "from": entry.source}
                   for (input_name, shape, dtype), entry in zip(specs, plan.entries, strict=True)],
        "exits": [{"layer": producer(arch, r), "index": r.index} for r in plan.exits],
        "layers": [
            {"name": new_names[p], "path": p, "class_name": arch.node(p).class_name,
             "trainable": p in keep_trainable, "params": int(sum(a.size for _, a in weights.get(p, []))),
             "from": {"name": ref.name, "version": ref.version, "layer": p},
             **({"op": True} if arch.node(p).op else {})}
            for p in plan.layers
        ],
        "skipped": [{"name": p, "class_name": arch.node(p).class_name} for p in plan.skipped],
        "left_out": {k: list(v) for k, v in plan.left_out.items()},
        "head_layers": head_names,
        "preprocess": stage.lineage([s[0] for s in specs]),
        "base_family": stage.family.to_dict() if stage.family else None,
        "warnings": list(stage.warnings),
    }
    return BuiltNetwork(model, lineage)


def plan_preprocess(store: ModelStore, base_ref: Any, reuse: str, preprocess: str | None, *,
                    match: str = "full", exits: Sequence[str] | None = None,
                    input_shape: Sequence[int | None] | None = None) -> StagePlan:
    """The preprocessing checks of a build (no weight read): ``preprocess`` against the new network's
    inputs, and the warning a keras.applications base gets without it (see reuse.build.stage)."""
    ref = store.resolve(base_ref)
    arch, plan, _ = plan_build(store, ref, reuse, match=match, exits=exits)
    return plan_stage(arch, plan, _entry_specs(arch, plan, _input_shape(input_shape)), preprocess, str(ref))


def _output_entry(classes: int | None, regression: bool | int) -> dict[str, int] | None:
    if classes is not None:
        return {"classes": int(classes)}
    if regression is not False:
        return {"regression": 1 if regression is True else int(regression)}
    return None


# -- the entries: an Input per base tensor the selection reads ---------------------------------------
def _entry_specs(arch: Architecture, plan: Plan, override: tuple | None,
                 unsafe: bool = False) -> list[tuple[str, tuple, str]]:
    """(input name, shape without batch, dtype) for each entry, in the plan's order."""
    if override is not None and len(plan.entries) != 1:
        raise InvalidInput(f"an input shape can only be given for one input; the selection reads "
                           f"{len(plan.entries)} ({', '.join(e.source for e in plan.entries)})")
    found = {e.ref: arch.specs.get(e.ref) for e in plan.entries}
    missing = [r for r, s in found.items() if s is None or s.shape is None or s.dtype is None]
    inferred = _infer_specs(arch, missing, unsafe) if missing and override is None else {}
    out: list[tuple[str, tuple, str]] = []
    taken = set(plan.layers) | {arch.node(p).leaf for p in plan.layers}
    base_entries = sum(1 for e in plan.entries if e.ref.input)
    for e in plan.entries:
        spec = inferred.get(e.ref) or found[e.ref]
        dtype = (spec.dtype if spec and spec.dtype else None) or "float32"
        if override is not None:
            shape = override
        else:
            if spec is None or spec.shape is None or len(spec.shape) < 2:
                raise InvalidInput(f"the base does not record the shape of {e.source}'s output, which the "
                                   "selection reads; pass an input shape")
            shape = tuple(spec.shape[1:])
        if e.ref.input:
            input_name = e.ref.input
        elif len(plan.entries) == 1 or (len(plan.entries) - base_entries == 1 and "input" not in taken):
            input_name = "input"
        else:
            input_name = _unique(f"{e.source.rsplit('/', 1)[-1]}_output", taken)
        taken.add(input_name)
        out.append((input_name, shape, dtype))
    return out


def _unique(wanted: str, taken: set[str]) -> str:
    name, n = wanted, 1
    while name in taken:
        name, n = f"{wanted}_{n}", n + 1
    return name


def _infer_specs(arch: Architecture, refs: list[Ref], unsafe: bool = False) -> dict[Ref, Any]:
    """Shapes the config does not record (Sequential models, tf.keras 2 files, inside a nested Sequential):
    replay the layers above ``refs`` on the base's inputs with fresh, unloaded copies."""
    import keras

    from reuse.graph.arch import TensorSpec

    needed = upstream({c.key: c for c in arch.calls}, refs)
    tensors: dict[Ref, Any] = {}
    for name, shape in arch.inputs.items():
        if shape is None or len(shape) < 2:
            raise InvalidInput(f"the base does not record the shape of its input {name}; pass an input shape")
        tensors[Ref(input=name)] = keras.Input(batch_shape=shape,
                                               dtype=arch.input_dtypes.get(name), name=name)
    layers: dict[str, Any] = {}
    for call in arch.calls:
        if call.key in needed:
            layer = layers.get(call.layer) or layers.setdefault(call.layer, new_layer(arch.node(call.layer),
                                                                                       unsafe=unsafe))
            run_call(arch, call, layer, tensors, {})
    out = {}
    for r in refs:
        t = tensors.get(r)
        if t is not None:
            out[r] = TensorSpec(tuple(t.shape), str(t.dtype))
    return out


def _new_names(arch: Architecture, plan: Plan) -> dict[str, str]:
    leaf_count: dict[str, int] = {}
    for p in plan.layers:
        leaf = arch.node(p).leaf or p
        leaf_count[leaf] = leaf_count.get(leaf, 0) + 1
    return {p: (arch.node(p).leaf or p) if leaf_count[arch.node(p).leaf or p] == 1 else p.replace("/", "_")
            for p in plan.layers}


def _assemble(arch: Architecture, plan: Plan, weights: dict[str, list[tuple[str, np.ndarray]]],
              specs: list[tuple[str, tuple, str]], head: HeadSpec, keep_trainable: set[str], base: str,
              name: str, seed: int | None, *, output_appended: bool,
              output: str | None, stage: StagePlan | None = None, unsafe: bool = False
              ) -> tuple[Any, list[str], dict[str, str]]:
    import keras

    from reuse.heads.layers import apply_head

    names = _new_names(arch, plan)
    tensors: dict[Ref, Any] = {}
    inputs = []
    stage_name = None
    for i, (entry, (input_name, shape, dtype)) in enumerate(zip(plan.entries, specs, strict=True)):
        t = keras.Input(shape=shape, dtype=dtype, name=input_name)
        inputs.append(t)
        tensors[entry.ref] = t
        if stage is not None and stage.spec is not None and stage.entry == i:
            from reuse.layers.preprocess import Preprocess

            stage_name = _unique("preprocess", set(names.values()) | {s[0] for s in specs})
            tensors[entry.ref] = Preprocess(stage.spec.text, stage.spec.to_dict()["ops"], name=stage_name)(t)
    layers: dict[str, Any] = {}
    for call in plan.calls:
        node = arch.node(call.layer)
        first_call = call.layer not in layers
        layer = layers.get(call.layer) or layers.setdefault(call.layer, new_layer(node, names[call.layer],
                                                                                   unsafe=unsafe))
        got = tensors[plan.substitute.get(call.inputs[0], call.inputs[0])].shape if call.inputs else None
        run_call(arch, call, layer, tensors, plan.substitute, names)
        if first_call and isinstance(layer, keras.layers.Layer):
            _copy_weights(layer, weights[call.layer], node, base, got)
            layer.trainable = call.layer in keep_trainable
    outs = [tensors[r] for r in plan.exits]
    source = f"layer {names[producer(arch, plan.exits[0])]}"
    if len(outs) == 1:
        x = outs[0]
    else:
        try:
            x = keras.layers.Concatenate(name=_unique("exits", set(names.values())))(outs)
        except ValueError as exc:
            shapes = ", ".join(fmt_shape(t.shape) for t in outs)
            raise IncompatibleShapes(f"the exits have shapes {shapes}, which cannot be joined along the last "
                                     f"axis: {first_line(exc)}") from exc
        source = "the joined exits"
    taken = set(names.values()) | {s[0] for s in specs} | ({stage_name} if stage_name else set())
    x, head_names = apply_head(head, x, taken=taken, seed=seed, output_appended=output_appended,
                               output=output, source=source)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], x, name=name), head_names, names
