"""The HDF5 model store."""

from __future__ import annotations

from reuse.store.model_store import ModelInfo, ModelStore
from reuse.store.names import ModelRef, check_name

__all__ = ["ModelInfo", "ModelRef", "ModelStore", "check_name"]
