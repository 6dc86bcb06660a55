"""The HDF5 model store."""

from __future__ import annotations

from reuse.names import ModelRef, check_name
from reuse.store.folder import FolderStore  # each backend registers its kind with ModelStore on import
from reuse.store.model_store import ModelStore
from reuse.store.records import CheckReport, FileCheck, LayerInfo, ModelInfo
from reuse.store.s3_store import S3Store  # boto3 is imported only when an s3:// store is opened

__all__ = ["CheckReport", "FileCheck", "FolderStore", "LayerInfo", "ModelInfo", "ModelRef", "ModelStore",
           "S3Store", "check_name"]
