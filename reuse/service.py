"""The facade that both the CLI and the gRPC servicers call.

Each method takes plain values, calls the core, and returns plain values or core objects. No Click,
no gRPC, no printing here. Sections are grouped by area so they grow independently.
"""

from __future__ import annotations

import os
from typing import Any

from reuse.config import store_root
from reuse.store import ModelInfo, ModelStore


class Service:
    """Operations on one model store."""

    def __init__(self, store: str | os.PathLike[str] | None = None) -> None:
        self.store = ModelStore(store_root(store))

    # ---------------------------------------------------------------------------------------
    # Store (issue 2)
    # ---------------------------------------------------------------------------------------
    def register_model(self, model: Any, name: str, **meta: Any) -> ModelInfo:
        return self.store.register(model, name, **meta)

    def list_models(self) -> list[ModelInfo]:
        return self.store.list()

    def model_info(self, ref: str) -> ModelInfo:
        return self.store.info(ref)

    # ---------------------------------------------------------------------------------------
    # Selection and building (issue 3)
    # ---------------------------------------------------------------------------------------

    # ---------------------------------------------------------------------------------------
    # Training, fine-tuning, evaluation, prediction, pretraining (issue 4)
    # ---------------------------------------------------------------------------------------

    # ---------------------------------------------------------------------------------------
    # Advisor (issue 7)
    # ---------------------------------------------------------------------------------------
