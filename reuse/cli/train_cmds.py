"""Training commands: train, finetune, evaluate, predict, report, pretrain.

DATA is a file (.npz with arrays x, y; .npy with features only; .csv with the label in the last column or
--label; .h5 with datasets x, y; for a model with several inputs, one array per input named after it,
plus y), a folder of class sub-folders of images (images:DIR?size=H,W), or a built-in set:
builtin:digits, builtin:blobs, with options such as
builtin:digits?classes=5-9&per_class=10&relabel=1&split=test (see reuse.data.builtin). Arrays larger than the
memory budget are read a batch at a time (reuse.data.rows).
"""

from __future__ import annotations

from typing import Any

import click

from reuse.cli.common import (
    augment_options,
    emit_json,
    facade_options,
    get_service,
    json_option,
    load_options,
    local_only,
    memory_option,
    name_list,
    option_group,
    store_option,
)
from reuse.cli.ensemble_cmds import print_check
from reuse.cli.train_progress import ProgressBar
from reuse.train.config import OPTIMIZERS

_data_options = option_group(
    click.option("--data", "data", required=True, metavar="DATA",
                 help="Data file (.npz, .npy, .csv, .h5), builtin:digits / builtin:blobs[?options], or a "
                 "folder of class sub-folders of images: images:DIR?size=H,W[&color=grayscale][&bad=skip]."),
    click.option("--label", "label", default=None, metavar="COLUMN",
                 help="CSV: label column by name or 0-based index (default: the last)."),
    click.option("--relabel", is_flag=True,
                 help="Map labels to 0..k-1 (sorted) and record the originals as class names."),
)


_train_options = option_group(
    click.option("--val", "val", default=None, metavar="DATA", help="Validation data."),
    click.option("--val-split", "val_split", type=float, default=None,
                 help="Hold out this fraction of the training data for validation."),
    click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs (default 20)."),
    click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=None,
                 help="Batch size (default 32)."),
    click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
                 help="Optimizer (default adam)."),
    click.option("--lr", type=float, default=None, help="Learning rate (default: the optimizer's)."),
    click.option("--momentum", type=float, default=None, help="Momentum (sgd, rmsprop)."),
    click.option("--nesterov", is_flag=True, default=None, help="Nesterov momentum (sgd)."),
    click.option("--clipnorm", type=float, default=None, help="Clip gradient norms to this value."),
    click.option("--clipvalue", type=float, default=None, help="Clip gradient values to +-this."),
    click.option("--early-stopping", "early_stopping", type=click.IntRange(min=1), default=None,
                 metavar="PATIENCE", help="Stop after PATIENCE epochs without improvement of the "
                 "validation loss (training loss without validation data); keeps the best weights."),
    click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed (default 0)."),
    click.option("--seeds", type=click.IntRange(min=1), default=1,
                 help="Train N times (seeds SEED..SEED+N-1) and report mean ± std of each metric; "
                 "the run with SEED is registered."),
    click.option("--ensemble", is_flag=True,
                 help="With --seeds N (N >= 2): register every seed's model and then their averaged-output "
                 "ensemble, as the next N+1 versions of NAME (the ensemble last; see `reuse ensemble`)."),
    click.option("--no-cache", "no_cache", is_flag=True,
                 help="Do not cache the output of frozen leading layers (same results, slower)."),
    click.option("--keep-features", "features_dir", type=click.Path(file_okay=False), default=None,
                 metavar="DIR",
                 help="Write the frozen layers' features to DIR (as .npy files) and keep them; "
                 "a later run on the same data with the same frozen weights reads them instead (default: "
                 "in memory, or a temporary folder removed afterwards; local store only)."),
    click.option("--frozen-mode", "frozen_mode", type=click.Choice(["inference", "training"]), default=None,
                 help="How frozen layers run while the rest trains: inference (default; frozen dropout and "
                 "noise off, as a frozen base called with training=False) or training (as plain Keras)."),
    augment_options,
    memory_option,
    click.option("--data-parallel", "data_parallel", is_flag=True, default=None,
                 help="Split each batch over every local device (JAX backend only; several hosts "
                 "through keras.distribution.initialize, see docs/scale-out.md)."),
    click.option("--description", default=None, help="Description of the new version."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
)


def _options(kw: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig options given, by the list a train job takes too (so --server carries them all)."""
    from reuse.jobs.kinds import TRAIN_OPTIONS

    if kw.get("data_parallel"):
        from reuse.train.config import join_hosts

        join_hosts()  # several hosts: before any model is loaded
    out = {k: kw[k] for k in TRAIN_OPTIONS if kw.get(k) is not None and kw.get(k) is not False}
    if kw.get("no_cache"):
        out["cache"] = False
    if kw.get("features_dir"):
        ctx = click.get_current_context()
        if ctx.meta.get("reuse.remote", {}).get("server"):
            raise click.UsageError("--keep-features names a folder on this machine; it does not apply with "
                                   "--server")
        out["features_dir"] = kw["features_dir"]
    return out


def _ensemble(kw: dict[str, Any]) -> dict[str, Any]:
    return {"ensemble": True} if kw.get("ensemble") else {}


def _ordered(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """Training figures first, each loss before its metric (loss, accuracy, val_loss, val_accuracy), as a
    local run records them; a server's results arrive with their keys sorted, and print the same."""
    return sorted(metrics.items(),
                  key=lambda kv: (kv[0].startswith("val_"), kv[0].removeprefix("val_") != "loss"))


def _figures(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in _ordered(metrics))


def _print_training(o: Any, verb: str) -> None:
    r = o.result
    cached = f"; cached frozen features of {name_list(r.cached_layers)}" if r.cached_layers else ""
    if r.cached_layers and getattr(r, "features", ""):
        from reuse.memory import fmt_bytes

        took = f", computed in {r.feature_seconds:.1f} s" if getattr(r, "feature_seconds", 0) else ""
        cached += (
            f" ({fmt_bytes(r.feature_bytes)} {'on disk' if r.features == 'disk' else 'in memory'}{took})"
        )
    stop = f", stopped early (best epoch {r.best_epoch})" if r.stopped_early else ""
    click.echo(f"{verb} {o.parent} -> {o.info.ref}: {r.epochs_run} epochs in {r.seconds:.2f} s{stop}{cached}")
    if o.skipped:
        files = "file that cannot" if len(o.skipped) == 1 else "files that cannot"
        click.echo(f"  skipped {len(o.skipped)} image {files} be read (bad=skip): "
                   f"{'; '.join(o.skipped[:3])}{'; ...' if len(o.skipped) > 3 else ''}")
    if r.unfrozen:
        click.echo(f"  unfrozen: {', '.join(r.unfrozen)}")
    if r.bn_inference:
        click.echo(f"  batch normalisation kept in inference mode: {', '.join(r.bn_inference)}")
    if o.info.class_names:
        mapping = ", ".join(f"{i} {name}" for i, name in enumerate(o.info.class_names))
        click.echo(f"  labels mapped to classes (recorded with the model): {mapping}")
    # The progress bar showed running training-mode means; these are re-measured after training.
    click.echo(f"  final (inference mode): {_figures(r.metrics)}")
    if r.diverged:
        click.echo("  warning: the training loss diverged (NaN/inf); see `reuse report`")
    settings = o.info.settings or {}
    if "feature_std" in settings:
        from reuse.train.diagnosis import flat_features

        if (flat := flat_features(settings)) is not None:
            click.echo(f"  warning: {flat.summary} (their features' standard deviation across rows is "
                       f"{settings['feature_std']:.2g}); see `reuse report`")
    if o.seeds:
        n = len(next(iter(o.seeds.values()))["values"])
        click.echo(f"  over {n} seeds: " + "  ".join(f"{k} {s['mean']:.4f} ± {s['std']:.4f}"
                                                      for k, s in _ordered(o.seeds)))
    check = (o.info.metrics or {}).get("ensemble_check")
    if check:
        print_check(check)
    if o.ensemble is not None:
        click.echo(f"  registered the seeds as {', '.join(o.seed_models or [])} and their ensemble as "
                   f"{o.ensemble.ref}")


_TRAIN_JSON = ("JSON keys: model, parent, metrics, history, epochs_run, best_epoch, stopped_early, diverged, "
               "seconds, cached_layers, unfrozen, bn_inference, seeds (metric -> mean/std/values, or null), "
               "settings, class_names, seed_models and ensemble (with --ensemble: the seeds' versions "
               "and the ensemble's, else null), skipped (image files left out by bad=skip, each "
               "'PATH: why').")


@click.command("train", epilog=_TRAIN_JSON)
@click.argument("ref", metavar="NAME[:VERSION]")
@_data_options
@_train_options
@facade_options
@load_options
def train_cmd(ref: str, data: str, label: str | None, relabel: bool, store: str | None, as_json: bool,
              seeds: int, description: str | None, quiet: bool, **kw: Any) -> None:
    """Train a model's trainable layers; register the result as the next version of NAME."""
    with ProgressBar(False if quiet else None) as bar:
        o = get_service(store).train_model(ref, data, val=kw.get("val"), label=label, relabel=relabel,
                                           options=_options(kw), seeds=seeds, progress=bar,
                                           description=description, **_ensemble(kw))
    emit_json(o.to_dict()) if as_json else _print_training(o, "Trained")


@click.command("finetune", epilog=_TRAIN_JSON)
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--unfreeze", required=True, metavar="PATTERN",
              help="Regular expression (RE2) selecting the layers to unfreeze.")
@click.option("--match", type=click.Choice(["full", "prefix"]), default="full", show_default=True,
              help="The pattern must match the whole layer name, or a prefix of it.")
@_data_options
@_train_options
@facade_options
@load_options
def finetune_cmd(ref: str, unfreeze: str, match: str, data: str, label: str | None, relabel: bool,
                 store: str | None, as_json: bool, seeds: int, description: str | None, quiet: bool,
                 **kw: Any) -> None:
    """Unfreeze the layers PATTERN selects and train (default --lr: a tenth of the model's training
    rate; batch normalisation stays in inference mode); register the next version of NAME."""
    with ProgressBar(False if quiet else None) as bar:
        o = get_service(store).finetune_model(ref, unfreeze, data, match=match, val=kw.get("val"),
                                              label=label, relabel=relabel, options=_options(kw), seeds=seeds,
                                              progress=bar, description=description, **_ensemble(kw))
    emit_json(o.to_dict()) if as_json else _print_training(o, "Fine-tuned")


@click.command("evaluate",
               epilog="JSON keys: model, data, samples, loss, accuracy (mae for regression); for an "
               "ensemble also members (model, weight, samples, loss, accuracy|mae, or missing).")
@click.argument("ref", metavar="NAME[:VERSION]")
@_data_options
@memory_option
@facade_options
@load_options
def evaluate_cmd(ref: str, data: str, label: str | None, relabel: bool, store: str | None,
                 as_json: bool) -> None:
    """Loss and accuracy of a model on labelled data."""
    r = get_service(store).evaluate_model(ref, data, label=label, relabel=relabel)
    if as_json:
        emit_json(r)
        return
    metrics = _figures({k: v for k, v in r.items() if k not in ("model", "data", "samples", "members")})
    click.echo(f"{r['model']} on {r['data']} ({r['samples']} samples): {metrics}")
    for m in r.get("members") or []:  # an ensemble's members, each scored on the same data
        figures = "missing from the store" if m.get("missing") else _figures(
            {k: v for k, v in m.items() if k not in ("model", "weight", "samples", "missing")})
        click.echo(f"  member {m['model']} (weight {m['weight']:.3g}): {figures}")


@click.command("predict", epilog="JSON keys: model, data, samples, outputs, classes, labels.")
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--data", "data", required=True, metavar="DATA", help="Samples to predict (labels ignored).")
@click.option("--label", "label", default=None, metavar="COLUMN",
              help="CSV: the label column to skip, by name or 0-based index (default: the last, as for "
              "train and evaluate).")
@click.option("--no-label", "no_label", is_flag=True,
              help="CSV: the file has no label column; every column is a feature.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Write predictions to FILE.npz (outputs, classes, labels) or FILE.csv.")
@memory_option
@facade_options
@load_options
def predict_cmd(ref: str, data: str, label: str | None, no_label: bool, out: str | None, store: str | None,
                as_json: bool) -> None:
    """Predict with a model: class and label per sample (and outputs with --out or --json).

    A CSV's last column is its label column (skipped), as for train and evaluate, unless --label names
    another or --no-label says there is none."""
    p = get_service(store).predict_model(ref, data, label=label, no_label=no_label, out=out)
    if as_json:
        emit_json(p.to_dict())
        return
    if out:
        click.echo(f"Wrote {len(p.outputs)} predictions of {p.model} to {out}")
        return
    if p.classes is None:
        for row in p.outputs:
            click.echo(" ".join(f"{v:.6g}" for v in row.reshape(-1)))
        return
    for i, (c, name) in enumerate(zip(p.classes.tolist(), p.labels or [], strict=True)):
        click.echo(f"{i}\t{c}\t{name}\t{float(p.outputs[i].max()):.4f}")


@click.command("report", epilog="JSON keys: model, history, metrics (with ensemble_check for seeds or an "
               "ensemble scored on held-out data: members, mean, std, ensemble, gain, beats_spread), "
               "findings (problem, summary, evidence, remedies), plot.")
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write learning curves to FILE.png.")
@store_option
@local_only("report")
@json_option
def report_cmd(ref: str, plot: str | None, store: str | None, as_json: bool) -> None:
    """Learning curves and a diagnosis: learning, generalization or prediction problem."""
    r = get_service(store).report_model(ref, plot=plot)
    if as_json:
        emit_json(r.to_dict())
        return
    h = r.info.history or {}
    click.echo(f"{r.info.ref}: {len(h.get('loss', []))} epochs recorded")
    metrics = {k: v for k, v in (r.info.metrics or {}).items() if isinstance(v, (int, float))}
    if metrics:
        click.echo("  " + _figures(metrics))
    check = (r.info.metrics or {}).get("ensemble_check")
    if check:  # the seeds' (or an ensemble's members') spread, and whether their ensemble beats it
        click.echo(
            "Seeds and their ensemble:"
            if str(check["members"][0].get("model", "")).startswith("seed ")
            else "Members and the ensemble:"
        )
        print_check(check)
    if not r.findings:
        click.echo("Diagnosis: no learning, generalization or prediction problem found.")
    for f in r.findings:
        click.echo(f"Diagnosis: {f.problem} problem: {f.summary}")
        click.echo(f"  evidence: {f.evidence}")
        for remedy in f.remedies:
            click.echo(f"  try: {remedy}")
    if r.plot:
        along = ""
        if len(r.plotted) > 1:
            spans, start = [], 1
            for seg in r.plotted:
                spans.append(f"{seg.model} {seg.operation} {start}-{start + seg.epochs - 1}")
                start += seg.epochs
            along = f" ({start - 1} epochs along the lineage: epochs {', '.join(spans)})"
        click.echo(f"Learning curves written to {r.plot}{along}")


@click.command("pretrain", epilog="JSON keys: model, mode, depths (depth, train_accuracy, test_accuracy, "
               "train_loss, test_loss, reconstruction), metrics, test, seconds.")
@click.argument("name")
@_data_options
@click.option("--test", "test", default=None, metavar="DATA",
              help="Test data for the table (default: the test split of a builtin set).")
@click.option("--layers", type=click.IntRange(1, 64), required=True, help="Hidden layers to grow.")
@click.option("--units", type=click.IntRange(min=1), default=10, show_default=True, help="Units per layer.")
@click.option("--mode", type=click.Choice(["supervised", "unsupervised"]), required=True)
@click.option("--finetune", is_flag=True, help="Finally train all layers at a tenth of the rate.")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="sgd", show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--activation", default="relu", show_default=True)
@click.option("--init", "init", default="he_uniform", show_default=True, help="Hidden-layer initialiser.")
@click.option("--no-scale", "no_scale", is_flag=True, help="Do not standardise the inputs.")
@click.option("--ae-clipnorm", "ae_clipnorm", type=float, default=1.0, show_default=True,
              help="Gradient-norm clip in autoencoder phases (0: none).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--no-cache", "no_cache", is_flag=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@memory_option
@store_option
@local_only("pretrain")
@json_option
def pretrain_cmd(name: str, data: str, label: str | None, relabel: bool, test: str | None, store: str | None,
                 as_json: bool, quiet: bool, no_scale: bool, no_cache: bool, ae_clipnorm: float,
                 momentum: float, optimizer: str, **kw: Any) -> None:
    """Greedy layer-wise pretraining; prints train/test accuracy per depth and registers the network."""
    from reuse.train.pretrain import PretrainConfig

    config = PretrainConfig(scale=not no_scale, cache=not no_cache, ae_clipnorm=ae_clipnorm or None,
                            optimizer=optimizer,
                            momentum=momentum if optimizer in ("sgd", "rmsprop") else 0.0, **kw)
    with ProgressBar(False if quiet else None) as bar:
        o = get_service(store).pretrain_model(name, data, config=config, test=test, label=label,
                                              relabel=relabel, progress=bar)
    if as_json:
        emit_json(o.to_dict())
        return
    click.echo(f"{'depth':>5}  {'train_acc':>9}  {'test_acc':>8}")
    for row in o.result.table:
        te = f"{row.test_accuracy:.3f}" if row.test_accuracy is not None else "-"
        click.echo(f"{row.depth:>5}  {row.train_accuracy:>9.3f}  {te:>8}")
    click.echo(f"Registered {o.info.ref} ({config.mode}, {config.layers} x {config.units} units, "
               f"{o.result.seconds:.1f} s)")


COMMANDS = [train_cmd, finetune_cmd, evaluate_cmd, predict_cmd, report_cmd, pretrain_cmd]
