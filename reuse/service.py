"""The facade that both the CLI and the gRPC servicers call.

Each method takes plain values, calls the core, and returns plain values or core objects. No Click,
no gRPC, no printing here. Sections are grouped by area so they grow independently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reuse.config import store_root
from reuse.store import CheckReport, LayerInfo, ModelInfo, ModelStore

if TYPE_CHECKING:
    from reuse.layer_table import LayerTable


class Service:
    """Operations on one model store."""

    def __init__(self, store: str | os.PathLike[str] | None = None) -> None:
        self.store = ModelStore(store_root(store))

    # ---------------------------------------------------------------------------------------
    # Store (issue 2)
    # ---------------------------------------------------------------------------------------
    @property
    def store_root(self) -> Path:
        return self.store.root

    def register_model(self, model: Any, name: str, **meta: Any) -> ModelInfo:
        return self.store.register(model, name, **meta)

    def register_file(self, path: str | os.PathLike[str], name: str, *, unsafe: bool = False,
                      description: str = "", tags: dict[str, str] | None = None) -> ModelInfo:
        return self.store.register_file(path, name, unsafe=unsafe, description=description, tags=tags)

    def list_models(self) -> list[ModelInfo]:
        return self.store.list()

    def model_versions(self, name: str) -> list[ModelInfo]:
        return self.store.versions(name)

    def model_info(self, ref: str) -> ModelInfo:
        return self.store.info(ref)

    def model_layers(self, ref: str) -> list[LayerInfo]:
        return self.store.layers(ref)

    def load_model(self, ref: str, *, unsafe: bool = False) -> Any:
        return self.store.load(ref, safe_mode=not unsafe)

    def delete_version(self, ref: str) -> ModelInfo:
        return self.store.delete(ref)

    def export_model(self, ref: str, out: str | os.PathLike[str], *, overwrite: bool = False,
                     unsafe: bool = False) -> Path:
        return self.store.export(ref, out, overwrite=overwrite, safe_mode=not unsafe)

    def check_store(self, *, repair: bool = False) -> CheckReport:
        return self.store.check(repair=repair)

    # ---------------------------------------------------------------------------------------
    # Selection and building (issue 3)
    # ---------------------------------------------------------------------------------------
    def layer_table(self, ref: str, scope: str | None = None, match: str = "full") -> LayerTable:
        """The layers of ``ref``; with ``scope``, a dry run of the selection (see reuse.layer_table)."""
        from reuse.layer_table import layer_table

        return layer_table(self.store, ref, scope, match)

    def build(
        self,
        new_name: str,
        base_ref: str,
        reuse: str,
        *,
        head: str | None = None,
        head_file: str | os.PathLike[str] | None = None,
        classes: int | None = None,
        regression: bool | int = False,
        trainable: str | None = None,
        match: str = "full",
        input_shape: tuple[int | None, ...] | None = None,
        description: str = "",
        seed: int | None = None,
    ) -> ModelInfo:
        """Build a network from the layers of ``base_ref`` that ``reuse`` selects, plus a head, and
        register it as the next version of ``new_name`` with its lineage (see reuse.build)."""
        from reuse.build import build_network
        from reuse.errors import InvalidInput
        from reuse.heads import load_head_file, parse_head
        from reuse.store import check_name

        check_name(new_name)
        if head is not None and head_file is not None:
            raise InvalidInput("give either a head spec or a head file, not both")
        spec = load_head_file(head_file) if head_file is not None else parse_head(head or "")
        built = build_network(self.store, base_ref, reuse, head=spec, classes=classes, regression=regression,
                              trainable=trainable, match=match, input_shape=input_shape, name=new_name, seed=seed)
        return self.store.register(built.model, new_name, description=description, lineage=built.lineage)

    def lineage(self, ref: str) -> list[dict[str, Any]]:
        """Ancestry of ``ref``, newest first (see reuse.lineage.ancestry)."""
        from reuse.lineage import ancestry

        return ancestry(self.store, ref)

    # ---------------------------------------------------------------------------------------
    # Training, fine-tuning, evaluation, prediction, pretraining (issue 4)
    # ---------------------------------------------------------------------------------------

    # ---------------------------------------------------------------------------------------
    # Advisor (issue 7)
    # ---------------------------------------------------------------------------------------
