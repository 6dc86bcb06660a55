"""The upload operations of the local facade (:class:`reuse.service.local.Service`): a model or dataset
received in chunks (over gRPC, or from the CLI) is staged in the store, checked, then registered or
stored; nothing of a refused upload stays behind."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reuse.service.state import ServerState
    from reuse.store import ModelInfo, ModelStore
    from reuse.store.uploads import DatasetInfo, Upload


class UploadCalls:
    """Uploads into ``store``, staged and checked through ``state``."""

    store: ModelStore
    state: ServerState

    def open_upload(self) -> Upload:
        """A staging file in the store for a model or dataset being received."""
        return self.state.open_upload()

    def register_upload(self, upload: Upload, name: str, *, format: str = "h5", description: str = "",
                        tags: dict[str, str] | None = None, unsafe: bool = False) -> ModelInfo:
        """Validate a received model file and register it as the next version of ``name``."""
        from reuse.store.uploads import register_model_file

        self.state.check_unsafe_upload(unsafe)
        return register_model_file(self.store, upload.finish(), name, fmt=format or "h5", unsafe=unsafe,
                                   description=description, tags=tags)

    def store_dataset_upload(self, upload: Upload, name: str, *, format: str, description: str = "",
                             tags: dict[str, str] | None = None, overwrite: bool = False) -> DatasetInfo:
        from reuse.store.uploads import DatasetStore
        return DatasetStore(self.store).put(upload, name, fmt=format, description=description, tags=tags,
                                            overwrite=overwrite)

    def upload_model(self, chunks: Iterable[bytes], name: str, *, format: str = "h5", description: str = "",
                     tags: Mapping[str, str] | None = None, unsafe: bool = False) -> ModelInfo:
        with self._received(chunks) as up:
            return self.register_upload(up, name, format=format, description=description,
                                        tags=dict(tags) if tags is not None else None, unsafe=unsafe)

    def upload_dataset(self, chunks: Iterable[bytes], name: str, *, format: str, description: str = "",
                       tags: Mapping[str, str] | None = None, overwrite: bool = False) -> DatasetInfo:
        with self._received(chunks) as up:
            return self.store_dataset_upload(up, name, format=format, description=description,
                                             tags=dict(tags) if tags is not None else None,
                                             overwrite=overwrite)

    @contextmanager
    def _received(self, chunks: Iterable[bytes]) -> Iterator[Upload]:
        """A staged upload holding every chunk (removed on leaving unless it was stored)."""
        with self.open_upload() as up:
            for chunk in chunks:
                up.write(chunk)
            yield up

    def list_datasets(self) -> list[DatasetInfo]:
        from reuse.store.uploads import DatasetStore
        return DatasetStore(self.store).list()
