"""Diagnosis of a training run in the practitioner's three-way framework.

- Learning problem: the training loss diverges, is stuck, or stays at chance level; or the frozen
  reused layers give every input (almost) the same output, so the head has nothing to learn from.
- Generalization problem: validation loss worsens while training loss improves, or a large gap.
- Prediction problem: the final metric varies a lot across seeds.

Each finding quotes the numbers it rests on and suggests remedies. Thresholds are module constants.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

STUCK_IMPROVEMENT = 0.05  # training loss improved by less than 5 % from first to last epoch
CHANCE_MARGIN = 0.10  # final loss within 10 % of the loss of a uniform guess
OVERFIT_RISE = 0.10  # validation loss rose 10 % above its best ...
OVERFIT_GAP = 0.15  # ... or training accuracy beats validation accuracy by 15 points
SPREAD_STD = 0.02  # standard deviation of accuracy across seeds above 2 points
SPREAD_LOSS_CV = 0.10  # or of the loss above 10 % of its mean (regression)
FLAT_FEATURES = 1e-4  # the frozen features' standard deviation across rows (settings' feature_std) below

LEARNING_REMEDIES = (
    "change the learning rate (try 10x larger if the loss barely moves, 10x smaller if it jumps or diverges)",
    "check the weight initialisation (he_uniform/he_normal for relu, glorot for tanh/sigmoid)",
    "add batch normalisation before the activations",
    "change the activation (leaky_relu or elu if relu units may have died)",
)
FEATURE_REMEDIES = (
    "check the base: untrained weights, or batch normalisation whose moving statistics were never "
    "measured (a base saved before training), make a deep frozen part's output almost constant",
    "check that inputs reach the base as it expects (reuse build --preprocess)",
    "reuse fewer layers (a shallower --reuse scope), or unfreeze some (reuse finetune --unfreeze)",
)
GENERALIZATION_REMEDIES = (
    "regularise: dropout, weight decay (adamw) or a smaller network",
    "stop early: --early-stopping PATIENCE keeps the best epoch's weights",
    "get more training data, or augment it",
)
PREDICTION_REMEDIES = (
    "average an ensemble of models trained with different seeds",
    "get more training data",
    "lower the learning rate or raise the batch size to reduce the variance of training",
)


@dataclass(frozen=True)
class Finding:
    """One diagnosed problem: ``problem`` is ``learning``, ``generalization`` or ``prediction``."""

    problem: str
    summary: str
    evidence: str
    remedies: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["remedies"] = list(self.remedies)
        return d


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _learning(history: dict[str, list[float]], n_outputs: int | None) -> Finding | None:
    loss = history.get("loss") or []
    if not loss:
        return None
    bad = [i for i, v in enumerate(loss) if v is None or not math.isfinite(v)]
    if bad:
        return Finding("learning", "training diverged",
                       f"training loss became {loss[bad[0]]} at epoch {bad[0] + 1} of {len(loss)}",
                       ("lower the learning rate (e.g. 10x) or clip gradients (--clipnorm 1.0)",
                        "scale the inputs (standardise features)", *LEARNING_REMEDIES[1:]))
    first, last = loss[0], loss[-1]
    best = min(loss)
    chance = math.log(n_outputs) if n_outputs and n_outputs > 1 and "accuracy" in history else None
    at_chance = chance is not None and last >= chance * (1 - CHANCE_MARGIN)
    improvement = (first - best) / first if first > 0 else 0.0
    if at_chance:
        acc = history.get("accuracy") or []
        extra = f"; training accuracy {acc[-1]:.3f} (chance {1 / n_outputs:.3f})" if acc else ""
        return Finding("learning", "training loss stays at chance level",
                       f"final training loss {last:.4f} vs {chance:.4f} = ln({n_outputs}) for a uniform "
                       f"guess, after {len(loss)} epochs (first epoch {first:.4f}){extra}", LEARNING_REMEDIES)
    if len(loss) >= 3 and improvement < STUCK_IMPROVEMENT and (chance is None or last > 0.5 * chance):
        return Finding("learning", "training loss is not improving",
                       f"training loss went from {first:.4f} (epoch 1) to {last:.4f} (epoch {len(loss)}), "
                       f"best {best:.4f}: {improvement:.1%} better", LEARNING_REMEDIES)
    return None


def flat_features(settings: dict[str, Any]) -> Finding | None:
    """The finding for a run whose frozen features hardly vary between rows (``settings["feature_std"]``
    below FLAT_FEATURES), else None."""
    std = settings.get("feature_std")
    if std is None or not math.isfinite(std) or std >= FLAT_FEATURES:
        return None
    cut = (settings.get("cached_layers") or ["?"])[-1]
    return Finding("learning", "the frozen layers give every input almost the same output",
                   f"the cached features (the output of {cut}) vary by a standard deviation of {std:.2g} "
                   f"between training rows (below {FLAT_FEATURES:g}): the head cannot tell the inputs apart",
                   FEATURE_REMEDIES)


def _generalization(history: dict[str, list[float]], metric: str) -> Finding | None:
    loss, val = history.get("loss") or [], history.get("val_loss") or []
    if len(val) < 3 or len(_finite(val)) != len(val):
        return None
    b = min(range(len(val)), key=val.__getitem__)
    rise = (val[-1] - val[b]) / val[b] if val[b] > 0 else 0.0
    trained_on = loss[-1] < loss[b] if len(loss) == len(val) else False
    if b < len(val) - 1 and rise > OVERFIT_RISE and trained_on:
        return Finding("generalization", "validation loss worsens while training loss improves",
                       f"validation loss was lowest at epoch {b + 1} ({val[b]:.4f}) and rose to "
                       f"{val[-1]:.4f} (+{rise:.0%}) by epoch {len(val)}, while training loss fell from "
                       f"{loss[b]:.4f} to {loss[-1]:.4f}", GENERALIZATION_REMEDIES)
    acc, vacc = history.get(metric) or [], history.get(f"val_{metric}") or []
    if metric == "accuracy" and acc and vacc and acc[-1] - vacc[-1] > OVERFIT_GAP:
        return Finding("generalization", "training accuracy far above validation accuracy",
                       f"final training accuracy {acc[-1]:.3f} vs validation accuracy {vacc[-1]:.3f} "
                       f"(gap {acc[-1] - vacc[-1]:.3f})", GENERALIZATION_REMEDIES)
    return None


def _ensemble_evidence(check: dict[str, Any]) -> str:
    """How an ensemble of the seeds (or members) does against the mean member (reuse.ensemble.check)."""
    m = check["metric"]
    verdict = "more" if check["beats_spread"] else "not more"
    return (f"{len(check['members'])} members' {m} on {check['data']}: {check['mean']:.3f} ± "
            f"{check['std']:.3f}; their ensemble ({check['method']}) {check['ensemble']:.3f}, "
            f"{check['gain']:+.3f} over the mean member: {verdict} than the spread")


def _ensemble_remedies(check: dict[str, Any]) -> tuple[str, ...]:
    if check["beats_spread"]:
        return ("serve the ensemble: it beats the mean member by more than the spread (reuse ensemble, or "
                "--seeds N --ensemble)", *PREDICTION_REMEDIES[1:])
    return ("more, or more diverse, members: an ensemble of these does not beat the mean member by more than "
            "the spread", *PREDICTION_REMEDIES[1:])


def _prediction(metrics: dict[str, Any], metric: str) -> Finding | None:
    found = _seed_spread(metrics, metric)
    check = metrics.get("ensemble_check")
    if not isinstance(check, dict) or not check.get("members"):
        return found
    if found is not None:
        return Finding(found.problem, found.summary, f"{found.evidence}; {_ensemble_evidence(check)}",
                       _ensemble_remedies(check))
    spread = check["std"] > SPREAD_STD if check["metric"] == "accuracy" else (
        check["mean"] > 0 and check["std"] / check["mean"] > SPREAD_LOSS_CV)
    if spread:
        return Finding("prediction", f"{check['metric']} varies a lot across the members",
                       _ensemble_evidence(check), _ensemble_remedies(check))
    return None


def _seed_spread(metrics: dict[str, Any], metric: str) -> Finding | None:
    seeds = metrics.get("seeds") or {}
    for key in (f"val_{metric}", metric) if metric == "accuracy" else ():
        s = seeds.get(key)
        if s and len(s.get("values", [])) > 1 and s["std"] > SPREAD_STD:
            vals = s["values"]
            return Finding("prediction", f"{key} varies a lot across seeds",
                           f"{key} {s['mean']:.3f} ± {s['std']:.3f} over {len(vals)} seeds "
                           f"(min {min(vals):.3f}, max {max(vals):.3f})", PREDICTION_REMEDIES)
    for key in ("val_loss", "loss"):
        s = seeds.get(key)
        if s and len(s.get("values", [])) > 1 and s["mean"] > 0 and s["std"] / s["mean"] > SPREAD_LOSS_CV:
            return Finding("prediction", f"{key} varies a lot across seeds",
                           f"{key} {s['mean']:.4f} ± {s['std']:.4f} over {len(s['values'])} seeds "
                           f"({s['std'] / s['mean']:.0%} of the mean)", PREDICTION_REMEDIES)
    return None


def diagnose(history: dict[str, list[float]], metrics: dict[str, Any] | None = None, *,
             n_outputs: int | None = None, settings: dict[str, Any] | None = None) -> list[Finding]:
    """Findings for a run's per-epoch ``history`` and final ``metrics`` (``metrics["seeds"]`` holds
    the spread over seeds when trained with ``--seeds N``). An empty list means no problem found.

    Args:
        history: ``loss``, ``accuracy`` (or ``mae``), ``val_loss``, ``val_accuracy`` per epoch.
        metrics: final metrics, optionally with ``seeds`` -> metric -> {mean, std, values}.
        n_outputs: units of the output layer (for the chance-level loss ln(k) of a k-class softmax).
        settings: the version's training settings (``feature_std``: how much the frozen features vary).
    """
    metric = "mae" if "mae" in history else "accuracy"
    found = [flat_features(settings or {}), _learning(history, n_outputs), _generalization(history, metric),
             _prediction(metrics or {}, metric)]
    return [f for f in found if f is not None]
