"""The HDF5 model store."""

from __future__ import annotations

from reuse.store.folder import FolderStore  # each backend registers its kind with ModelStore on import
from reuse.store.model_store import ModelStore
from reuse.store.names import ModelRef, check_name
from reuse.store.records import CheckReport, FileCheck, LayerInfo, ModelInfo

__all__ = ["CheckReport", "FileCheck", "FolderStore", "LayerInfo", "ModelInfo", "ModelRef", "ModelStore", "check_name"]
