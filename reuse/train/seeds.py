"""Repeated training over seeds: the spread of each metric (the "prediction problem" evidence)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from reuse.data import Dataset, split_validation
from reuse.errors import InvalidInput
from reuse.train.config import TrainConfig
from reuse.train.engine import Phase
from reuse.train.events import ProgressCallback
from reuse.train.features import feature_cache
from reuse.train.finetune import finetune
from reuse.train.fit import TrainResult, copy_model, summarize, train


@dataclass
class SeedsResult:
    """``runs[i]`` trained with seed ``config.seed + i`` from the same starting weights; ``summary``
    maps each final metric to ``{"mean", "std", "values"}``. ``runs[0]`` is the one to keep: it is
    what a single run with ``config.seed`` gives. ``val``: the validation data every run used, if any
    (given, or split off once for all runs)."""

    runs: list[TrainResult]
    summary: dict[str, dict[str, Any]]
    val: Dataset | None = None

    @property
    def first(self) -> TrainResult:
        return self.runs[0]


def train_seeds(model: Any, data: Dataset, config: TrainConfig, n: int, *, val: Dataset | None = None,
                finetune_scope: str | None = None, match: str = "full", base_lr: float | None = None,
                progress: ProgressCallback | None = None,
                cancel: threading.Event | None = None) -> SeedsResult:
    """Train (or fine-tune, with ``finetune_scope``) ``n`` copies of ``model`` with seeds
    ``config.seed .. config.seed + n - 1``. ``runs[0]`` trains ``model`` itself, in place.

    Raises:
        InvalidInput: ``n`` < 1; as :func:`~reuse.train.train` otherwise.
    """
    if not isinstance(n, int) or n < 1:
        raise InvalidInput(f"invalid number of seeds {n!r}: expected an integer >= 1")
    task = "finetune" if finetune_scope else "train"
    if config.val_split and val is None and n > 1:
        # One validation split for every run, so the spread measures training, not the split.
        data, val = split_validation(data, config.val_split, config.seed)
        config = config.with_(val_split=0.0)
    start = copy_model(model) if n > 1 else None
    runs: list[TrainResult] = []
    with feature_cache(config) as cache:  # the seeds share the frozen part's features
        for i in range(n):
            m = model if i == 0 else copy_model(start)
            cfg = config.with_(seed=config.seed + i)
            phase = Phase(task, i + 1, n, f"seed {cfg.seed}")
            if finetune_scope:
                r = finetune(m, finetune_scope, data, cfg, match=match, base_lr=base_lr, val=val,
                             progress=progress, cancel=cancel, phase=phase, features=cache)
            else:
                r = train(m, data, cfg, val=val, progress=progress, cancel=cancel, phase=phase,
                          features=cache)
            runs.append(r)
    keys = [k for k in runs[0].metrics if all(k in r.metrics for r in runs)]
    return SeedsResult(runs, summarize({k: [r.metrics[k] for r in runs] for k in keys}), val)
