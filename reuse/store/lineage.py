"""Ancestry of a stored model: the chain of bases it was built from, read from the ``lineage`` metadata.

Any operation that makes a model from another records ``lineage["base"] = {"name": ..., "version": ...}``
(see docs/building.md); :func:`ancestry` follows those links back to a model with no base.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reuse.errors import NotFound
from reuse.store import ModelRef, ModelStore

MAX_DEPTH = 100


def _base_ref(lineage: dict[str, Any]) -> ModelRef | None:
    base = lineage.get("base") if isinstance(lineage, dict) else None
    if not isinstance(base, dict) or "name" not in base or "version" not in base:
        return None
    try:
        return ModelRef(str(base["name"]), int(base["version"]))
    except (TypeError, ValueError):
        return None


def ancestry(store: ModelStore, ref: str) -> list[dict[str, Any]]:
    """Entries from ``ref`` back to its oldest ancestor, newest first.

    Each entry: ``model`` ("name:version"), ``name``, ``version``, ``created``, ``description``,
    ``operation`` (e.g. "build", or null for a model registered directly), ``base`` ("name:version" or
    null), ``lineage`` (the stored dict) and ``missing`` (true when the base is no longer in the store;
    the walk stops there).

    Raises:
        NotFound: ``ref`` itself is not in the store.
    """
    entries: list[dict[str, Any]] = []
    current: ModelRef | None = store.resolve(ref)
    seen: set[str] = set()
    while current is not None and str(current) not in seen and len(entries) < MAX_DEPTH:
        seen.add(str(current))
        try:
            info = store.info(current)
        except NotFound:
            entries.append({"model": str(current), "name": current.name, "version": current.version,
                            "created": None, "description": None, "operation": None, "base": None,
                            "lineage": {}, "missing": True})
            break
        lineage = info.lineage or {}
        base = _base_ref(lineage)
        entries.append({
            "model": info.ref, "name": info.name, "version": info.version, "created": info.created,
            "description": info.description, "operation": lineage.get("operation"),
            "base": str(base) if base else None, "lineage": lineage, "missing": False,
        })
        current = base
    return entries


def layer_origins(entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    """For each reused layer of the newest model, the chain of ``model/layer`` it was copied through,
    oldest last (e.g. ``{"hidden1": ["b:1/hidden1", "a:1/hidden1"]}``)."""
    if not entries:
        return {}
    origins: dict[str, list[str]] = {}
    for layer in entries[0]["lineage"].get("layers", []):
        chain: list[str] = []
        name = (layer.get("from") or {}).get("layer", layer.get("name"))
        for entry in entries[1:]:
            if entry["missing"]:
                chain.append(f"{entry['model']}/{name} (missing)")
                break
            chain.append(f"{entry['model']}/{name}")
            copied = {lay.get("name"): lay for lay in entry["lineage"].get("layers", [])}.get(name)
            if copied is None:  # trained in that model, not copied into it
                break
            name = (copied.get("from") or {}).get("layer", name)
        origins[str(layer.get("name"))] = chain
    return origins


# Operations whose base is the same network before more training: its history continues the base's.
CONTINUES_TRAINING = frozenset({"train", "finetune"})


@dataclass(frozen=True)
class HistorySegment:
    """The epochs one version added to a network's training: ``model`` ("name:version"), ``operation``
    (``train``, ``finetune hidden3``, ``as registered`` for a version registered with its history ...) and
    its per-epoch ``history``."""

    model: str
    operation: str
    history: dict[str, list[float]]

    @property
    def epochs(self) -> int:
        return len(self.history.get("loss") or [])


def training_history(store: ModelStore, ref: str) -> list[HistorySegment]:
    """The whole training history of ``ref``'s network along its lineage, oldest segment first.

    Starts with ``ref``'s own history and follows its base while the version was made by training the
    base further (train, finetune); stops at a build (a new network from copied layers: its base's
    history belongs to another network), at a version without history, and at a missing base.

    Raises:
        NotFound: ``ref`` is not in the store.
    """
    segments: list[HistorySegment] = []
    for entry in ancestry(store, ref):
        if entry["missing"]:
            break
        history = store.info(entry["model"]).history or {}
        if not history.get("loss"):
            break
        op = entry["operation"]
        steps = entry["lineage"].get("steps") or []
        unfrozen = (steps[-1].get("unfrozen") or []) if op == "finetune" and steps else []
        segments.append(HistorySegment(entry["model"],
                                       " ".join([str(op or "as registered"), *unfrozen]), history))
        if op not in CONTINUES_TRAINING:
            break
    return segments[::-1]


MAX_GRAPH_VERSIONS = 40


def _graph_node(info: Any) -> dict[str, Any]:
    lineage = info.lineage or {}
    return {"id": info.ref, "name": info.name, "version": info.version, "operation": lineage.get("operation"),
            "description": info.description, "created": info.created, "missing": False, "layers": {}}


def _layer(node: dict[str, Any], name: str, **marks: Any) -> None:
    entry = node["layers"].setdefault(name, {"name": name, "reused": False, "frozen": None, "via": None})
    entry.update({k: v for k, v in marks.items() if v is not None})


def lineage_graph(store: ModelStore, ref: str, *, max_versions: int = MAX_GRAPH_VERSIONS) -> dict[str, Any]:
    """The versions ``ref`` was made from, as a graph down to layers, breadth first from ``ref``.

    Follows every ``base`` (build, train, fine-tune, advise: which layers came from which base version)
    and every member of an ensemble (each member network feeds the nested layer named by
    ``members[].layer``); a version the advisor trained from scratch points at ``architecture_from`` (no
    weights copied).

    Returns:
        ``{"root", "versions": [...], "edges": [...], "layer_edges": [...], "truncated"}``. A version:
        ``id`` ("name:version"), ``name``, ``version``, ``operation``, ``description``, ``created``,
        ``missing`` (deleted from the store), ``layers`` (the layers that take part in an edge, in order:
        ``name``, ``reused`` (copied into this version), ``frozen`` (when known), ``via`` (the member a
        nested layer holds)). An edge: ``from``, ``to`` (version ids), ``op``. A layer edge: ``from`` and
        ``to`` as ``[version id, layer name]``, the layer ``null`` for a whole member network.

    Raises:
        NotFound: ``ref`` is not in the store.
    """
    root = str(store.resolve(ref))
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    layer_edges: list[dict[str, Any]] = []
    todo, truncated = [root], False
    while todo:
        key = todo.pop(0)
        if key in nodes:
            continue
        if len(nodes) >= max_versions:
            truncated = True
            break
        try:
            info = store.info(key)
        except NotFound:
            name, _, version = key.partition(":")
            nodes[key] = {"id": key, "name": name, "version": int(version), "operation": None,
                          "description": None, "created": None, "missing": True, "layers": {}}
            continue
        node = nodes[key] = _graph_node(info)
        lineage, op = info.lineage or {}, node["operation"]
        if op == "ensemble":
            for m in lineage.get("members") or []:
                member = f"{m.get('name')}:{m.get('version')}"
                edges.append({"from": member, "to": key, "op": "ensemble"})
                if m.get("layer"):
                    _layer(node, str(m["layer"]), via=member)
                    layer_edges.append({"from": [member, None], "to": [key, str(m["layer"])]})
                todo.append(member)
            continue
        base = _base_ref(lineage)
        if base is None:
            arch = lineage.get("architecture_from")
            if isinstance(arch, dict) and "name" in arch and "version" in arch:
                edges.append({"from": f"{arch['name']}:{arch['version']}", "to": key, "op": "architecture"})
                todo.append(f"{arch['name']}:{arch['version']}")
            continue
        edges.append({"from": str(base), "to": key, "op": op or "derived"})
        todo.append(str(base))
        unfrozen = {n for s in lineage.get("steps") or [] for n in (s.get("unfrozen") or [])}
        for lay in lineage.get("layers") or []:
            name = str(lay.get("name"))
            source = name if op in CONTINUES_TRAINING else str((lay.get("from") or {}).get("layer", name))
            _layer(node, name, reused=True, frozen=not lay.get("trainable", True) and name not in unfrozen)
            layer_edges.append({"from": [str(base), source], "to": [key, name]})
    for e in layer_edges:
        source = nodes.get(e["from"][0])
        if source is not None and e["from"][1] is not None:
            _layer(source, e["from"][1])
    versions = [{**n, "layers": list(n["layers"].values())} for n in nodes.values()]
    return {"root": root, "versions": versions, "edges": [e for e in edges if e["from"] in nodes],
            "layer_edges": [e for e in layer_edges if e["from"][0] in nodes], "truncated": truncated}
