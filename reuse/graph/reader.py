"""Reading an :class:`~reuse.graph.arch.Architecture` from a stored model's Keras ``model_config`` alone.

:func:`parse_architecture` flattens the config into a graph of layer calls, opening nested models.
Both Keras 3 configs (``{"args": ..., "kwargs": ...}`` inbound nodes) and tf.keras 2 configs (lists of
``[layer, node, tensor, kwargs]``) are read; Sequential models are chains.
"""

from __future__ import annotations

from typing import Any

from reuse.errors import InvalidInput, StoreCorrupt
from reuse.graph.arch import (
    MAX_DEPTH,
    MODEL_CLASSES,
    SEPARATOR,
    Architecture,
    Call,
    Container,
    LayerNode,
    Ref,
    Shape,
    TensorSpec,
)


def _shape(value: Any) -> Shape | None:
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, int) for v in value):
        return tuple(value)
    return None


def _dtype(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # a DTypePolicy
        name = (value.get("config") or {}).get("name")
        return name if isinstance(name, str) else None
    return None


class _Scope:
    """One model's name table while its config is flattened."""

    def __init__(self, graph: _Builder, prefix: str, suffix: str, containers: tuple[str, ...]) -> None:
        self.graph = graph
        self.prefix = prefix  # path prefix, e.g. "backbone/"
        self.suffix = suffix  # call suffix of the enclosing model's call, e.g. "#1"
        self.containers = containers
        self.table: dict[tuple[str, int], Any] = {}  # (layer name, node index) -> call key | list[Ref]

    def lookup(self, name: str, node: int, tensor: int) -> Ref | None:
        got = self.table.get((name, node))
        if got is None:
            return None
        if isinstance(got, list):
            if tensor >= len(got):
                raise StoreCorrupt(f"model_config: {name} has no output {tensor}")
            return got[tensor]
        return Ref(call=got, index=tensor)


class _Builder:
    def __init__(self) -> None:
        self.layers: dict[str, LayerNode] = {}
        self.calls: list[Call] = []
        self.specs: dict[Ref, TensorSpec] = {}
        self.children: dict[str, list[str]] = {}  # container path ("" for the base) -> paths, in order
        self.container_class: dict[str, tuple[str, tuple[str, ...]]] = {}

    def tree(self) -> tuple[list[str], list[Container]]:
        """Every path in display order (a container before what it holds), and the containers."""
        order: list[str] = []

        def visit(parent: str) -> list[str]:
            leaves: list[str] = []
            for path in self.children.get(parent, []):
                order.append(path)
                if path in self.container_class:
                    leaves.extend(visit(path))
                elif path in self.layers:
                    leaves.append(path)
            held[parent] = leaves
            return leaves

        held: dict[str, list[str]] = {}
        visit("")
        containers = [Container(p, self.container_class[p][0], tuple(held.get(p, [])),
                                self.container_class[p][1])
                      for p in order if p in self.container_class]
        return order, containers

    # -- one model -----------------------------------------------------------------------------
    def expand(self, kind: str, cfg: dict[str, Any], scope: _Scope,
               inputs: list[Ref], depth: int) -> list[Ref]:
        if depth > MAX_DEPTH:
            raise InvalidInput(f"models nested more than {MAX_DEPTH} deep are not supported")
        entries = cfg.get("layers")
        if not isinstance(entries, list):
            raise StoreCorrupt("model_config: a model without a layer list")
        if kind == "Sequential":
            return self._sequential(entries, scope, inputs, depth)
        return self._functional(cfg, entries, scope, inputs, depth)

    def _sequential(self, entries: list[Any], scope: _Scope, inputs: list[Ref], depth: int) -> list[Ref]:
        if len(inputs) != 1:
            raise StoreCorrupt("model_config: a Sequential model called with several inputs")
        x = inputs[0]
        for entry in entries:
            cls, lcfg = _entry_parts(entry)
            if cls == "InputLayer":
                continue
            name = _entry_name(entry, lcfg)
            self._declare(entry, cls, lcfg, name, scope)
            x = self._call(entry, cls, lcfg, name, scope, [x], {}, depth)[0]
        return [x]

    def _functional(self, cfg: dict[str, Any], entries: list[Any], scope: _Scope, inputs: list[Ref],
                    depth: int) -> list[Ref]:
        in_layers = _node_list(cfg.get("input_layers"))
        if len(in_layers) != len(inputs):
            raise StoreCorrupt(f"model_config: a model with {len(in_layers)} inputs called with "
                               f"{len(inputs)}")
        for (lname, node, _), ref in zip(in_layers, inputs, strict=True):
            scope.table[(lname, node)] = [ref]
        pending: list[tuple[dict[str, Any], str, dict[str, Any], str, int, Any]] = []
        for entry in entries:
            cls, lcfg = _entry_parts(entry)
            name = _entry_name(entry, lcfg)
            if cls == "InputLayer":
                if (name, 0) not in scope.table:
                    raise StoreCorrupt(f"model_config: input layer {name} is not among the model's inputs")
                continue
            self._declare(entry, cls, lcfg, name, scope)
            for k, node in enumerate(entry.get("inbound_nodes") or []):
                pending.append((entry, cls, lcfg, name, k, node))
        while pending:
            progressed = False
            rest = []
            for item in pending:
                entry, cls, lcfg, name, k, node = item
                parsed = _parse_node(node, scope, self.specs, scope.prefix + name)
                if parsed is None:
                    rest.append(item)
                    continue
                args, kwargs = parsed
                outs = self._call(entry, cls, lcfg, name, scope, args, kwargs, depth, node_index=k)
                scope.table[(name, k)] = (
                    outs if isinstance(outs, list) and cls in MODEL_CLASSES else outs[0].call
                )
                progressed = True
            if not progressed:
                names = ", ".join(sorted({p[3] for p in rest})[:20])
                raise StoreCorrupt(f"model_config: layers {names} read tensors that no layer produces, or "
                                   "read their own outputs (a cycle)")
            pending = rest
        outs = []
        for lname, node, tensor in _node_list(cfg.get("output_layers")):
            ref = scope.lookup(lname, node, tensor)
            if ref is None:
                raise StoreCorrupt(f"model_config: output {lname} is not produced by any layer")
            outs.append(ref)
        return outs

    # -- one layer -----------------------------------------------------------------------------
    def _declare(self, entry: dict[str, Any], cls: str, lcfg: dict[str, Any], name: str,
                 scope: _Scope) -> None:
        path = scope.prefix + name
        parent = scope.containers[-1] if scope.containers else ""
        siblings = self.children.setdefault(parent, [])
        if path not in siblings:
            siblings.append(path)
        if cls in MODEL_CLASSES or path in self.layers:
            return
        self.layers[path] = LayerNode(path, cls, lcfg, (), 0, None, leaf=name, module=entry.get("module"),
                                      registered_name=entry.get("registered_name"),
                                      containers=scope.containers)

    def _call(self, entry: dict[str, Any], cls: str, lcfg: dict[str, Any], name: str, scope: _Scope,
              args: Any, kwargs: Any, depth: int, node_index: int = 0) -> list[Ref]:
        path = scope.prefix + name
        suffix = scope.suffix + (f"#{node_index}" if node_index else "")
        if cls in MODEL_CLASSES:
            inner = _Scope(self, path + SEPARATOR, suffix, (*scope.containers, path))
            outs = self.expand(cls, lcfg, inner, _refs(args), depth + 1)
            self.container_class.setdefault(path, (cls, scope.containers))
            return outs
        key = path + suffix
        inputs = tuple(_refs([args, kwargs]))
        self.calls.append(Call(key, path, args, kwargs, inputs))
        node = self.layers[path]
        sources = tuple(dict.fromkeys((*node.inputs, *(self._source(r) for r in inputs))))
        shape = node.input_shape
        if node.calls == 0 and len(inputs) == 1:
            spec = self.specs.get(inputs[0])
            shape = spec.shape if spec else None
        self.layers[path] = LayerNode(node.name, node.class_name, node.config, sources, node.calls + 1, shape,
                                      leaf=node.leaf, module=node.module,
                                      registered_name=node.registered_name, containers=node.containers)
        return [Ref(call=key, index=0)]

    def _source(self, ref: Ref) -> str:
        if ref.input:
            return ref.input
        return next(c.layer for c in reversed(self.calls) if c.key == ref.call)


def _entry_parts(entry: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise StoreCorrupt("model_config: a layer entry without a class name")
    lcfg = entry.get("config") or {}
    if not isinstance(lcfg, dict):
        raise StoreCorrupt(f"model_config: layer entry {entry['class_name']} has no config mapping")
    return entry["class_name"], lcfg


def _entry_name(entry: dict[str, Any], lcfg: dict[str, Any]) -> str:
    name = entry.get("name") or lcfg.get("name")
    if not isinstance(name, str) or not name:
        raise StoreCorrupt(f"model_config: a {entry.get('class_name')} layer without a name")
    return name


def _node_list(value: Any) -> list[tuple[str, int, int]]:
    """``input_layers``/``output_layers``: ``[name, node, tensor]``, a list of them, or a dict of them by
    name (a model called on a dict, as KerasHub's text backbones are), flattened in order."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        value = [value]
    if isinstance(value, dict):
        value = list(value.values())
    out = []
    for item in value or []:
        if not (isinstance(item, list) and len(item) >= 3 and isinstance(item[0], str)):
            raise StoreCorrupt(f"model_config: malformed input/output entry {item!r}")
        out.append((item[0], _int(item[1]), _int(item[2])))
    return out


def _refs(obj: Any) -> list[Ref]:
    if isinstance(obj, Ref):
        return [obj]
    if isinstance(obj, dict):
        return [r for v in obj.values() for r in _refs(v)]
    if isinstance(obj, (list, tuple)):
        return [r for v in obj for r in _refs(v)]
    return []


class _Unresolved(Exception):
    pass


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreCorrupt(f"model_config: a node or tensor index {value!r} that is not an integer")
    return value


MAX_ARG_DEPTH = 64  # nesting of one call's arguments (a list of tensors in a tuple is 2)


def _parse_node(node: Any, scope: _Scope, specs: dict[Ref, TensorSpec], owner: str) -> tuple[Any, Any] | None:
    """(args, kwargs) of one recorded call with Ref in place of tensors; None if a producer is pending."""

    def tensor(name: str, node_index: int, tensor_index: int, cfg: dict[str, Any]) -> Ref:
        ref = scope.lookup(name, node_index, tensor_index)
        if ref is None:
            raise _Unresolved
        if ref not in specs and ("shape" in cfg or "dtype" in cfg):
            specs[ref] = TensorSpec(_shape(cfg.get("shape")), _dtype(cfg.get("dtype")))
        return ref

    def walk(obj: Any, depth: int = 0) -> Any:
        if depth > MAX_ARG_DEPTH:
            raise StoreCorrupt(f"model_config: the arguments of {owner} are nested more than {MAX_ARG_DEPTH} "
                               "levels deep")
        if isinstance(obj, dict):
            if obj.get("class_name") == "__keras_tensor__":
                cfg = obj.get("config") or {}
                hist = cfg.get("keras_history") if isinstance(cfg, dict) else None
                if not (isinstance(hist, list) and len(hist) == 3):
                    raise StoreCorrupt("model_config: a tensor without keras_history")
                return tensor(str(hist[0]), _int(hist[1]), _int(hist[2]), cfg)
            if obj.get("class_name") == "__tuple__":
                values = (
                    (obj.get("config") or {}).get("value", []) if isinstance(obj.get("config"), dict) else []
                )
                return tuple(walk(v, depth + 1) for v in values)
            return {k: walk(v, depth + 1) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v, depth + 1) for v in obj]
        return obj

    try:
        if isinstance(node, dict):  # Keras 3
            return list(walk(node.get("args") or [])), walk(node.get("kwargs") or {})
        if isinstance(node, list):  # tf.keras 2: [[name, node, tensor, kwargs], ...]
            refs, kwargs = [], {}
            for item in node:
                if not (isinstance(item, list) and len(item) >= 3):
                    raise StoreCorrupt(f"model_config: malformed inbound node {item!r}")
                refs.append(tensor(str(item[0]), _int(item[1]), _int(item[2]), {}))
                if len(item) > 3 and isinstance(item[3], dict):
                    kwargs.update(walk(item[3]))
            return ([refs[0]] if len(refs) == 1 else [refs]), kwargs
    except _Unresolved:
        return None
    raise StoreCorrupt(f"model_config: malformed inbound node {node!r}")


def parse_architecture(model_config: dict[str, Any]) -> Architecture:
    """Read layers, nested models and their calls from a Keras legacy ``model_config`` dict.

    Raises:
        StoreCorrupt: the config does not have the expected layout.
        InvalidInput: the model is not a Sequential or functional model.
    """
    try:
        kind = model_config["class_name"]
        cfg = model_config["config"]
        entries = cfg["layers"]
    except (KeyError, TypeError) as exc:
        raise StoreCorrupt(f"model_config lacks {exc}; not a Keras model architecture") from exc
    if kind not in MODEL_CLASSES:
        raise InvalidInput(f"cannot reuse layers of a {kind!r} model: expected a Sequential or "
                           "functional model")
    inputs: dict[str, Shape | None] = {}
    dtypes: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else []:
        cls, lcfg = _entry_parts(entry)
        if cls == "InputLayer":
            name = _entry_name(entry, lcfg)
            inputs[name] = _shape(lcfg.get("batch_shape") or lcfg.get("batch_input_shape"))
            dtypes[name] = _dtype(lcfg.get("dtype")) or "float32"
    builder = _Builder()
    if kind == "Sequential":
        if not inputs:  # no InputLayer entry: the shape may be recorded elsewhere
            first = entries[0].get("config", {}) if entries and isinstance(entries[0], dict) else {}
            inputs["input"] = _shape(cfg.get("build_input_shape") or first.get("batch_input_shape"))
            dtypes["input"] = "float32"
        in_refs = [Ref(input=next(iter(inputs)))]
    else:
        in_refs = [Ref(input=name) for name, _, _ in _node_list(cfg.get("input_layers"))] or \
            [Ref(input=n) for n in inputs]
    for ref in in_refs:
        builder.specs[ref] = TensorSpec(inputs.get(ref.input), dtypes.get(ref.input))
    outputs = builder.expand(kind, cfg, _Scope(builder, "", "", ()), in_refs, 0)
    order, containers = builder.tree()
    leaves = tuple(builder.layers[p] for p in order if p in builder.layers)
    return Architecture(kind, str(cfg.get("name", "")), inputs, leaves, dtypes, tuple(containers),
                        tuple(builder.calls), tuple(outputs), builder.specs, tuple(order))
