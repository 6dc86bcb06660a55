"""``reuse rank``: which stored network, and which of its layers, to reuse for new labels (no training)."""

from __future__ import annotations

import math
import threading
from typing import Any

import click

from reuse.cli.advise_cmds import INTERRUPTED, ctrl_c_cancels
from reuse.cli.common import emit_json, facade_options, get_service, memory_option_value

NOTHING_RANKED = 3  # exit code: no candidate could be scored (the table says why)
MAX_SHOWN = 40  # table rows printed (every one is in --json)

_JSON_HELP = (
    "JSON keys: candidates (best first; each: model, version, depth, scope, layers, reused_params, width, "
    "scores {logme, knn, sfda}, combined, rank, seconds), baseline (the same for the raw inputs, model "
    "null), recommendation (model, version, depth, scope, runner_up, margin per score, combined_margin, "
    "beats_baseline; null if nothing was scored), not_ranked (model, version, depth, scope, reason), metric, "
    "scores, models, "
    "data, samples, task, classes, stopped (null, budget or cancelled), seconds, warnings, settings, plot. "
    "Exit codes: 0 ranked; 1 bad input (nothing was run); 3 nothing could be ranked (the table says why); "
    "130 interrupted (the partial ranking is printed)."
)
LABELS = {"logme": "LogME", "knn": "k-NN", "sfda": "SFDA"}


def _score(name: str, v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if name == "logme" else f"{100 * v:.1f}%"


def _cut(c: dict[str, Any]) -> str:
    if c["model"] is None:
        return f"{c['width']} input values"
    layers = c["layers"]
    short = ",".join(layers) if len(layers) <= 2 else f"{layers[0]}..{layers[-1]}"
    return f"{c['depth']}: {short}" if c["depth"] is not None else short


def _margin(rec: dict[str, Any], scores: list[str]) -> str:
    parts = []
    for s in scores:
        v = (rec.get("margin") or {}).get(s)
        if v is not None:
            parts.append(f"{LABELS[s]} {v:+.3f}" if s == "logme" else f"{LABELS[s]} {100 * v:+.1f} points")
    return ", ".join(parts)


def print_ranking(d: dict[str, Any]) -> None:
    rule = " + ".join(LABELS[m] for m in d["metric"])
    how = f"{rule} (mean position)" if len(d["metric"]) > 1 else rule
    click.echo(f"Rank of {len(d['candidates'])} cut(s) of {len(d['models'])} model(s) on {d['data']}: "
               f"{d['samples']} rows, {d['task']}" + (f" ({d['classes']} classes)" if d["classes"] else "")
               + f"; ranked by {how}")
    scores = d["scores"]
    head = ["RANK", "MODEL", "VERSION", "CUT", "REUSED PARAMS", *(LABELS[s] for s in scores)]
    head += ["MEAN POS"] if len(d["metric"]) > 1 else []
    head.append("SECONDS")
    entries = sorted([*d["candidates"], d["baseline"]], key=lambda c: c["rank"] or math.inf)
    rows = []
    for c in entries[:MAX_SHOWN]:
        row = [str(c["rank"] or "-"), c["model"] or "(raw inputs, no reuse)",
               "-" if c["version"] is None else str(c["version"]), _cut(c), f"{c['reused_params']:,}"]
        row += [_score(s, c["scores"].get(s)) for s in scores]
        row += [f"{c['combined']:.2f}" if c["combined"] is not None else "-"] if len(d["metric"]) > 1 else []
        row.append(f"{c['seconds']:.2f}")
        rows.append(row)
    from reuse.text import table

    click.echo(table(head, rows, right=(0, 2, 4, *range(5, len(head)))))
    if len(entries) > MAX_SHOWN:
        click.echo(f"... {len(entries) - MAX_SHOWN} more (see --json)")
    rec = d["recommendation"]
    if rec is None:
        click.echo("No recommendation: no cut could be scored.")
    else:
        click.echo(f"Recommendation: {rec['model']}:{rec['version']} up to depth {rec['depth']} "
                   f"(reuse {rec['scope']!r})")
        if rec["runner_up"] is not None:
            r = rec["runner_up"]
            click.echo(f"  margin over the runner-up ({r['model']}:{r['version']} depth {r['depth']}): "
                       f"{_margin(rec, scores)}")
        click.echo("  it ranks above the raw inputs" if rec["beats_baseline"] else
                   "  it does NOT rank above the raw inputs: none of these is likely to beat training from "
                   "scratch")
    if d["not_ranked"]:
        click.echo("Not ranked:")
        for n in d["not_ranked"]:
            where = f"{n['model']}:{n['version']}" if n["version"] is not None else n["model"]
            if n["depth"] is not None:
                where += f" depth {n['depth']}"
            click.echo(f"  {where}: {n['reason']}")
    for w in d["warnings"]:
        click.echo(f"Note: {w}")
    if d["plot"]:
        click.echo(f"Plot written to {d['plot']}")
    click.echo("Check the top candidates by training them: reuse advise --shortlist K (see docs/rank.md).")


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value} is not a positive number")
    return value


@click.command("rank", epilog=_JSON_HELP)
@click.option("--data", required=True, metavar="DATA",
              help="Labelled data of the new task: .npz, .csv, .h5, builtin:NAME[?options] or "
              "images:DIR?size=H,W.")
@click.option("--models", default=None, metavar="PATTERN|NAME:V,...",
              help="Which stored models: name patterns (RE2, whole name; latest version) or NAME:VERSION, "
              "separated by commas. Default: every model.")
@click.option("--cuts", default=None, metavar="auto|SCOPE;SCOPE...",
              help="Candidate cuts: auto (default: the advisor's depths; on graph bases only where the part "
              "stands alone, so block by block) or scope patterns separated by ';'.")
@click.option("--blocks", default=None, metavar="PATTERN",
              help="One cut per block, as advise --blocks: e.g. 'block_{1..16}_'. Not with --cuts.")
@click.option("--match", type=click.Choice(["full", "prefix"]), default="full", show_default=True,
              help="How --cuts patterns match layer names.")
@click.option("--metric", default="auto", show_default=True, metavar="auto|logme|knn|sfda|A,B",
              help="The ranking rule: auto (LogME and k-NN, by mean position), one score, or several.")
@click.option("--regression", is_flag=True, help="Treat whole-number labels as regression targets.")
@click.option("--label", default=None, metavar="COLUMN", help="CSV: label column by name or 0-based index.")
@click.option("--relabel", is_flag=True, help="Map labels to 0..k-1 (sorted).")
@click.option("--budget", type=float, default=None, metavar="SECONDS", callback=_positive,
              help="Stop after SECONDS: models not finished are listed, the rest ranked.")
@memory_option_value
@click.option("--ray", default=None, metavar="local|ADDRESS",
              help="Rank each model as a Ray task ('local' or HOST:PORT; needs pip install 'reuse[ray]').")
@click.option("--ray-cpus", "ray_cpus", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="CPUs each Ray task asks for.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write each score against the cut's depth, one line per model, to FILE.png (.pdf, .svg).")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
@facade_options
def rank_cmd(quiet: bool, store: str | None, as_json: bool, **kw: Any) -> None:
    """Score every candidate cut of every matching stored model against the labels of --data, without
    training (LogME, k-NN leave-one-out accuracy, SFDA on the features of one forward pass per model),
    and rank them with the same scores on the raw inputs.

    The top of the table is where `reuse advise --shortlist K` spends its training.
    """
    from reuse.rank.ranking import describe  # imports the ranking code: not at CLI start-up

    def progress(ev: Any) -> None:
        line = describe(ev)
        if line and not quiet:
            click.echo(line, err=True)

    service = get_service(store)
    memory_mb = kw.pop("memory_mb", None)
    # --server: the job's own cap (the server's at most)
    if memory_mb is not None and hasattr(service, "client"):
        kw["memory_mb"] = float(memory_mb)
    cancel = threading.Event()
    with ctrl_c_cancels(cancel):
        ranking = service.rank(progress=progress, cancel=cancel, **kw)
    d = ranking.to_dict()
    emit_json(d) if as_json else print_ranking(d)
    if ranking.stopped == "cancelled":
        click.get_current_context().exit(INTERRUPTED)
    if not ranking.candidates:
        click.get_current_context().exit(NOTHING_RANKED)


COMMANDS = [rank_cmd]
