"""The facade that both the CLI and the gRPC servicers call.

Each method takes plain values, calls the core, and returns plain values or core objects. No Click,
no gRPC, no printing here. Sections are grouped by area so they grow independently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from reuse.config import store_root
from reuse.store import CheckReport, LayerInfo, ModelInfo, ModelStore


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

    # ---------------------------------------------------------------------------------------
    # Training, fine-tuning, evaluation, prediction, pretraining (issue 4)
    # ---------------------------------------------------------------------------------------

    # ---------------------------------------------------------------------------------------
    # Advisor (issue 7)
    # ---------------------------------------------------------------------------------------
