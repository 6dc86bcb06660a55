"""Training: check the data, pick the variables, cache frozen features, run the loop (fine-tuning is in
:mod:`reuse.train.finetune`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reuse.backend import active
from reuse.backend.spec import Forward, LoopSpec
from reuse.data import Dataset, check_for_model, output_kind, split_validation
from reuse.data.checks import OutputKind, model_inputs
from reuse.data.rows import is_lazy, read_rows, rows_of
from reuse.errors import InvalidInput
from reuse.keras_compat import all_layers
from reuse.train.augment import AugmentedForward, Augmenter, AugmentSpec, check_images
from reuse.train.config import TrainConfig, make_optimizer
from reuse.train.engine import Phase, finished_event, run_loop
from reuse.train.events import ProgressCallback
from reuse.train.features import FeatureCache, feature_cache
from reuse.train.footprint import activation_bytes, training_bytes
from reuse.train.infer import Predictor, score
from reuse.train.network import cache_split, frozen_in_inference, reseed
from reuse.train.stream_loop import EpochViews, chunk_rows, run_stream_loop
from reuse.train.task import Task


@dataclass
class TrainResult:
    """The outcome of one training run. ``model`` is the whole network, trained in place.

    ``history`` holds per-epoch ``loss``, ``accuracy`` (``mae`` for regression) and, with validation
    data, ``val_loss``/``val_accuracy``: running means over each epoch's steps, as Keras ``fit``
    reports them. ``metrics`` are the final network's, measured after training (data loss, no
    regularisation terms): ``loss``, ``accuracy`` and ``val_*``.
    """

    model: Any
    history: dict[str, list[float]]
    metrics: dict[str, float]
    config: TrainConfig
    epochs_run: int
    best_epoch: int | None
    stopped_early: bool
    diverged: bool
    cached_layers: tuple[str, ...]
    seconds: float
    samples: int
    val_samples: int
    class_names: tuple[str, ...] | None = None
    unfrozen: tuple[str, ...] = ()
    bn_inference: tuple[str, ...] = ()
    compiled_calls: int = 1
    features: str = ""  # where the cached features were kept: "memory", "disk" or "" (no cache)
    feature_bytes: int = 0
    feature_seconds: float = 0.0  # the pass that computed them (0: found in the cache)
    final_seconds: float = 0.0  # the final figures (inference mode) on the training and validation rows
    feature_std: float | None = None  # how much the cached features vary between rows (feature_spread)

    def settings(self) -> dict[str, Any]:
        """The settings to record with the registered model."""
        out = self.config.to_dict()
        out.update(epochs_run=self.epochs_run, best_epoch=self.best_epoch, stopped_early=self.stopped_early,
                   cached_layers=list(self.cached_layers), samples=self.samples, val_samples=self.val_samples,
                   final_seconds=round(self.final_seconds, 3))
        if self.features:
            out.update(features=self.features, feature_bytes=self.feature_bytes,
                       feature_seconds=round(self.feature_seconds, 3))
        if self.feature_std is not None:
            out["feature_std"] = float(f"{self.feature_std:.4g}")
        if self.unfrozen:
            out.update(unfrozen=list(self.unfrozen), bn_inference=list(self.bn_inference))
        return out


@dataclass
class _Prepared:
    task: Task
    train: Dataset
    val: Dataset | None
    class_names: tuple[str, ...] | None = field(default=None)


def prepare_data(model: Any, data: Dataset, val: Dataset | None, config: TrainConfig,
                 kind: OutputKind | None = None) -> _Prepared:
    """Check training and validation data against ``model`` (and split off validation if asked)."""
    kind = kind or output_kind(model)
    if val is not None and config.val_split:
        raise InvalidInput("give validation data or a validation split, not both")
    train_ds = check_for_model(data, model, kind=kind)
    if val is None and config.val_split:
        train_ds, val = split_validation(train_ds, config.val_split, config.seed)
    val_ds = check_for_model(val, model, kind=kind) if val is not None else None
    if val_ds is not None and data.class_names != val.class_names:
        raise InvalidInput(f"{val.source}: classes {val.class_names} differ from the training data's "
                           f"{data.class_names}")
    return _Prepared(Task.for_output(kind), train_ds, val_ds, data.class_names)


def train(model: Any, data: Dataset, config: TrainConfig | None = None, *, val: Dataset | None = None,
          progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
          phase: Phase | None = None, extra_trainable: list[Any] | None = None,
          kind: OutputKind | None = None, features: FeatureCache | None = None) -> TrainResult:
    """Train ``model``'s trainable weights on ``data`` in place; nothing else changes.

    Args:
        model: a built Keras model with one output and any number of inputs (``data`` then holds one
            array per input, named after it).
        data: training data (checked against the model first).
        config: settings; default ``TrainConfig()``.
        val: validation data (or use ``config.val_split``).
        progress: called with each :mod:`reuse.train.events` event.
        cancel: when set, training stops at the next check (between compiled calls) and raises.
        phase: labels the events of a run that is part of a larger job.
        extra_trainable: variables trained although their layer is frozen (fine-tuning uses it for the
            scale and offset of batch-normalisation layers kept in inference mode).
        kind: what the output means; default read from the last layer (see
            :func:`reuse.data.output_kind`); autoencoders pass ``OutputKind("regression", n)``.
        features: share the cached output of the frozen prefix with other runs on the same data (see
            :class:`reuse.train.features.FeatureCache`); default a cache of this run alone.

    Data in memory trains in one compiled call (:func:`reuse.train.engine.run_loop`); data that is
    not (a row source too large for the memory budget, or frozen features written to disk) trains
    chunk by chunk with the same batches (:func:`reuse.train.stream_loop.run_stream_loop`).

    Returns:
        a :class:`TrainResult`.

    Raises:
        InvalidInput: data that does not fit the model, or a model with nothing to train.
        ResourceExhausted: a pass or a training batch that cannot fit the memory budget (refused before
            the first epoch).
        Cancelled: ``cancel`` was set.
    """
    config = config or TrainConfig()
    phase = phase or Phase()
    train_vars = list(model.trainable_variables) + [v for v in (extra_trainable or [])
                                                    if all(v is not t for t in model.trainable_variables)]
    if not train_vars:
        raise InvalidInput(f"model {model.name!r} has no trainable weights: every layer is frozen "
                           "(fine-tune with --unfreeze to train some)")
    prep = prepare_data(model, data, val, config, kind)
    reseed(model, config.seed)
    inference = config.frozen_mode == "inference"
    owned = features is None
    cache = feature_cache(config) if owned else features
    try:
        with frozen_in_inference(model, inference):
            return _train(model, prep, config, train_vars, cache, inference, progress, cancel, phase)
    finally:
        if owned:
            cache.close()


def _train(model: Any, prep: _Prepared, config: TrainConfig, train_vars: list[Any], cache: FeatureCache,
           inference: bool, progress: ProgressCallback | None, cancel: threading.Event | None,
           phase: Phase) -> TrainResult:
    augmenter = _augmenter(model, config)
    split = cache_split(model, train_vars, inference) if config.cache else None
    x = model_inputs(prep.train)
    xv = model_inputs(prep.val) if prep.val is not None else None
    raw_x = x
    forward: Forward = AugmentedForward(model, augmenter) if augmenter is not None else Forward(model)
    cached, where, nbytes, fseconds, spread = (), "", 0, 0.0, None
    if split is not None and (augmenter is None or config.augment_views):
        check_memory(split.rest, train_vars, config.batch_size, prefix=split.prefix)
        t0 = time.perf_counter()
        got = _cached(cache, split, x, xv, augmenter, config.augment_views, progress, cancel, phase)
        fseconds = time.perf_counter() - t0
        if got is not None:
            (x, xv, fbytes, on_disk) = got
            forward, cached = Forward(split.rest), split.prefix_names
            where, nbytes = ("disk" if on_disk else "memory"), fbytes
            spread = feature_spread(x)
    check_memory(forward.model, train_vars, config.batch_size)
    trained = {id(v) for v in train_vars}
    state_vars = [v for v in forward.variables if id(v) not in trained]
    streamed = isinstance(x, EpochViews) or any(is_lazy(a) for part in (x, xv) if part is not None
                                                for a in (part if isinstance(part, tuple) else (part,)))
    spec = LoopSpec(forward=forward, train_vars=train_vars, state_vars=state_vars,
                    optimizer=make_optimizer(config), task=prep.task, x=x, y=prep.train.y, xv=xv,
                    yv=prep.val.y if prep.val is not None else None, batch_size=config.batch_size,
                    epochs=config.epochs, seed=config.seed, shuffle=config.shuffle,
                    patience=config.early_stopping, restore_best=config.restore_best,
                    data_parallel=config.data_parallel,
                    chunk_rows=chunk_rows(x, min(config.batch_size, rows_of(raw_x))) if streamed else None)
    predict_rest = Predictor(forward.model, compiled=streamed or not active().EAGER_ONE_SHOT)
    if streamed:
        outcome = run_stream_loop(spec, metric=prep.task.metric, eval_rows=predict_rest.batch_size,
                                  phase=phase, cached=cached, progress=progress, cancel=cancel)
    else:
        outcome = run_loop(spec, metric=prep.task.metric, phase=phase, cached=cached, progress=progress,
                           cancel=cancel)
    # Final figures on the training rows as they are (augmented: the whole network on the data, a pass
    # through the frozen part that the augmented epochs did not leave features for).
    t0 = time.perf_counter()
    train_out = Predictor(model)(raw_x) if isinstance(x, EpochViews) else predict_rest(x)
    metrics = score(prep.task, train_out, prep.train.y)
    if xv is not None:
        metrics.update(score(prep.task, predict_rest(xv), prep.val.y, prefix="val_"))
    final_seconds = time.perf_counter() - t0
    if progress:
        progress(finished_event(outcome, metrics, phase))
    return TrainResult(model=model, history=outcome.history, metrics=metrics, config=config,
                       epochs_run=outcome.epochs_run, best_epoch=outcome.best_epoch,
                       stopped_early=outcome.stopped_early, diverged=outcome.diverged, cached_layers=cached,
                       seconds=outcome.seconds, samples=len(prep.train),
                       val_samples=0 if prep.val is None else len(prep.val), class_names=prep.class_names,
                       compiled_calls=outcome.calls, features=where, feature_bytes=nbytes,
                       feature_seconds=fseconds if cached else 0.0, final_seconds=final_seconds,
                       feature_std=spread)


SPREAD_ROWS = 2048  # rows, spread evenly over the data, that feature_spread reads


def feature_spread(x: Any) -> float:
    """How much the cached features of the frozen part vary between rows: the standard deviation of
    each feature value across up to SPREAD_ROWS rows (of the first view and output), averaged. Near 0
    the frozen part gives every input the same output and the head cannot learn (reuse.train.diagnosis)."""
    if isinstance(x, EpochViews):
        x = x.view(0)
    if isinstance(x, tuple):
        x = x[0]
    n = rows_of(x)
    index = np.unique(np.linspace(0, n - 1, min(n, SPREAD_ROWS)).astype(np.int64))
    sample = np.asarray(read_rows(x, index), dtype=np.float64).reshape(len(index), -1)
    return float(sample.std(axis=0).mean())


def _augmenter(model: Any, config: TrainConfig) -> Augmenter | None:
    if not config.augment:
        return None
    spec = AugmentSpec.parse(config.augment)
    check_images(model, spec)
    return Augmenter(spec, config.seed, tuple(model.inputs[0].shape[1:]))


def _cached(cache: FeatureCache, split: Any, x: Any, xv: Any, augmenter: Augmenter | None, views: int,
            progress: Any, cancel: Any, phase: Phase) -> tuple[Any, Any, int, bool] | None:
    """The frozen part's features: of the data as it is, or of ``views`` augmented views of the
    training rows (and of the validation rows as they are); ``None`` when they fit neither memory nor
    disk."""
    kw = {"progress": progress, "cancel": cancel, "phase": phase}
    if augmenter is None:
        got = cache.features(split.prefix, split.layers, x, xv, **kw)
        return None if got is None else (got.x, got.xv, got.nbytes, got.on_disk)
    parts = [cache.features(split.prefix, split.layers, x, None,
                            view=(augmenter, k), **kw) for k in range(views)]
    val = cache.features(split.prefix, split.layers, xv, None, **kw) if xv is not None else None
    if any(p is None for p in parts) or (xv is not None and val is None):
        return None
    nbytes = sum(p.nbytes for p in parts) + (val.nbytes if val is not None else 0)
    return (EpochViews([p.x for p in parts]), val.x if val is not None else None, nbytes,
            any(p.on_disk for p in parts))


def check_memory(trained: Any, train_vars: list[Any], batch_size: int, *, prefix: Any = None) -> None:
    """Refuse, before any work, a run whose bounded footprint cannot fit what the memory budget leaves:
    a training batch of ``trained`` (what its forward and backward passes keep: see
    :func:`reuse.train.footprint.training_bytes`) and, with a frozen ``prefix`` to cache, one row of the
    pass that computes its features. The message asks for a budget that fits both.

    Raises:
        ResourceExhausted: naming the part that does not fit and the budget it would need.
    """
    from reuse.memory import fmt_bytes, process_budget
    from reuse.train.footprint import input_bytes

    parts = [(f"a training batch of {batch_size} rows", batch_size * training_bytes(trained, train_vars))]
    if prefix is not None:
        parts.append(("one row of the pass through the frozen layers",
                      activation_bytes(prefix) + 2 * input_bytes(prefix)))
    budget = process_budget()
    room = budget.available() * 0.5
    if all(need <= room for _, need in parts):
        return
    what, need = max(parts, key=lambda p: p[1])
    budget.refuse(f"{what} needs about {fmt_bytes(need)}", need, 0.5)


def layer_names(model: Any) -> list[str]:
    """Every layer below ``model`` (nested models' layers too), in order, without input layers."""
    import keras

    return [x.name for x in all_layers(model) if not isinstance(x, keras.layers.InputLayer)]


def copy_model(model: Any) -> Any:
    """An independent copy of ``model`` with the same weights and frozen layers."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for src, dst in zip(all_layers(model), all_layers(clone), strict=True):
        dst.trainable = src.trainable
    return clone


def summarize(values: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Mean, standard deviation (population) and values of each metric over runs."""
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": [float(x) for x in v]}
            for k, v in values.items()}
