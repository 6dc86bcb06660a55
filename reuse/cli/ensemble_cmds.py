"""The ``ensemble`` command: one registered model combining several stored ones (reuse.ensemble)."""

from __future__ import annotations

from typing import Any

import click

from reuse.cli.common import emit_json, facade_options, get_service, load_options, memory_option

_JSON = ("JSON: the new version's info (as `reuse show --json`): ref, name, version, description, "
         "class_names, input_shape, output_shape, lineage (operation \"ensemble\", method "
         "mean|vote|average_weights, base = the first member, members: name, version, weight, layer), "
         "metrics (with --data: ensemble_check: data, samples, metric, members [{model, loss, "
         "accuracy|mae}], mean, std, ensemble, ensemble_loss, gain, beats_spread), ...")


def print_check(check: dict[str, Any], indent: str = "  ") -> None:
    """The members' scores beside the ensemble's, and the verdict on the prediction problem."""
    metric = check["metric"]
    click.echo(f"{indent}{metric} on {check['data']} ({check['samples']} samples):")
    for row in check["members"]:
        click.echo(f"{indent}  {row['model']:<24} {row[metric]:.4f}")
    click.echo(f"{indent}  {'members (mean ± std)':<24} {check['mean']:.4f} ± {check['std']:.4f}")
    label = {"vote": "the vote", "average_weights": "the weight average"}.get(
        check.get("method"), "the ensemble"
    )
    click.echo(f"{indent}  {label.removeprefix('the '):<24} {check['ensemble']:.4f}")
    verdict = "beats" if check["beats_spread"] else "does not beat"
    click.echo(f"{indent}{label} {verdict} the mean member by more than the members' spread "
               f"(gain {check['gain']:+.4f} vs std {check['std']:.4f})")


@click.command("ensemble", epilog=_JSON)
@click.argument("name")
@click.option("--members", required=True, metavar="A:1,B:3,...",
              help="The models to combine (NAME or NAME:VERSION, comma-separated, at least two). They "
              "must take the same inputs (names, shapes, dtypes) and give the same output (shape; "
              "class names).")
@click.option("--weights", default=None, metavar="W1,W2,...",
              help="One non-negative weight per member (normalised to sum to 1; default equal).")
@click.option("--vote", is_flag=True,
              help="Majority vote of the members' classes (one-hot output; ties go to the "
              "largest summed probability) instead of the mean of their outputs.")
@click.option("--average-weights", "average_weights", is_flag=True,
              help="One network with the members' (weighted) mean weights, a \"model soup\": costs one "
              "member at serving time; the members must share one architecture (e.g. seeds of one "
              "fine-tune).")
@click.option("--data", default=None, metavar="DATA",
              help="Labelled held-out data: score each member and the ensemble on it and record it (read by "
              "`reuse report`).")
@click.option("--label", default=None, metavar="COLUMN", help="CSV: label column of --data.")
@click.option("--relabel", is_flag=True, help="Map --data labels to 0..k-1 (sorted).")
@click.option("--description", default="", help="Description of the new version.")
@memory_option
@facade_options
@load_options
def ensemble_cmd(name: str, members: str, weights: str | None, vote: bool, average_weights: bool,
                 data: str | None, label: str | None, relabel: bool, description: str, store: str | None,
                 as_json: bool) -> None:
    """Register one model that averages its members' outputs (class probabilities; the mean for
    regression), or with --vote their majority class, or with --average-weights their mean weights, as the
    next version of NAME. It serves, exports, evaluates and shows lineage like any other version."""
    info = get_service(store).ensemble(name, members, weights=weights, vote=vote,
                                       average_weights=average_weights, data=data, label=label,
                                       relabel=relabel, description=description)
    if as_json:
        emit_json(info.to_dict())
        return
    lineage = info.lineage or {}
    parts = ", ".join(f"{m['name']}:{m['version']} ({m['weight']:.3g})" for m in lineage.get("members", []))
    how = {"mean": "mean of outputs", "vote": "majority vote", "average_weights": "mean of weights"}
    click.echo(f"Registered {info.ref}: {how.get(lineage.get('method'), lineage.get('method'))} of {parts}")
    check = (info.metrics or {}).get("ensemble_check")
    if check:
        print_check(check)


COMMANDS = [ensemble_cmd]
