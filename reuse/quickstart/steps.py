"""Steps 1-4 of the walk-through: register the example, preview a scope, build, train and fine-tune.

Each step is a small function over the service facade that prints through :class:`Out` and returns
what later steps need. The ``run_*`` helpers do the work without printing, so step 5 repeats them
quietly for more seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reuse.quickstart import plan
from reuse.quickstart.output import Out, pct
from reuse.service import Service
from reuse.store import ModelInfo
from reuse.text import human_bytes, shape
from reuse.train.output import TrainOutcome

ProgressFactory = Callable[[], AbstractContextManager[Any]]
# Makes the progress callback (a context manager) of a step of several runs, given how many are planned:
# it receives the training events of every run and the advisor's events (reuse.advise.events).
StepProgressFactory = Callable[[int], AbstractContextManager[Any]]


def no_progress() -> AbstractContextManager[Any]:
    return nullcontext(None)


def no_step_progress(runs: int) -> AbstractContextManager[Any]:
    return nullcontext(None)


@dataclass(frozen=True)
class ReuseRun:
    """One seed of the reuse approach: built, trained with hidden1-3 frozen, then fine-tuned."""

    built: ModelInfo
    trained: TrainOutcome
    finetuned: TrainOutcome
    frozen_accuracy: float
    finetuned_accuracy: float


def test_accuracy(service: Service, ref: str) -> float:
    return float(service.evaluate_model(ref, plan.TEST_DATA)["accuracy"])


def trainable_params(service: Service, ref: str) -> int:
    return sum(la.params for la in service.model_layers(ref) if la.trainable)


def layer_rows(service: Service, ref: str) -> list[tuple[str, str, str, str, str]]:
    return [(la.name, la.class_name, shape(la.output_shape), f"{la.params:,}",
             "yes" if la.trainable else "no")
            for la in service.model_layers(ref)]


LAYER_HEADERS = ("LAYER", "TYPE", "OUTPUT SHAPE", "PARAMS", "TRAINABLE")


# -- 1 -------------------------------------------------------------------------------------------
def register_example(service: Service, out: Out, example: Path) -> ModelInfo:
    """Register the example file into this run's store and show its layers (and, for the shipped
    store entry, how it was trained and its recorded test accuracy)."""
    from reuse.quickstart import example as ex

    shipped = None
    if example.name == f"v{ex.VERSION}.h5" and example.parent.name == ex.NAME:
        shipped = Service(example.parents[1]).model_info(f"{ex.NAME}:{ex.VERSION}")
    info = service.register_file(example, plan.BASE, description=shipped.description if shipped else "",
                                 tags=shipped.tags if shipped else None)
    out.line(f"reuse register {example} --name {plan.BASE}")
    out.line(f"registered {info.ref} ({human_bytes(info.size_bytes)}; loaded in Keras safe mode, checksums "
             "written)")
    if shipped is not None:
        st, m = shipped.settings, shipped.metrics
        out.line(f"how it was trained: {st.get('data')}, {st.get('samples')} images, {st.get('epochs_run')} "
                 f"epochs of {st.get('optimizer')} (scripts/make_example_model.py)")
        out.line(f"test accuracy recorded with it: {pct(m.get('test_accuracy'))} on {m.get('test_samples')} "
                 f"held-out images ({m.get('test_data')})")
    out.line(f"reuse show {info.ref}:")
    out.table(LAYER_HEADERS, layer_rows(service, info.ref), right=(3,))
    return info


# -- 2 -------------------------------------------------------------------------------------------
def preview_scope(service: Service, out: Out, base_ref: str) -> list[str]:
    """The layer table with the scope's dry run; returns the matched layer names."""
    tbl = service.layer_table(base_ref, plan.SCOPE)
    out.line(f"reuse layers {base_ref} --scope '{plan.SCOPE}'   (a dry run: nothing is built)")
    rows = [(str(r.index), r.name, r.class_name, shape(r.output_shape), f"{r.params:,}",
             "yes" if r.matched else "-") for r in tbl.rows]
    out.table(("#", "LAYER", "TYPE", "OUTPUT SHAPE", "PARAMS", "MATCHED"), rows, right=(0, 4))
    matched = list(tbl.selection.matched) if tbl.selection else []
    out.line(f"{len(matched)} of {len(tbl.rows)} layers match: {', '.join(matched)}")
    return matched


# -- 3 -------------------------------------------------------------------------------------------
def run_build(service: Service, base_ref: str, name: str, seed: int) -> ModelInfo:
    return service.build(name, base_ref, plan.SCOPE, classes=plan.CLASSES, seed=seed,
                         description=f"hidden1-3 of {base_ref} (frozen) + a new softmax head for digits 5-9")


def build_new(service: Service, out: Out, base_ref: str) -> ModelInfo:
    """Copy hidden1-3 (frozen) under a new 5-class head for a related task: digits 5-9."""
    info = run_build(service, base_ref, plan.NEW, seed=0)
    out.line(f"reuse build {plan.NEW} --from {base_ref} --reuse '{plan.SCOPE}' --classes {plan.CLASSES}")
    out.line(f"built {info.ref}: the new task is digits 5-9, with {plan.PER_CLASS} labelled images per class")
    out.table(LAYER_HEADERS, layer_rows(service, info.ref), right=(3,))
    out.line(f"trainable parameters: {trainable_params(service, info.ref):,} of {info.params:,}")
    return info


# -- 4 -------------------------------------------------------------------------------------------
def run_reuse(service: Service, built: ModelInfo, options: plan.QuickstartOptions, seed: int,
              progress: ProgressFactory = no_progress) -> ReuseRun:
    """Train the new head (reused layers frozen), then fine-tune with hidden3 unfrozen; test both."""
    with progress() as bar:
        trained = service.train_model(built.ref, plan.TRAIN_DATA, options=options.train_options(seed),
                                      progress=bar)
    with progress() as bar:
        tuned = service.finetune_model(trained.info.ref, plan.UNFREEZE, plan.TRAIN_DATA,
                                       options=options.finetune_options(seed), progress=bar)
    return ReuseRun(built, trained, tuned, test_accuracy(service, trained.info.ref),
                    test_accuracy(service, tuned.info.ref))


def train_and_finetune(service: Service, out: Out, built: ModelInfo, options: plan.QuickstartOptions,
                       progress: ProgressFactory) -> ReuseRun:
    out.line(f"reuse train {built.name} --data '{plan.TRAIN_DATA}' --epochs {options.epochs}")
    out.line(f"reuse finetune {built.name} --unfreeze {plan.UNFREEZE} --data ... "
             f"--epochs {options.finetune_epochs}   (lr: a tenth of the training rate)")
    run = run_reuse(service, built, options, seed=0, progress=progress)
    rows = []
    for label, o, acc in (("train (hidden1-3 frozen)", run.trained, run.frozen_accuracy),
                          (f"fine-tune ({plan.UNFREEZE} unfrozen)", run.finetuned, run.finetuned_accuracy)):
        r = o.result
        rows.append((o.info.ref, label, r.epochs_run, f"{r.seconds:.2f} s", pct(r.metrics.get("accuracy")),
                     pct(acc)))
    out.table(("VERSION", "STEP", "EPOCHS", "TIME", "TRAIN ACC", "TEST ACC"), rows, right=(2, 3, 4, 5))
    out.line(f"test set: {plan.TEST_DATA} (held out; never seen in training)")
    out.line(f"lineage of {run.finetuned.info.ref}: {lineage_text(service, run.finetuned.info.ref)}")
    return run


def lineage_text(service: Service, ref: str) -> str:
    """``base -build-> v1 -train-> v2 -finetune hidden3-> v3``, from the recorded ancestry."""
    entries = list(reversed(service.lineage(ref)))
    parts = [entries[0]["model"]]
    for e in entries[1:]:
        steps = (e["lineage"] or {}).get("steps") or []
        # A built version's lineage has no steps of its own; a trained one's last step is its own.
        unfrozen = (steps[-1].get("unfrozen") or []) if steps and e["operation"] != "build" else []
        parts.append(f"-{' '.join([str(e['operation'] or 'derived'), *unfrozen])}-> {e['model']}")
    return " ".join(parts)
