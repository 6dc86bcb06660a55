"""Learning curves as a PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

from reuse.errors import InvalidInput


def plot_curves(history: dict[str, list[float]], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Draw training and validation loss and metric per epoch into ``path`` (a .png file).

    Raises:
        InvalidInput: no history to draw, or ``path`` is not a .png in an existing folder.
    """
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise InvalidInput(f"{out}: expected a .png file name for the plot")
    if not out.parent.is_dir():
        raise InvalidInput(f"{out}: folder {out.parent} does not exist")
    if not history or not history.get("loss"):
        raise InvalidInput(f"{title or 'model'}: has no training history to plot (train it first)")
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    metric = "mae" if "mae" in history else "accuracy"
    fig = Figure(figsize=(10, 4), dpi=100)
    for ax, key, label in ((fig.add_subplot(1, 2, 1), "loss", "loss"),
                           (fig.add_subplot(1, 2, 2), metric, metric)):
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            values = history.get(name)
            if values:
                ax.plot(range(1, len(values) + 1), values, style,
                        label="validation" if name.startswith("val_") else "training")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out
