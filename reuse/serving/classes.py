"""Class names for a classifier's outputs: the top-k classes of each row, named."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reuse.errors import InvalidInput


@dataclass(frozen=True)
class TopClass:
    """One of a row's best classes: its column, score and name ("" when the model has no class names)."""

    index: int
    score: float
    label: str

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "score": self.score, "class": self.label}


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The column indices of each row's ``min(k, columns)`` highest scores, best first (ties: lower index).

    Raises:
        InvalidInput: ``scores`` is not (rows, columns), or ``k`` < 1.
    """
    if scores.ndim != 2:
        raise InvalidInput(f"top classes need scores of shape (rows, classes); got {list(scores.shape)}")
    if k < 1:
        raise InvalidInput(f"top classes: k is {k}; expected at least 1")
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def top_classes(scores: np.ndarray, k: int, class_names: Sequence[str]) -> list[list[TopClass]]:
    """Each row's best ``k`` classes, named by ``class_names`` where it has the column."""
    rows = top_k(scores, k)
    return [[TopClass(int(i), float(scores[r, i]), class_names[i] if i < len(class_names) else "")
             for i in rows[r]] for r in range(scores.shape[0])]
