"""The operations the CLI calls, as one Protocol that the local and the remote facade both satisfy.

:class:`reuse.service.Service` works on a store folder; :class:`reuse.remote.RemoteService` asks a running
``reuse serve``. The CLI gets either from ``get_service`` and calls only what is listed here, so a
command behaves the same with ``--store`` and ``--server``. What only the local facade offers (export,
store check, report, pretrain, advise, the server's own hooks) is not part of it: a command that needs
it is refused with ``--server`` (``reuse.cli.common.local_only``). ``tests/service/test_facade.py`` checks
that both classes have every method here with the same parameters. ``rank`` runs here or as a ``rank`` job
on the server.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from reuse.graph.signature import ModelSignature
    from reuse.heads import HeadSpec
    from reuse.jobs import JobEvent, JobRecord
    from reuse.rank import Ranking
    from reuse.serving.engine import InferResult
    from reuse.store import LayerInfo, ModelInfo
    from reuse.store.describe import ModelDescription
    from reuse.store.layer_table import LayerTable
    from reuse.store.uploads import DatasetInfo
    from reuse.train.output import Prediction, TrainOutcome


@runtime_checkable
class Facade(Protocol):
    """One method per operation; plain values and domain types in and out."""

    @property
    def store_root(self) -> str | Path:
        """Where the models are, for messages."""
        ...

    # -- store ----------------------------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]: ...

    def model_versions(self, name: str) -> list[ModelInfo]: ...

    def model_info(self, ref: str) -> ModelInfo: ...

    def model_layers(self, ref: str) -> list[LayerInfo]: ...

    def describe_model(self, ref: str, *,
                       scope: str | None = None, match: str = "full") -> ModelDescription: ...

    def register_model(self, model: Any, name: str, **meta: Any) -> ModelInfo: ...

    def register_file(self, path: str | os.PathLike[str], name: str, *, unsafe: bool = False,
                      description: str = "", tags: dict[str, str] | None = None) -> ModelInfo: ...

    def delete_version(self, ref: str) -> ModelInfo: ...

    def upload_model(self, chunks: Iterable[bytes], name: str, *, format: str = "h5", description: str = "",
                     tags: Mapping[str, str] | None = None, unsafe: bool = False) -> ModelInfo: ...

    def upload_dataset(self, chunks: Iterable[bytes], name: str, *, format: str, description: str = "",
                       tags: Mapping[str, str] | None = None, overwrite: bool = False) -> DatasetInfo: ...

    def list_datasets(self) -> list[DatasetInfo]: ...

    # -- selection and building -----------------------------------------------------------------
    def layer_table(self, ref: str, scope: str | None = None, match: str = "full") -> LayerTable: ...

    def build(self, new_name: str, base_ref: str, reuse: str, *, head: str | HeadSpec | None = None,
              head_file: str | os.PathLike[str] | None = None, classes: int | None = None,
              regression: bool | int = False, outputs: int | None = None, trainable: str | None = None,
              match: str = "full", input_shape: tuple[int | None, ...] | None = None, description: str = "",
              seed: int | None = None,
              tags: dict[str, str] | None = None, exits: Sequence[str] | None = None,
              preprocess: str | None = None) -> ModelInfo: ...

    def ensemble(self, new_name: str, members: str | Sequence[str], *,
                 weights: str | Sequence[float] | None = None, vote: bool = False,
                 average_weights: bool = False, data: str | None = None, label: str | int | None = None,
                 relabel: bool = False, description: str = "",
                 tags: dict[str, str] | None = None) -> ModelInfo | None: ...

    def lineage(self, ref: str) -> list[dict[str, Any]]: ...

    # -- training, evaluation, prediction -------------------------------------------------------
    def train_model(self, ref: str, data: str, *, val: str | None = None, label: str | int | None = None,
                    relabel: bool = False, config: Any = None, options: dict[str, Any] | None = None,
                    seeds: int = 1, progress: Any = None, cancel: threading.Event | None = None,
                    description: str | None = None, ensemble: bool = False) -> TrainOutcome: ...

    def finetune_model(self, ref: str, unfreeze: str, data: str, *, match: str = "full",
                       val: str | None = None, label: str | int | None = None, relabel: bool = False,
                       config: Any = None, options: dict[str, Any] | None = None, seeds: int = 1,
                       progress: Any = None, cancel: threading.Event | None = None,
                       description: str | None = None, ensemble: bool = False) -> TrainOutcome: ...

    def evaluate_model(self, ref: str, data: str, *, label: str | int | None = None,
                       relabel: bool = False) -> dict[str, Any]: ...

    def predict_model(self, ref: str, data: str, *, label: str | int | None = None, no_label: bool = False,
                      out: str | os.PathLike[str] | None = None) -> Prediction: ...

    # -- ranking --------------------------------------------------------------------------------
    def rank(self, data: str, *, models: str | None = None, cuts: str | None = None,
             blocks: str | None = None, match: str = "full", metric: str | None = None,
             regression: bool = False, label: str | int | None = None, relabel: bool = False,
             budget: float | None = None, memory_mb: float | None = None, ray: str | None = None,
             ray_cpus: float = 1.0, plot: str | None = None, progress: Any = None,
             cancel: threading.Event | None = None) -> Ranking | None: ...

    # -- serving and jobs -----------------------------------------------------------------------
    def model_signature(self, ref: str) -> ModelSignature: ...

    def infer(self, ref: str,
              inputs: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> InferResult: ...

    def infer_images(self, ref: str, images: Sequence[bytes]) -> InferResult:
        """Run an image model on encoded images; the server (or the local engine) decodes them."""
        ...

    def serving_stats(self) -> dict[str, Any]: ...

    def start_job(self, kind: str, params: dict[str, Any]) -> JobRecord: ...

    def build_job(self, params: dict[str, Any], *, wait: bool = True,
                  timeout: float | None = None) -> JobRecord: ...

    def start_train(self, params: dict[str, Any]) -> JobRecord: ...

    def start_finetune(self, params: dict[str, Any]) -> JobRecord: ...

    def start_advise(self, params: dict[str, Any]) -> JobRecord: ...

    def start_rank(self, params: dict[str, Any]) -> JobRecord: ...

    def list_jobs(self, *, state: str = "", kind: str = "") -> list[JobRecord]: ...

    def get_job(self, job_id: str) -> JobRecord: ...

    def cancel_job(self, job_id: str) -> JobRecord: ...

    def watch_job(self, job_id: str, *, after_seq: int = 0) -> Iterator[JobEvent]: ...

    def close(self) -> list[str]:
        """Release what the facade holds (a local one stops its jobs; a remote one its channel)."""
        ...
