"""Results the service returns for training commands, and prediction files."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reuse.atomic import atomic_path
from reuse.errors import InvalidInput


@dataclass
class TrainOutcome:
    """A registered train or fine-tune result. ``seeds``: metric -> {mean, std, values} when N > 1.
    With ``ensemble``: ``seed_models`` (every seed's version, ``info`` first) and ``ensemble`` (the info of
    their averaged-output ensemble, registered after them)."""

    info: Any
    parent: str
    result: Any
    seeds: dict[str, dict[str, Any]] | None = None
    seed_models: list[str] | None = None
    ensemble: Any = None
    skipped: list[str] = field(default_factory=list)  # files an images:...&bad=skip spec left out, with why

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "model": self.info.ref, "parent": self.parent, "metrics": r.metrics, "history": r.history,
            "epochs_run": r.epochs_run, "best_epoch": r.best_epoch, "stopped_early": r.stopped_early,
            "diverged": r.diverged, "seconds": round(r.seconds, 4), "cached_layers": list(r.cached_layers),
            "unfrozen": list(r.unfrozen), "bn_inference": list(r.bn_inference), "seeds": self.seeds,
            "settings": self.info.settings, "class_names": self.info.class_names,
            "seed_models": self.seed_models,
            "ensemble": self.ensemble.ref if self.ensemble is not None else None,
            "skipped": list(self.skipped),
        }


@dataclass
class PretrainOutcome:
    info: Any
    result: Any
    test: str | None = None

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {"model": self.info.ref, "mode": r.mode, "depths": [row.to_dict() for row in r.table],
                "metrics": r.metrics, "test": self.test, "seconds": round(r.seconds, 4)}


@dataclass
class Report:
    """``plotted``: the :class:`reuse.store.lineage.HistorySegment` list the plot drew (empty without a
    plot)."""

    info: Any
    findings: list[Any]
    plot: str | None = None
    plotted: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.info.ref, "history": self.info.history, "metrics": self.info.metrics,
                "findings": [f.to_dict() for f in self.findings], "plot": self.plot}


@dataclass
class Prediction:
    """Outputs per sample; ``classes``/``labels`` for classifiers (labels from recorded class names)."""

    model: str
    data: str
    outputs: np.ndarray
    classes: np.ndarray | None = None
    labels: list[str] | None = None
    class_names: list[str] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"model": self.model, "data": self.data, "samples": int(len(self.outputs)),
                             "outputs": np.round(self.outputs.astype(np.float64), 6).tolist()}
        if self.classes is not None:
            d["classes"] = self.classes.tolist()
            d["labels"] = self.labels
        return d


def prediction_from_outputs(model: str, data: str, outputs: np.ndarray,
                            class_names: list[str] | None) -> Prediction:
    classes = None
    labels = None
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        classes = outputs.argmax(axis=1)
    elif outputs.ndim == 2 and outputs.shape[1] == 1 and np.all((outputs >= 0) & (outputs <= 1)):
        classes = (outputs[:, 0] > 0.5).astype(np.int64)
    if classes is not None:
        names = class_names or []
        labels = [names[c] if c < len(names) else str(int(c)) for c in classes.tolist()]
    return Prediction(model, data, outputs, classes, labels, class_names)


def write_prediction(pred: Prediction, out: str | os.PathLike[str]) -> Path:
    """Write ``pred`` as .npz (arrays ``outputs``, ``classes``, ``labels``) or .csv (one row per sample:
    ``class``, ``label``, then ``p0..pk``). Written to a temporary file and renamed into place."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise InvalidInput(f"{path}: unknown output format {suffix or '(none)'!r}; expected .npz or .csv")
    if not path.parent.is_dir():
        raise InvalidInput(f"{path}: folder {path.parent} does not exist")
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix == ".npz":
            arrays: dict[str, np.ndarray] = {"outputs": pred.outputs}
            if pred.classes is not None:
                arrays["classes"] = pred.classes
                arrays["labels"] = np.array(pred.labels, dtype=str)
            np.savez(tmp, **arrays)
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                cols = [f"p{i}" for i in range(pred.outputs.reshape(len(pred.outputs), -1).shape[1])]
                w.writerow((["class", "label"] if pred.classes is not None else []) + cols)
                for i, row in enumerate(pred.outputs.reshape(len(pred.outputs), -1)):
                    lead = [int(pred.classes[i]), pred.labels[i]] if pred.classes is not None else []
                    w.writerow(lead + [f"{v:.6g}" for v in row])
    return path
