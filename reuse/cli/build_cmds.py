"""Selection and building commands: layers, build, lineage."""

from __future__ import annotations

from typing import Any

import click

from reuse.cli.common import emit_json, facade_options, get_service, load_options, name_list
from reuse.errors import InvalidInput

match_option = click.option(
    "--match", type=click.Choice(["full", "prefix"]), default="full", show_default=True,
    help="full: the whole layer name must match the pattern; prefix: a match from the start of the name "
         "(TensorFlow 1 scope behaviour).",
)


def parse_shape(text: str) -> tuple[int | None, ...]:
    """``64`` -> (64,); ``28,28,1`` -> (28, 28, 1); ``None`` stands for a variable dimension."""
    dims: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if part.lower() == "none":
            dims.append(None)
        elif part.isascii() and part.isdigit() and int(part) > 0:
            dims.append(int(part))
        else:
            raise InvalidInput(f"invalid input shape {text!r}: expected positive integers separated by "
                               "commas, e.g. 64 or 28,28,1")
    return tuple(dims)


def _shape(shape: Any) -> str:
    if shape is None:
        return "?"
    dims = ["None" if d is None else str(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"


@click.command("layers")
@click.argument("ref", metavar="NAME[:V]")
@click.option("--scope", default=None, metavar="PAT", help="Dry run: mark the layers this pattern selects.")
@match_option
@facade_options
def layers_cmd(ref: str, scope: str | None, match: str, store: str | None, as_json: bool) -> None:
    """Show the layers of a stored model; with --scope, which of them a pattern selects.

    Layers inside a nested model (a Sequential or functional model used as a layer) are listed by path,
    indented under it: NESTED/LAYER, with "/" between names. A scope is matched against the whole path
    (full match), so select them with e.g. 'backbone/block_1_.*'; the nested model's own path selects
    every layer inside it. The "inputs" column names the layers each one reads. Operation nodes (x + y,
    ops.mean, x[..., 0] in a functional graph) are listed as "(op)": they have paths and are selected,
    replayed and named in gaps like layers, and hold no weights.

    --json prints {"model", "scope", "match", "layers": [{"index", "name", "class_name", "output_shape",
    "params", "trainable", "matched", "depth", "inputs", "op"}], "matched", "unmatched", "selected"} (scope,
    match, matched, unmatched, selected and each "matched" are null without --scope; "selected" lists the
    layers a build would copy).
    """
    table = get_service(store).layer_table(ref, scope, match)
    if as_json:
        emit_json(table.to_dict())
        return
    header = ["#", "name", "class", "output shape", "params", "trainable", "inputs"] + (
        ["matched"] if scope else []
    )
    rows = [[str(r.index), "  " * r.depth + r.name, r.class_name + (" (op)" if r.op else ""),
             _shape(r.output_shape), f"{r.params:,}", "-" if r.op else "yes" if r.trainable else "no",
             _inputs(r.inputs)]
            + (["yes" if r.matched else "-"] if scope else [])
            for r in table.rows]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    click.echo(f"{table.model}")
    for line in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    if table.selection is not None:
        n = len(table.selected)
        click.echo(f"{n} of {table.leaves} layers match {scope!r} ({match} match)"
                   + ("" if n else "; a build with this scope would fail"))


def _inputs(names: tuple[str, ...]) -> str:
    text = ", ".join(names)
    return text if len(text) <= 60 else text[:57] + "..."


@click.command("build")
@click.argument("new_name", metavar="NEW")
@click.option("--from", "base", required=True, metavar="NAME[:V]", help="The model to reuse layers from.")
@click.option("--reuse", "reuse_pat", required=True, metavar="PAT",
              help="Scope pattern of the layers to copy.")
@match_option
@click.option("--trainable", default=None, metavar="PAT",
              help="Scope pattern of reused layers to leave trainable (default: all frozen).")
@click.option("--head", default=None, metavar="SPEC",
              help="Head spec: layers dense:N[:act:init:l2=F:maxnorm=F], batchnorm, dropout:R, maxout:N, "
              "an activation, and flatten, gap, gmp for conv/sequence outputs (global average/max "
              "pooling), e.g. dense:64:relu:he_normal,batchnorm,dropout:0.2 or gap,dense:64:relu "
              "(see docs/building.md).")
@click.option("--head-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Head spec as a .json/.yaml file: {layers: [{type: dense, units: 64, ...}, ...]}.")
@click.option("--classes", type=int, default=None, metavar="N",
              help="Append a softmax output layer of N classes.")
@click.option("--regression", is_flag=True, help="Append a linear output layer (see --outputs).")
@click.option("--outputs", type=int, default=None, metavar="N",
              help="Regression targets (with --regression; default 1).")
@click.option("--input-shape", default=None, metavar="SHAPE",
              help="Input shape without batch dimension, e.g. 64 or 28,28,1 (default: the base's).")
@click.option("--exit", "exits", multiple=True, metavar="LAYER",
              help="A selected layer whose output ends the reused part (repeatable; several are joined "
                   "along the last axis). Default: the one tensor no selected layer reads.")
@click.option("--preprocess", default=None, metavar="SPEC",
              help="Preprocessing put in front of the reused layers, so NEW takes raw pixels (0..255) in "
                   "training, evaluation, prediction, serving and exports: a preset tf ([-1, 1]), "
                   "caffe (BGR, ImageNet mean), torch ([0, 1], ImageNet mean/std) or none; a "
                   "keras.applications family (mobilenet_v2, resnet50, vgg16, densenet, efficientnet, ...); "
                   "or steps bgr, rescale:SCALE[:OFFSET] (1/255 divides), normalize:MEAN:STD (per-channel "
                   "lists) joined with +.")
@click.option("--description", default="", help="Description stored with the new model.")
@click.option("--seed", type=int, default=None, help="Seed for the head's initial weights and dropout.")
@facade_options
@load_options
def build_cmd(new_name: str, base: str, reuse_pat: str, match: str, trainable: str | None, head: str | None,
              head_file: str | None, classes: int | None, regression: bool, outputs: int | None,
              input_shape: str | None, exits: tuple[str, ...], preprocess: str | None, description: str,
              seed: int | None, store: str | None, as_json: bool) -> None:
    """Build NEW from copies of the layers of a stored model that --reuse selects, plus a new head.

    --reuse matches layer paths (a layer inside a nested model is NESTED/LAYER; the nested model's path
    selects all of it). The selected layers may form any connected part of the graph (residual adds,
    concatenations, shared layers, operation nodes such as add_3 or get_item, listed by `reuse layers`):
    each tensor they read from outside — the base's inputs or outputs of unselected layers — becomes an
    input of NEW with its shape and dtype. Unselected dropout/noise layers between selected ones are
    skipped, and random augmentation layers (RandomFlip, ...) are never copied; any other unselected layer
    between them is an error that names a scope which closes the gap. Conv and sequence outputs need a
    gap, gmp or flatten head layer before a classifier. Reused layers are frozen unless --trainable selects
    them. Copying a Lambda layer needs --unsafe, a layer class of your own --trust-module.

    A base recognised as a keras.applications model (reuse show prints "expects") that needs
    preprocessing, built without --preprocess, gets a "Warning:" line naming the preset to use.

    --json prints the registered model's info plus "warnings" (a list of lines); its "lineage" key holds
    the build record (base, scope, match, trainable, head, output, inputs, exits, layers (an operation
    node's with "op": true), skipped, left_out, head_layers, preprocess, base_family, warnings).
    """
    info = get_service(store).build(
        new_name, base, reuse_pat, head=head, head_file=head_file, classes=classes,
        regression=regression, outputs=outputs, trainable=trainable, match=match,
        input_shape=parse_shape(input_shape) if input_shape is not None else None,
        description=description, seed=seed, exits=list(exits) or None, preprocess=preprocess,
    )
    warnings = list(info.lineage.get("warnings") or [])
    if as_json:
        emit_json({**info.to_dict(), "warnings": warnings})
        return
    lin = info.lineage
    frozen = [x["name"] for x in lin["layers"] if not x["trainable"]]
    open_ = [x["name"] for x in lin["layers"] if x["trainable"]]
    click.echo(f"Built {info.ref} from {lin['base']['name']}:{lin['base']['version']}")
    click.echo(f"  reused (frozen):    {name_list(frozen)}")
    click.echo(f"  reused (trainable): {name_list(open_)}")
    if lin["skipped"]:
        click.echo(f"  skipped:            {', '.join(x['name'] for x in lin['skipped'])}")
    click.echo(f"  head:               {', '.join(lin['head_layers'])}")
    if lin.get("preprocess") and lin["preprocess"].get("ops"):
        from reuse.preprocess_spec import describe_ops

        click.echo(f"  preprocessing:      {lin['preprocess']['spec']} "
                   f"({describe_ops(lin['preprocess']['ops'])}); {info.name} takes raw pixels")
    click.echo(f"  input shape {_shape(lin['input_shape'])}, output shape {_shape(info.output_shape[1:])}")
    for line in warnings:
        click.echo(f"Warning: {line}")


def _output(out: dict[str, int] | None) -> str:
    if not out:
        return ""
    if "classes" in out:
        return f", output {out['classes']} classes (softmax)"
    return f", output {out.get('regression')} regression target(s) (linear)"


def _preprocess(pre: dict | None) -> str:
    return f", preprocess {pre['spec']}" if pre else ""


@click.command("lineage")
@click.argument("ref", metavar="NAME[:V]")
@facade_options
def lineage_cmd(ref: str, store: str | None, as_json: bool) -> None:
    """Show where a model came from: its bases back to the first, and where each reused layer came from.

    --json prints {"model", "ancestry": [{"model", "name", "version", "created", "description", "operation",
    "base", "lineage", "missing"}, ...] (newest first), "layer_origins": {layer: ["model/layer", ...]}}.
    """
    from reuse.store.lineage import layer_origins

    entries = get_service(store).lineage(ref)
    origins = layer_origins(entries)
    if as_json:
        emit_json({"model": entries[0]["model"], "ancestry": entries, "layer_origins": origins})
        return
    for depth, e in enumerate(entries):
        pad = "  " * depth
        if e["missing"]:
            click.echo(f"{pad}{e['model']}  (missing from the store)")
            continue
        lin = e["lineage"]
        if e["operation"] == "build":
            click.echo(
                f"{pad}{e['model']}  built from {e['base']}: reuse {lin['scope']!r} ({lin['match']} "
                f"match), trainable {lin['trainable'] or '-'}, head "
                f"{lin['head'] or '-'}{_output(lin.get('output'))}{_preprocess(lin.get('preprocess'))}"
            )
        elif e["operation"] == "ensemble" and lin.get("members"):  # the first member is its base
            parts = ", ".join(f"{m.get('name')}:{m.get('version')} ({float(m.get('weight') or 0):.3g})"
                              for m in lin["members"])
            click.echo(f"{pad}{e['model']}  ensemble ({lin.get('method', 'mean')}) of {parts}; followed: "
                       f"{e['base']}")
        elif e["base"]:
            click.echo(f"{pad}{e['model']}  {e['operation'] or 'derived'} from {e['base']}")
        else:
            click.echo(f"{pad}{e['model']}  registered {e['created'] or ''}".rstrip())
    if origins:
        click.echo("layers:")
        for layer, chain in origins.items():
            click.echo(f"  {layer} <- {' <- '.join(chain)}")


COMMANDS = [layers_cmd, build_cmd, lineage_cmd]
