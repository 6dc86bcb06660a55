"""The advice plot: the validation metric against reuse depth, with error bars (one standard deviation
over seeds); frozen and fine-tuned as two series, training from scratch as a point at depth 0 and a
dashed reference line."""

from __future__ import annotations

import os
from pathlib import Path

from reuse.advise.advice import Advice
from reuse.errors import InvalidInput

FORMATS = (".png", ".pdf", ".svg")


def check_plot_path(path: str | os.PathLike[str]) -> Path:
    """Refuse an unwritable plot path before any training.

    Raises:
        InvalidInput: an unknown suffix or a missing folder.
    """
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise InvalidInput(f"{p}: unknown plot format {p.suffix or '(none)'!r}; expected "
                           f"{', '.join(FORMATS)}")
    if not p.parent.is_dir():
        raise InvalidInput(f"{p}: folder {p.parent} does not exist")
    return p


def plot_advice(advice: Advice, path: str | os.PathLike[str]) -> Path:
    """Write the plot of ``advice`` to ``path`` (PNG, PDF or SVG) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = check_plot_path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        rows = [r for r in advice.rows if r.scores]
        scratch = [r for r in rows if r.candidate.depth == 0]
        # A shortlist across models (reuse.rank.shortlist) joins rows of several bases: a series each.
        bases = list(dict.fromkeys(r.extra.get("base") for r in rows if r.candidate.depth > 0))
        for base in bases:
            for ft, label, marker in ((False, "frozen", "o"), (True, "fine-tuned", "s")):
                series = [r for r in rows if r.candidate.depth > 0 and r.candidate.finetune is ft
                          and r.extra.get("base") == base]
                if series:
                    ax.errorbar([r.candidate.depth for r in series], [r.mean for r in series],
                                yerr=[r.std for r in series], marker=marker, capsize=4,
                                label=label if base is None else f"{base} {label}")
        if scratch:
            s = scratch[0]
            ax.errorbar([0], [s.mean], yerr=[s.std], marker="D", color="black", capsize=4, linestyle="none",
                        label="from scratch")
            ax.axhline(s.mean, color="gray", linestyle="--", linewidth=0.8)
        rec = advice.recommendation
        if rec is not None:
            ax.plot([rec.choice.candidate.depth], [rec.choice.mean], marker="*", markersize=16, color="gold",
                    markeredgecolor="black", linestyle="none",
                    label=f"recommended: {rec.choice.candidate.label}")
        depths = sorted({r.candidate.depth for r in advice.rows})
        ax.set_xticks(depths)
        ax.set_xlabel("reused layers (depth)")
        ax.set_ylabel(f"{advice.metric} (mean ± std over {len(advice.seeds)} seeds)")
        ax.set_title(f"Reuse advice: {advice.base} on {advice.data}"[:90], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
