"""Step 5: is reuse worth it here? The same architecture trained from scratch, over several seeds.

Every run is scored on the held-out test set. The verdict uses the advisor's rule
(:func:`reuse.advise.recommend`): the simplest approach that no other beats by more than the
seed-to-seed noise. With ``QuickstartOptions.advisor``, the advisor's own table (``Service.advise``)
follows.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from reuse.advise import Candidate, CandidateResult, recommend
from reuse.quickstart import plan
from reuse.quickstart.output import Out, pct
from reuse.quickstart.steps import (
    ProgressFactory,
    ReuseRun,
    StepProgressFactory,
    no_progress,
    no_step_progress,
    run_build,
    run_reuse,
    test_accuracy,
)
from reuse.quickstart.steps import trainable_params as count_trainable
from reuse.service import Service
from reuse.store import ModelInfo


@dataclass(frozen=True)
class Approach:
    """One row of the step-5 table: the advisor's result for a candidate (scores per seed, their mean and
    std, trainable parameters) under the label shown, and the models its runs made."""

    label: str
    result: CandidateResult
    refs: tuple[str, ...]

    @property
    def scores(self) -> tuple[float, ...]:
        return self.result.scores

    @property
    def trainable_params(self) -> int:
        return self.result.trainable_params

    @property
    def mean(self) -> float:
        return self.result.mean

    @property
    def std(self) -> float:
        return self.result.std


def _approach(service: Service, label: str, candidate: Candidate, runs: list[tuple[str, float]]) -> Approach:
    """``runs``: (model ref, test accuracy) per seed; the first one's model gives the trainable count."""
    result = CandidateResult(candidate, tuple(a for _, a in runs),
                             trainable_params=count_trainable(service, runs[0][0]))
    return Approach(label, result, tuple(r for r, _ in runs))


@dataclass(frozen=True)
class Comparison:
    """Test accuracy per seed of each approach, and the verdict."""

    approaches: tuple[Approach, ...]
    seeds: tuple[int, ...]
    reuse_helps: bool
    verdict: str
    advisor: dict[str, Any] | None  # the advisor's result (its --json document), when it ran

    def by_label(self) -> dict[str, Approach]:
        return {a.label: a for a in self.approaches}


def scratch_network(service: Service, architecture_of: ModelInfo, name: str, seed: int) -> ModelInfo:
    """Register ``architecture_of``'s architecture with fresh random weights, every layer trainable."""
    import keras

    model = service.load_model(architecture_of.ref)
    keras.utils.set_random_seed(seed)
    fresh = keras.models.clone_model(model)  # new layers from the configs: initialisers run again
    for layer in fresh.layers:
        layer.trainable = True
    step = {"op": "scratch", "architecture_of": architecture_of.ref, "seed": seed}
    return service.register_model(fresh, name, description=f"the architecture of {architecture_of.ref}, "
                                  "fresh random weights (trained from scratch)",
                                  lineage={"operation": "scratch", "steps": [step]})


def run_scratch(service: Service, architecture_of: ModelInfo, name: str, options: plan.QuickstartOptions,
                seed: int, progress: ProgressFactory = no_progress) -> tuple[str, float]:
    info = scratch_network(service, architecture_of, name, seed)
    with progress() as bar:
        o = service.train_model(info.ref, plan.TRAIN_DATA, options=options.train_options(seed), progress=bar)
    return o.info.ref, test_accuracy(service, o.info.ref)


ADVISOR_DEPTHS = (0, 1, 2, 3)


def planned_runs(service: Service, options: plan.QuickstartOptions) -> int:
    """Training runs step 5 makes: scratch for every seed, train + fine-tune for seeds after 0 (seed 0's
    are step 4's), and the advisor's: scratch, and each depth frozen and fine-tuned, for every seed."""
    runs = options.seeds + 2 * (options.seeds - 1)
    if options.advisor:
        runs += (1 + 2 * (len(ADVISOR_DEPTHS) - 1)) * options.seeds
    return runs


def compare(service: Service, out: Out, base_ref: str, first: ReuseRun, options: plan.QuickstartOptions,
            step_progress: StepProgressFactory = no_step_progress) -> Comparison:
    """Step 5. ``step_progress`` makes one progress callback for all its runs (see StepProgressFactory)."""
    seeds = tuple(range(options.seeds))
    out.line(f"the same architecture, every layer trainable, fresh weights; {len(seeds)} seed(s) per "
             f"approach ({options.epochs} epochs; fine-tuning {options.finetune_epochs} more)")
    with step_progress(planned_runs(service, options)) as bar:
        return _compare(service, out, base_ref, first, options, seeds, lambda: nullcontext(bar), bar)


def _compare(service: Service, out: Out, base_ref: str, first: ReuseRun, options: plan.QuickstartOptions,
             seeds: tuple[int, ...], progress: ProgressFactory, bar: Any) -> Comparison:
    runs = [first]
    scratch: list[tuple[str, float]] = []
    for seed in seeds:
        if seed > 0:
            built = run_build(service, base_ref, f"{plan.NEW}-seed{seed}", seed)
            runs.append(run_reuse(service, built, options, seed, progress))
        name = plan.SCRATCH if seed == 0 else f"{plan.SCRATCH}-seed{seed}"
        scratch.append(run_scratch(service, first.built, name, options, seed, progress))
    approaches = (
        _approach(service, "scratch (same architecture)", Candidate(0), scratch),
        _approach(service, "reuse hidden1-3 frozen", Candidate(3),
                  [(r.trained.info.ref, r.frozen_accuracy) for r in runs]),
        _approach(service, f"reuse, then fine-tune {plan.UNFREEZE}", Candidate(3, finetune=True),
                  [(r.finetuned.info.ref, r.finetuned_accuracy) for r in runs]),
    )
    rows = [(a.label, f"{a.trainable_params:,}", *(pct(s) for s in a.scores), f"{pct(a.mean)} ± {pct(a.std)}")
            for a in approaches]
    out.table(("APPROACH", "TRAINABLE", *(f"SEED {s}" for s in seeds), "MEAN ± STD"), rows,
              right=tuple(range(1, len(seeds) + 3)))
    rec = recommend([a.result for a in approaches])
    out.line(f"test accuracy on {plan.TEST_DATA}")
    scratch_row, best_reuse = approaches[0], max(approaches[1:], key=lambda a: a.mean)
    gap = 100.0 * (best_reuse.mean - scratch_row.mean)
    out.line(f"best reuse approach ({best_reuse.label}) vs scratch: {gap:+.1f} points of mean test accuracy")
    out.line(f"verdict: {rec.reason}")
    advisor = run_advisor(service, out, base_ref, options, bar) if options.advisor else None
    return Comparison(approaches, seeds, rec.reuse_helps, rec.reason, advisor)


def run_advisor(service: Service, out: Out, base_ref: str, options: plan.QuickstartOptions,
                progress: Any = None) -> dict[str, Any]:
    """``reuse advise`` on the same task: its table and recommendation; returns its --json document."""
    out.line(f"reuse advise {base_ref} --data '{plan.TRAIN_DATA}' --classes {plan.CLASSES} --depths 0,1,2,3 "
             f"--seeds {options.seeds}   (scores on a validation split of the training images)")
    advice = service.advise(base_ref, plan.TRAIN_DATA, classes=plan.CLASSES, depths=list(ADVISOR_DEPTHS),
                            seeds=options.seeds, epochs=2 * options.epochs, progress=progress)
    doc = advice.to_dict()
    rows = [(r["candidate"], pct(r["mean"]), pct(r["std"]), "<-" if r.get("recommended") else "")
            for r in doc["rows"]]
    out.table(("CANDIDATE", "MEAN", "STD", "RECOMMENDED"), rows, right=(1, 2))
    if advice.recommendation is not None:
        out.line(f"advisor: {advice.recommendation.reason}")
    return doc
