"""``reuse advise``: measure how many layers to reuse, frozen or fine-tuned, or whether to reuse at all."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from reuse.cli.common import (
    augment_options,
    emit_json,
    get_service,
    json_option,
    load_options,
    local_only,
    memory_option,
    option_group,
    store_option,
)
from reuse.train.config import OPTIMIZERS

INTERRUPTED = 130  # the shell's code for a run ended by Ctrl-C

_JSON_HELP = (
    "JSON keys: base, data, val, metric (val_accuracy, or val_loss for regression), higher_is_better, "
    "samples, val_samples, seeds, jobs, rows (one per candidate, simplest first: candidate, depth, finetune, "
    "scope, layers, mean, std, scores, seeds, seconds (mean per run), trainable_params, epochs_run, "
    "recommended), recommendation (candidate, depth, finetune, reuse_helps, reason, mean, std; null if no "
    "run finished), not_run (candidate, depth, finetune, seeds), stopped (null, budget or cancelled), "
    "seconds, output (head, classes, regression), settings, warnings, registered (NAME:VERSION or null), "
    "registered_ensemble (NAME:VERSION of the seeds' ensemble, or null), "
    "plot (path or null), shortlist (with --shortlist: k, metric, ranked, models, trained and skipped (each "
    "model, version, depth, scope, rank, scores, combined), baseline, not_ranked, seconds; else null; rows "
    "of a shortlist across models also carry base). Ctrl-C keeps the finished runs, prints them and exits "
    "with code 130."
)


@contextmanager
def ctrl_c_cancels(cancel: threading.Event) -> Iterator[None]:
    """The first Ctrl-C sets ``cancel`` (finished runs are kept); a second one aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        click.echo("Interrupted: stopping after the current runs (Ctrl-C again to abort)", err=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _fmt_score(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4f} ± {std or 0.0:.4f}"


def _seeds(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def _print_advice(d: dict[str, Any]) -> None:
    seeds = d["seeds"]
    click.echo(f"Advice for {d['base']} on {d['data']}: {d['samples']} training / {d['val_samples']} "
               f"validation samples; {d['metric']} over seed(s) {_seeds(seeds)}")
    head = ("", "candidate", "reuses", d["metric"], "time/run", "trainable", "seeds")
    lines = []
    for r in d["rows"]:
        reuses = ",".join(r["layers"]) if len(r["layers"]) <= 2 else f"{r['layers'][0]}..{r['layers'][-1]}"
        if r["depth"] == 0:
            reuses = f"none ({reuses} fresh)" if reuses else "none"
        elif r["scope"] and r["scope"] != "|".join(r["layers"]):
            reuses = f"{reuses} [{r['scope']}]"
        params = "-" if r["trainable_params"] is None else f"{r['trainable_params']:,}"
        time_s = "-" if not r["scores"] else f"{r['seconds']:.2f} s"
        lines.append(("*" if r["recommended"] else "", r["candidate"], reuses,
                      _fmt_score(r["mean"], r["std"]), time_s, params, f"{len(r['scores'])}/{len(seeds)}"))
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    right = {3, 4, 5, 6}
    for row in [head, *lines]:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        click.echo("  ".join(cells).rstrip())
    if d["not_run"]:
        why = {"budget": "over the time budget", "cancelled": "interrupted"}.get(
            d["stopped"] or "", "not run"
        )
        missing = "; ".join(f"{x['candidate']} (seed {_seeds(x['seeds'])})" for x in d["not_run"])
        click.echo(f"Not run ({why}): {missing}")
    rec = d["recommendation"]
    if rec is None:
        click.echo("No recommendation: no run finished.")
    else:
        partial = " (from the runs that finished)" if d["stopped"] else ""
        click.echo(f"Recommendation{partial}: {rec['candidate']}")
        click.echo(f"  {rec['reason']}")
    for w in d["warnings"]:
        click.echo(f"Note: {w}")
    if d["registered"]:
        click.echo(f"Registered {d['registered']}: the advice run's "
                   f"{rec['candidate'] if rec else ''} network")
    if d.get("registered_ensemble"):
        click.echo(f"Registered {d['registered_ensemble']}: the ensemble of the "
                   f"{rec['candidate'] if rec else ''} network's seeds (each registered before it)")
    if d.get("shortlist"):
        _print_shortlist(d["shortlist"])
    if d["plot"]:
        click.echo(f"Plot written to {d['plot']}")


_SCORE_LABELS = {"logme": "LogME", "knn": "k-NN", "sfda": "SFDA"}


def _print_shortlist(s: dict[str, Any]) -> None:
    def cut(e: dict[str, Any]) -> str:
        scores = ", ".join(f"{_SCORE_LABELS.get(k, k)} {v:.3f}" for k, v in e["scores"].items()
                           if v is not None)
        return f"{e['model']}:{e['version']} depth {e['depth']} (rank {e['rank']}; {scores})"

    rule = " + ".join(_SCORE_LABELS.get(m, m) for m in s["metric"])
    click.echo(f"Shortlist: trained the {len(s['trained'])} best of {s['ranked']} ranked cut(s) (rank by "
               f"{rule} in {s['seconds']:.2f} s); the raw inputs rank {s['baseline']['rank']}")
    if s["skipped"]:
        click.echo(f"  not trained ({len(s['skipped'])}):")
        for e in s["skipped"][:5]:
            click.echo(f"    {cut(e)}")
        if len(s["skipped"]) > 5:
            click.echo(f"    ... {len(s['skipped']) - 5} more (see --json)")


# Where the runs go instead of local worker processes (the `ray` extra): a cluster, and what each run asks of
# it.
_ray_options = option_group(
    click.option("--ray", default=None, metavar="local|ADDRESS",
                 help="Run the candidates as Ray tasks: 'local' starts a Ray instance on this machine "
                 "(127.0.0.1) and stops it afterwards; HOST:PORT joins a running cluster, whose workers must "
                 "see the store at the same path. --jobs then caps the runs in flight. Needs: pip install "
                 "'reuse[ray]'."),
    click.option("--ray-cpus", "ray_cpus", type=click.FloatRange(min=0, min_open=True), default=1.0,
                 show_default=True, help="CPUs each Ray task asks for."),
    click.option("--ray-gpus", "ray_gpus", type=click.FloatRange(min=0), default=0.0, show_default=True,
                 help="GPUs each Ray task asks for."),
)


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value} is not a positive number")
    return value


@click.command("advise", epilog=_JSON_HELP)
@click.option("--from", "base", default=None, metavar="NAME[:VERSION]",
              help="The base network (required unless --shortlist with --models).")
@click.option("--data", required=True, metavar="DATA",
              help="Labelled training data: .npz, .csv, .h5, builtin:digits / builtin:blobs[?options] or "
              "images:DIR?size=H,W (one sub-folder of images per class).")
@click.option("--val", default=None, metavar="DATA", help="Validation data (default: a stratified split).")
@click.option("--val-split", "val_split", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None,
              help="Fraction of --data held out for validation, stratified by class (default 0.25).")
@click.option("--label", default=None, metavar="COLUMN", help="CSV: label column by name or 0-based index.")
@click.option("--relabel", is_flag=True, help="Map labels to 0..k-1 (sorted) and record the originals.")
@click.option("--head", default=None, metavar="SPEC",
              help="Head on top of the reused layers, e.g. 'dense:64:relu', or 'gap,dense:64:relu' on "
              "conv/sequence layers (tokens: dense, batchnorm, dropout, maxout, activations, flatten, "
              "gap, gmp).")
@click.option("--head-file", "head_file", type=click.Path(dir_okay=False), default=None,
              help="Head as a JSON/YAML file.")
@click.option("--classes", type=click.IntRange(min=2), default=None,
              help="Append a softmax output with N classes (default: read from the labels).")
@click.option("--regression", is_flag=True, help="Append a linear output (one unit per target column).")
@click.option("--depths", default=None, metavar="0..N|0,1,3",
              help="Reuse depths to try; 0 trains the same architecture from scratch. N is the deepest "
              "(layers with weights below the base's output). Default: all, 0..N.")
@click.option("--scopes", default=None, metavar="P1,P2,...|P1;P2;...",
              help="Candidates as scope patterns instead of depths (depth i = the i-th pattern, simplest "
              "first), e.g. 'hidden1,hidden[12],hidden[123]'. Commas inside (), [] and {} belong to a "
              "pattern; separate with ';' instead to keep every comma, e.g. "
              "'stem.*|block_1_.*;stem.*|block_[12]_.*'.")
@click.option("--blocks", default=None, metavar="PATTERN",
              help="Candidates by block: a layer-name prefix with one {LO..HI} range, e.g. 'block_{1..16}_'; "
              "candidate i reuses every layer up to and including the last layer of block LO+i-1 (the stem "
              "and the blocks below it). At most 50 blocks. Not with --scopes.")
@click.option("--match", type=click.Choice(["full", "prefix"]), default="full", show_default=True,
              help="How --scopes patterns match layer names.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seeds per candidate.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="First seed (also seeds the validation split).")
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True,
              help="Most epochs per phase (frozen, fine-tuning).")
@click.option("--patience", type=click.IntRange(min=1), default=10, show_default=True,
              help="Early stopping: epochs without a lower validation loss (best weights kept).")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adam", show_default=True)
@click.option("--lr", type=float, default=None, callback=_positive,
              help="Learning rate (default: the optimizer's).")
@click.option("--finetune-lr", "finetune_lr", type=float, default=None, callback=_positive,
              help="Fine-tuning learning rate (default: a tenth of --lr).")
@click.option("--no-finetune", "no_finetune", is_flag=True, help="Try each depth frozen only.")
@augment_options
@click.option("--budget", type=float, default=None, metavar="MINUTES", callback=_positive,
              help="Start no run that would end after MINUTES (runs not started are listed).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes training candidates in parallel.")
@_ray_options
@click.option("--min-margin", "min_margin", type=click.FloatRange(min=0), default=None,
              help="Smallest difference that counts (default 0.005 accuracy, or one validation sample's "
              "worth if more; 1% of the best loss for regression).")
@click.option("--register", default=None, metavar="NAME",
              help="Register the recommended network (the run with the first seed) as the next version "
              "of NAME, with its lineage and the advice table in its metadata.")
@click.option("--register-ensemble", "register_ensemble", default=None, metavar="NAME",
              help="Register every seed of the recommended network and then their averaged-output ensemble "
              "(scored on the validation data) as the next versions of NAME (see `reuse ensemble`).")
@click.option("--description", default=None, help="Description of the registered version.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write the metric against depth (error bars: std over seeds) to FILE.png (.pdf, .svg).")
@click.option("--shortlist", type=click.IntRange(1, 50), default=None, metavar="K",
              help="Rank the candidates first without training (reuse rank) and train only the K best, with "
              "scratch; the rest are listed as skipped with their scores.")
@click.option("--models", default=None, metavar="PATTERN|NAME:V,...",
              help="With --shortlist, instead of --from: rank every cut of every model these name patterns "
              "select and train the K best across them.")
@click.option("--metric", default=None, metavar="auto|logme|knn|sfda|A,B",
              help="With --shortlist: the ranking rule (default auto: LogME and k-NN by mean position).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@memory_option
@store_option
@local_only("advise")
@json_option
@load_options
def advise_cmd(base: str | None, no_finetune: bool, budget: float | None, regression: bool, quiet: bool,
               store: str | None, as_json: bool, **kw: Any) -> None:
    """Train the new task's network from scratch and reusing 1..N lower layers of a base (frozen, and
    frozen then fine-tuned), each over several seeds; print the table and a recommendation.

    The recommendation is the simplest candidate that no other beats by more than the seed-to-seed
    noise; "reuse does not help here" when nothing beats training from scratch. With --shortlist K only
    the K candidates `reuse rank` scores best are trained (across --models too).
    """
    from reuse.cli.advise_progress import AdviceProgressBar  # imports the advisor: not at CLI start-up

    cancel = threading.Event()
    with AdviceProgressBar(False if quiet else None) as bar, ctrl_c_cancels(cancel):
        advice = get_service(store).advise(base, finetune=not no_finetune, budget_minutes=budget,
                                           regression=regression, progress=bar, cancel=cancel, **kw)
    d = advice.to_dict()
    emit_json(d) if as_json else _print_advice(d)
    if advice.stopped == "cancelled":
        click.get_current_context().exit(INTERRUPTED)


COMMANDS = [advise_cmd]
