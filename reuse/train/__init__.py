"""Training, fine-tuning, evaluation and prediction, with a compiled in-memory loop.

Public API (what the CLI, the service and the gRPC server call)::

    train(model, data, config=None, *, val=None, progress=None, cancel=None) -> TrainResult
    finetune(model, unfreeze, data, config=None, *, match="full", base_lr=None, val=None,
             progress=None, cancel=None) -> TrainResult
    train_seeds(model, data, config, n, *, finetune_scope=None, ...) -> SeedsResult
    evaluate(model, data) -> dict;  predict(model, data) -> np.ndarray;  Predictor(model)
    pretrain(data, PretrainConfig(...), *, test=None, progress=None, cancel=None) -> PretrainResult
    diagnose(history, metrics, *, n_outputs=None, settings=None) -> list[Finding]

Modules import Keras lazily where they can; the compiled loop and forward pass come from the backend
seam (:mod:`reuse.backend`), chosen by ``keras.backend.backend()``.
"""

from __future__ import annotations

from reuse.train.config import DEFAULT_LR, OPTIMIZERS, TrainConfig, make_optimizer
from reuse.train.diagnosis import Finding, diagnose
from reuse.train.engine import Phase
from reuse.train.events import EpochEnd, ProgressCallback, TrainEvent, TrainFinished, TrainStarted
from reuse.train.finetune import finetune, unfreeze_layers
from reuse.train.fit import TrainResult, copy_model, train
from reuse.train.infer import Predictor, evaluate, predict
from reuse.train.pretrain import DepthRow, PretrainConfig, PretrainResult, pretrain
from reuse.train.seeds import SeedsResult, train_seeds

__all__ = [
    "DEFAULT_LR", "OPTIMIZERS", "DepthRow", "EpochEnd", "Finding", "Phase", "Predictor", "PretrainConfig",
    "PretrainResult", "ProgressCallback", "SeedsResult",
    "TrainConfig", "TrainEvent", "TrainFinished", "TrainResult", "TrainStarted", "copy_model", "evaluate",
    "diagnose", "finetune", "make_optimizer", "predict", "pretrain", "train", "train_seeds",
    "unfreeze_layers",
]
