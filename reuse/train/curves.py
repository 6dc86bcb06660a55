"""Learning curves as a PNG (matplotlib, Agg backend: no display needed).

The curves cover the network's whole training along its lineage
(:func:`reuse.store.lineage.training_history`): a fine-tuned version's plot shows the training before the
fine-tuning too, with a dashed vertical line where each later segment began. Epoch ticks are whole numbers.
The loss axis starts at 0; the accuracy axis runs from the chance level (1/classes; 0.5 for one sigmoid
output; 0 when unknown), or lower if a value dips below it, to 1, so a change of one sample is not drawn as a
cliff. Regression's mae axis starts at 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reuse.errors import InvalidInput


def _segments(
    history: Mapping[str, list[float]] | Sequence[Any],
) -> list[tuple[str, str, dict[str, list[float]]]]:
    if isinstance(history, Mapping):
        return [("", "", dict(history))]
    return [(s.model, s.operation, dict(s.history)) for s in history]


def _series(segments: list[tuple[str, str, dict[str, list[float]]]], key: str) -> list[float]:
    """``key`` over all segments' epochs, NaN where a segment did not record it (no validation data)."""
    out: list[float] = []
    for _, _, h in segments:
        n = len(h.get("loss") or [])
        values = list(h.get(key) or [])[:n]
        out += values + [math.nan] * (n - len(values))
    return out


def curves_figure(history: Mapping[str, list[float]] | Sequence[Any], *, title: str = "",
                  chance: float | None = None) -> Any:
    """The learning-curve figure (a matplotlib ``Figure``) of one history or of segments along a lineage.

    Args:
        history: a per-epoch history dict, or :class:`reuse.store.lineage.HistorySegment` objects oldest
        first. title: the figure's title.
        chance: the accuracy of guessing, the accuracy axis's floor (None: 0).

    Raises:
        InvalidInput: there is no history to draw.
    """
    segments = [s for s in _segments(history) if s[2].get("loss")]
    if not segments:
        raise InvalidInput(f"{title or 'model'}: has no training history to plot (train it first)")
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metric = "mae" if any("mae" in h for _, _, h in segments) else "accuracy"
    starts = [0]
    for _, _, h in segments:
        starts.append(starts[-1] + len(h["loss"]))
    total = starts[-1]
    fig = Figure(figsize=(10, 4.2), dpi=100)
    for ax, key in ((fig.add_subplot(1, 2, 1), "loss"), (fig.add_subplot(1, 2, 2), metric)):
        lows: list[float] = []
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            values = _series(segments, name)
            if any(not math.isnan(v) for v in values):
                ax.plot(range(1, total + 1), values, style,
                        label="validation" if name.startswith("val_") else "training")
                lows += [v for v in values if math.isfinite(v)]
        for i, (_, operation, _) in enumerate(segments):
            if i > 0:  # where this segment's epochs begin
                ax.axvline(starts[i] + 0.5, color="0.35", linestyle=":", linewidth=1.2)
            if len(segments) > 1:
                ax.annotate(operation, xy=(starts[i] + 0.5, 1.0),
                            xycoords=("data", "axes fraction"), xytext=(3, -3), textcoords="offset points",
                            ha="left", va="top", fontsize=8, color="0.25")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
        ax.set_xlim(0.5, total + 0.5)
        low = min(lows, default=0.0)
        if key == "accuracy":
            floor = min(chance or 0.0, math.floor(low * 10) / 10)
            ax.set_ylim(floor, 1.0 + 0.08 * (1.0 - floor))  # headroom for the segment labels
        else:
            top = max(lows, default=1.0)
            ax.set_ylim(min(0.0, low), (top if math.isfinite(top) and top > 0 else 1.0) * 1.12)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        # Above the axes, where it can hide neither a curve nor a segment's label.
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False, fontsize=9,
                  borderaxespad=0.2)
    if len(segments) > 1:
        title = f"{title}: {total} epochs along its lineage ({', '.join(m for m, _, _ in segments)})"
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(history: Mapping[str, list[float]] | Sequence[Any], path: str | os.PathLike[str], *,
                title: str = "", chance: float | None = None) -> Path:
    """Draw training and validation loss and metric per epoch into ``path`` (a .png file); see
    :func:`curves_figure` for ``history`` and ``chance``.

    Raises:
        InvalidInput: no history to draw, or ``path`` is not a .png in an existing folder.
    """
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise InvalidInput(f"{out}: expected a .png file name for the plot")
    if not out.parent.is_dir():
        raise InvalidInput(f"{out}: folder {out.parent} does not exist")
    curves_figure(history, title=title, chance=chance).savefig(out, format="png")
    return out
