"""Plain records the store hands out: a version's info, a layer's summary, a check report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reuse.names import Versioned


@dataclass(frozen=True)
class LayerInfo:
    """One top-level layer of a stored model, as ``reuse show`` lists it."""

    name: str
    class_name: str
    output_shape: Any
    params: int
    trainable: bool
    depth: int = 0  # how many nested models hold it (0: a top-level layer); ``name`` is then its path
    inputs: tuple[str, ...] = ()  # the layers (paths) or inputs it reads, when known

    def to_dict(self) -> dict[str, Any]:
        """The five summary fields; ``depth`` and ``inputs`` only when known (graph descriptions)."""
        d = asdict(self)
        if not self.depth and not self.inputs:
            d.pop("depth")
            d.pop("inputs")
        else:
            d["inputs"] = list(self.inputs)
        return d


@dataclass(frozen=True, kw_only=True)
class StoreEntry:
    """What the store keeps of everything registered in it (a model version, an uploaded dataset) beside
    its content: when it was made, and the description and tags it was given. Keyword-only, so each kind
    of entry lists its own fields first."""

    created: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo(StoreEntry, Versioned):
    """What the store knows of one version, without loading its weights."""

    name: str
    version: int
    path: Path
    input_shape: Any = None
    output_shape: Any = None
    class_names: list[str] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    keras_version: str | None = None
    backend: str | None = None
    tensorflow_version: str | None = None
    params: int | None = None
    source: str | None = None
    unsafe_layers: list[str] = field(default_factory=list)
    size_bytes: int | None = None
    # The preprocessing stage the model carries ({"spec", "ops", "layer"}), and the keras.applications
    # architecture it was recognised as (reuse.graph.applications.BaseFamily.to_dict()); None when not.
    preprocess: dict[str, Any] | None = None
    base_family: dict[str, Any] | None = None
    model_class: str | None = None  # a functional subclass's class (module.Name), stored as its graph

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["path"] = str(self.path)
        d["ref"] = self.ref
        return d


# Keys of the stored metadata that become ModelInfo fields (the rest: name, version, path, size).
META_KEYS = tuple(
    k for k in ModelInfo.__dataclass_fields__ if k not in ("name", "version", "path", "size_bytes")
)


def info_from_meta(name: str, version: int, path: Path, meta: dict[str, Any], size: int | None) -> ModelInfo:
    return ModelInfo(name=name, version=version, path=path, size_bytes=size,
                     **{k: meta[k] for k in META_KEYS if meta.get(k) is not None})


def layers_from_meta(meta: dict[str, Any]) -> list[LayerInfo]:
    return [LayerInfo(**row) for row in meta.get("layers", [])]


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one version file: every checksum verified, or what is wrong with it."""

    ref: str
    path: str
    ok: bool
    problem: str | None = None
    bytes_verified: int = 0


@dataclass(frozen=True)
class CheckReport:
    """What ``ModelStore.check`` found (and, with ``repair``, what it fixed).

    ``missing_from_index``, ``stale_in_index`` and ``mismatched_in_index`` describe the index as it was
    before any repair; ``temp_files`` lists leftovers of writers that are gone: notes, not damage (the
    next write to their folder sweeps them). With ``repair``, the index is rebuilt and those temp files
    removed; damaged files are never removed, only reported.
    """

    root: str
    files: tuple[FileCheck, ...] = ()
    missing_from_index: tuple[str, ...] = ()
    stale_in_index: tuple[str, ...] = ()
    mismatched_in_index: tuple[str, ...] = ()
    index_unreadable: str | None = None
    temp_files: tuple[str, ...] = ()
    stray_files: tuple[str, ...] = ()
    repaired: bool = False
    removed_temp_files: tuple[str, ...] = ()

    @property
    def damaged(self) -> tuple[FileCheck, ...]:
        return tuple(f for f in self.files if not f.ok)

    @property
    def index_problems(self) -> bool:
        return bool(self.missing_from_index or self.stale_in_index or self.mismatched_in_index
                    or self.index_unreadable)

    @property
    def ok(self) -> bool:
        """True when nothing is damaged now (after the repair, if one was asked for); notes don't count."""
        if self.damaged:
            return False
        return self.repaired or not self.index_problems

    @property
    def notes(self) -> tuple[str, ...]:
        """What was found that is not damage: temp files of writers that are gone, unless removed."""
        gone = set(self.removed_temp_files)
        return tuple(f"temp file of a writer that is gone: {t} "
                     + ("(--repair removes it)" if "://" in t else "(the next write to its folder, or "
                        "--repair, removes it)") for t in self.temp_files if t not in gone)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["files"] = [asdict(f) for f in self.files]
        d["damaged"] = [f.ref for f in self.damaged]
        d["notes"] = list(self.notes)
        d["ok"] = self.ok
        return d
