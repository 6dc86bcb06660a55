"""The rank plot: each score against the cut's depth, one line per model, the raw-input baseline as a
dashed line, the recommended candidate starred; one panel per score."""

from __future__ import annotations

import os
from pathlib import Path

from reuse.rank.result import LABELS, Ranking

MAX_MODELS_SHOWN = 10
TITLES = {"logme": "LogME (nats per sample)", "knn": "k-NN leave-one-out accuracy",
          "sfda": "SFDA (mean p(true class))"}


def plot_ranking(ranking: Ranking, path: str | os.PathLike[str]) -> Path:
    """Write the plot of ``ranking`` to ``path`` (.png, .pdf or .svg) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reuse.advise.plot import check_plot_path

    out = check_plot_path(path)
    models: list[str] = []
    for c in ranking.candidates:  # best first: the legend lists models by their best candidate
        if c.ref not in models:
            models.append(c.ref)
    shown, others = models[:MAX_MODELS_SHOWN], models[MAX_MODELS_SHOWN:]
    panels = list(ranking.scores)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    best = ranking.candidates[0] if ranking.candidates else None
    try:
        for ax, score in zip(axes[0], panels, strict=True):
            for ref in models:
                pts = sorted((c.depth, c.scores.get(score)) for c in ranking.candidates
                             if c.ref == ref and c.scores.get(score) is not None)
                if not pts:
                    continue
                style = {"color": "lightgray", "zorder": 1} if ref in others else {"zorder": 2}
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=4,
                        label=ref if ref in shown else None, **style)
            base = ranking.baseline.scores.get(score)
            if base is not None:
                ax.axhline(base, color="black", linestyle="--", linewidth=1, label="raw inputs (no reuse)")
            if best is not None and best.scores.get(score) is not None:
                ax.plot([best.depth], [best.scores[score]], marker="*", markersize=15, color="gold",
                        markeredgecolor="black", linestyle="none", zorder=3, label=f"recommended: {best.ref}")
            ax.set_title(TITLES.get(score, score), fontsize=10)
            ax.set_xlabel("cut (depth: layers with weights reused)")
            ax.grid(alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
        handles, labels = axes[0][0].get_legend_handles_labels()
        if others:
            labels.append(f"{len(others)} more model(s)")
            handles.append(plt.Line2D([], [], color="lightgray", marker="o"))
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
        rule = " + ".join(LABELS.get(m, m) for m in ranking.metric)
        title = f"reuse rank: {ranking.data} ({ranking.samples} rows), ranked by {rule}"
        fig.suptitle(title[:110], fontsize=10)
        rows_of_legend = (len(labels) + 3) // 4
        fig.tight_layout(rect=(0, 0.05 + 0.04 * rows_of_legend, 1, 0.95))
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out
