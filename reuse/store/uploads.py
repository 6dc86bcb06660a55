"""Files that clients send: staged in the store, validated, then registered or stored atomically.

Staging files live in ``<store>/.reuse/uploads`` (same file system as the store, so the final move is
a rename). Nothing reaches the store before validation passes; a failed upload leaves no trace.
Datasets are kept as ``<store>/.reuse/datasets/<name>.<format>`` with a ``<name>.json`` description.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reuse.atomic import write_json_atomic
from reuse.data.formats import FORMATS, HDF5_MAGIC, ZIP_MAGIC
from reuse.data.readers import MAX_DATA_BYTES
from reuse.data.rows import npy_rows
from reuse.errors import AlreadyExists, InvalidInput, NotFound, ResourceExhausted
from reuse.h5guard import check_tree
from reuse.store import ModelInfo, ModelStore, check_name
from reuse.store.records import StoreEntry
from reuse.text import echo

MODEL_FORMATS = {"h5": (".h5", HDF5_MAGIC), "keras": (".keras", ZIP_MAGIC)}
DATASET_FORMATS = FORMATS
DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3


class Upload:
    """A file being received: ``write`` chunks, then hand ``path`` on; ``discard`` removes it."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f".upload-{uuid.uuid4().hex}"
        self.max_bytes = int(max_bytes)
        self.size = 0
        self._sha = hashlib.sha256()
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in finish()/discard()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise ResourceExhausted(f"upload exceeds {self.max_bytes} bytes (the server's upload limit)")
        self._sha.update(data)
        self._file.write(data)

    def finish(self) -> Path:
        """Flush and fsync; returns the staged file."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        if self.size == 0:
            raise InvalidInput("upload is empty; expected a header message followed by data chunks")
        return self.path

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.discard()


def _check_magic(path: Path, fmt: str, magic: bytes | None, what: str) -> None:
    if magic is None:
        return
    with open(path, "rb") as f:
        head = f.read(len(magic))
    if head != magic:
        raise InvalidInput(f"uploaded {what} is not a {fmt} file (its first bytes are {head[:8]!r})")


def register_model_file(store: ModelStore, path: Path, name: str, *, fmt: str = "h5", unsafe: bool = False,
                        description: str = "", tags: dict[str, str] | None = None) -> ModelInfo:
    """Validate a Keras model file and register it as the next version of ``name``.

    Uses ``ModelStore.register_file`` when the store has it; otherwise loads the file with Keras
    (safe mode unless ``unsafe``) and registers the model.

    Raises:
        InvalidName, InvalidInput: bad name, format or file. UnsafeModel: needs ``unsafe``.
    """
    check_name(name)
    if fmt not in MODEL_FORMATS:
        raise InvalidInput(f"model format {echo(fmt)}: expected one of {', '.join(MODEL_FORMATS)}")
    suffix, magic = MODEL_FORMATS[fmt]
    _check_magic(path, fmt, magic, "model")
    named = path.with_name(path.name + suffix)  # Keras picks its reader by suffix
    os.replace(path, named)
    try:
        try:
            return store.register_file(named, name, unsafe=unsafe, description=description, tags=tags)
        except InvalidInput as exc:
            # The staging path means nothing to the client (and should not leak): name the upload instead.
            raise type(exc)(str(exc).replace(str(named), "uploaded model")) from exc
    finally:
        named.unlink(missing_ok=True)


@dataclass(frozen=True)
class DatasetInfo(StoreEntry):
    """An uploaded dataset: its name, format, size and checksum (and, once stored, its file)."""

    name: str
    format: str
    size_bytes: int
    sha256: str
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_array_names(names: list[str], found: str, what: str = "array") -> None:
    """A data set holds ``x``, or one array per model input named after it: with labels ``y`` at least
    one such array, without labels at least two (a lone unlabelled array not named ``x`` is refused
    as not recognisably a data set)."""
    features = [n for n in names if n != "y"]
    if "x" in names or (features and "y" in names) or len(features) >= 2:
        return
    raise InvalidInput(f"{found} {echo(names)}; expected at least 'x' (and 'y'), or one {what} per model "
                       "input named after it (and 'y')")


def _check_dataset(path: Path, fmt: str) -> None:
    """Check a staged dataset without holding it in memory: every archive member's checksum and array
    header (streamed), every HDF5 dataset's declared size, every CSV row's width."""
    if fmt == "npz":
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
                _check_array_names(names, "npz dataset has arrays")
                bad = z.testzip()  # reads every member in chunks and checks its CRC
                if bad is not None:
                    raise ValueError(f"member {bad!r} is damaged (CRC mismatch)")
                for info in z.infolist():
                    with z.open(info) as fh:
                        _check_npy_header(fh, info.filename)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InvalidInput(f"uploaded dataset is not a readable npz file: {exc}") from exc
    elif fmt == "npy":
        try:
            with open(path, "rb") as fh:
                _check_npy_header(fh, "x")
            npy_rows(path)  # the file holds every row its header promises
        except (OSError, ValueError, InvalidInput) as exc:
            raise InvalidInput(f"uploaded dataset is not a readable npy file: {exc}") from exc
    elif fmt == "h5":
        import h5py

        try:
            with h5py.File(path, "r") as f:
                check_tree(f, "uploaded dataset", InvalidInput, max_bytes=MAX_DATA_BYTES)
                _check_array_names([k for k in f if isinstance(f.get(k), h5py.Dataset)],
                                   "h5 dataset has datasets", what="dataset")
        except OSError as exc:
            raise InvalidInput(f"uploaded dataset is not a readable HDF5 file: {exc}") from exc
    else:
        rows, widths = 0, set()
        try:
            with open(path, encoding="utf-8", newline="") as f:
                for r in csv.reader(f):
                    if r:
                        rows += 1
                        widths.add(len(r))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InvalidInput(f"uploaded dataset is not UTF-8 CSV text: {exc}") from exc
        if rows < 2 or len(widths) != 1:
            raise InvalidInput("csv dataset needs a header and at least one row, all with the same "
                               f"number of columns; got {rows} rows with widths {sorted(widths)}")


def _check_npy_header(fh: Any, name: str) -> None:
    version = np.lib.format.read_magic(fh)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    _, _, dtype = reader(fh, max_header_size=100_000)
    if dtype.hasobject:
        raise ValueError(f"array {name!r} holds Python objects (pickled data is refused)")


class DatasetStore:
    """Named datasets under ``<store>/.reuse/datasets``."""

    def __init__(self, store: ModelStore) -> None:
        self.dir = store.state_dir / "datasets"

    def put(self, upload: Upload, name: str, *, fmt: str, description: str = "",
            tags: dict[str, str] | None = None, overwrite: bool = False) -> DatasetInfo:
        """Validate the staged upload and move it into place as dataset ``name``."""
        check_name(name)
        if fmt not in DATASET_FORMATS:
            raise InvalidInput(f"dataset format {echo(fmt)}: expected one of {', '.join(DATASET_FORMATS)}")
        staged = upload.finish()
        _check_magic(staged, fmt, DATASET_FORMATS[fmt].magic, "dataset")
        _check_dataset(staged, fmt)
        self.dir.mkdir(parents=True, exist_ok=True)
        existing = self._data_files(name)
        if existing and not overwrite:
            raise AlreadyExists(f"dataset {name!r} exists; send overwrite=true to replace it")
        info = DatasetInfo(name=name, format=fmt, size_bytes=upload.size, sha256=upload.sha256,
                           created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                           description=description, tags=dict(tags or {}))
        final = self.dir / f"{name}.{fmt}"
        os.replace(staged, final)
        for old in existing:
            if old != final:
                old.unlink(missing_ok=True)
        write_json_atomic(self.dir / f"{name}.json", {k: v for k, v in info.to_dict().items() if k != "path"})
        return DatasetInfo(**{**info.to_dict(), "path": str(final)})

    def _data_files(self, name: str) -> list[Path]:
        return [p for fmt in DATASET_FORMATS if (p := self.dir / f"{name}.{fmt}").exists()]

    def path(self, name: str) -> Path:
        """The file of dataset ``name``; raises NotFound."""
        files = self._data_files(check_name(name))
        if not files:
            raise NotFound(f"no dataset named {name!r} (upload it first)")
        return files[0]

    def list(self) -> list[DatasetInfo]:
        if not self.dir.is_dir():
            return []
        out = []
        for meta in sorted(self.dir.glob("*.json")):
            try:
                d = json.loads(meta.read_text(encoding="utf-8"))
                out.append(DatasetInfo(**{**d, "path": str(self.path(meta.stem))}))
            except (OSError, ValueError, TypeError, NotFound):
                continue
        return out
