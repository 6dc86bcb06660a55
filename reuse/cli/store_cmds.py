"""Store commands: register, list, versions, show, delete, export, store check.

--json output is an API with stable keys: a model version is an object with ref, name,
version, path, created, description, tags, input_shape, output_shape,
class_names, metrics, history, lineage, settings, keras_version, backend,
tensorflow_version, params, source, unsafe_layers, size_bytes and model_class (the class of a functional
subclass, e.g. a KerasHub backbone, stored as its graph; else null).
"""

from __future__ import annotations

from typing import Any

import click

from reuse.cli.common import (
    emit_json,
    facade_options,
    get_service,
    json_option,
    local_only,
    server_option,
    store_option,
    trust_option,
)
from reuse.errors import InvalidInput
from reuse.store import CheckReport, ModelInfo, ModelRef
from reuse.text import human_bytes, shape, short_time, table

unsafe_option = click.option(
    "--unsafe", is_flag=True,
    help="Allow Lambda layers, whose Python code runs on load. Only for files you trust.",
)


def _parse_tags(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, received {item!r}", ctx, param)
        tags[key] = value
    return tags


def _explicit_version(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        ref = ModelRef.parse(value)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    if ref.version is None:
        raise click.BadParameter("expected NAME:VERSION (deleting needs an explicit version), received "
                                 f"{value!r}",
                                 ctx, param)
    return value


def _tags_text(tags: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(tags.items()))


@click.command("register")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--name", "-n", required=True, help="Model name: 1-64 of a-z 0-9 . _ - (no '..').")
@click.option("--description", "-d", default="", help="Free text kept with the version.")
@click.option("--tag", "tags", multiple=True, callback=_parse_tags, metavar="KEY=VALUE",
              help="A tag to keep with the version (repeatable).")
@unsafe_option
@trust_option
@facade_options
def register_cmd(file: str, name: str, description: str, tags: dict[str, str], unsafe: bool,
                 store: str | None, as_json: bool) -> None:
    """Register a model FILE (.keras, Keras 3 .h5 or tf.keras 2 .h5) as the next version of NAME.

    The file is loaded in Keras safe mode, without compiling; a model with Lambda layers is refused
    unless --unsafe, and one naming a class that neither Keras nor a trusted module defines (your own
    registered layers) until --trust-module names its module. A functional subclass of keras.Model (a
    KerasHub backbone) is stored as its graph, its class kept as model_class; a subclassed model (its own
    call(), no graph) is refused. With --json, prints the new version's object.
    """
    info = get_service(store).register_file(file, name, unsafe=unsafe, description=description, tags=tags)
    if as_json:
        emit_json(info.to_dict())
        return
    click.echo(f"Registered {info.ref} ({info.params} parameters, {human_bytes(info.size_bytes)}) at "
               f"{info.path}")


def _version_rows(infos: list[ModelInfo], *, with_name: bool) -> str:
    headers = (["MODEL"] if with_name else []) + ["VERSION", "CREATED (UTC)", "PARAMS", "SIZE",
                                                  "DESCRIPTION", "TAGS"]
    rows = [([i.name] if with_name else []) + [i.version, short_time(i.created), i.params,
                                               human_bytes(i.size_bytes), i.description,
                                               _tags_text(i.tags)] for i in infos]
    right = (1, 3, 4) if with_name else (0, 2, 3)
    return table(headers, rows, right=right)


@click.command("list")
@facade_options
def list_cmd(store: str | None, as_json: bool) -> None:
    """List the models in the store, with their latest version. --json: a list of version objects."""
    svc = get_service(store)
    infos = svc.list_models()
    if as_json:
        emit_json([i.to_dict() for i in infos])
        return
    if not infos:
        click.echo(f"No models in {svc.store_root}.")
        return
    click.echo(_version_rows(infos, with_name=True))


@click.command("versions")
@click.argument("name")
@facade_options
def versions_cmd(name: str, store: str | None, as_json: bool) -> None:
    """List every version of NAME, oldest first. --json: a list of version objects."""
    infos = get_service(store).model_versions(name)
    if as_json:
        emit_json([i.to_dict() for i in infos])
        return
    click.echo(_version_rows(infos, with_name=False))


def _show_lines(info: ModelInfo) -> list[tuple[str, Any]]:
    lines: list[tuple[str, Any]] = [
        ("created", f"{short_time(info.created)} UTC"),
        ("description", info.description or "-"),
        ("tags", _tags_text(info.tags) or "-"),
        ("input shape", shape(info.input_shape)),
        ("output shape", shape(info.output_shape)),
        ("parameters", info.params),
        ("file", f"{info.path} ({human_bytes(info.size_bytes)})"),
        ("saved with",
         f"keras {info.keras_version} ({info.backend} backend), tensorflow {info.tensorflow_version}"),
    ]
    if info.class_names:
        lines.append(("classes", ", ".join(info.class_names)))
    lines.extend(_preprocessing_lines(info))
    if info.metrics:
        lines.append(("metrics", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in info.metrics.items())))
    if info.history:
        epochs = max(len(v) for v in info.history.values())
        lines.append(("history", f"{epochs} epochs of {', '.join(info.history)}"))
    if info.lineage:
        lines.append(("lineage", info.lineage))
    if info.settings:
        lines.append(("settings", info.settings))
    if info.source:
        lines.append(("source", f"{info.source.get('path')} ({info.source.get('format')})"))
    if info.unsafe_layers:
        lines.append(("unsafe layers", ", ".join(info.unsafe_layers) + " (Lambda: loading needs --unsafe)"))
    if info.model_class:
        lines.append(("model class", f"{info.model_class} (stored as its functional graph)"))
    return lines


def _preprocessing_lines(info: ModelInfo) -> list[tuple[str, Any]]:
    """What the model does to raw pixels, and what its architecture expects."""
    from reuse.graph.applications import base_family_of
    from reuse.preprocess_spec import describe_ops

    lines: list[tuple[str, Any]] = []
    pre = info.preprocess
    if pre:
        lines.append(("preprocessing", f"{pre.get('spec')} ({describe_ops(pre.get('ops') or [])}) in layer "
                                       f"{pre.get('layer')}: takes raw pixels 0..255"))
    family = base_family_of(info.base_family)
    if family is not None:
        hint = f"; build from it with --preprocess {family.suggestion}" if family.needs and not pre else ""
        lines.append(("expects", family.describe() + hint))
    return lines


@click.command("show")
@click.argument("ref", metavar="NAME[:VERSION]")
@facade_options
def show_cmd(ref: str, store: str | None, as_json: bool) -> None:
    """Show a version's metadata and its layers (latest version unless NAME:VERSION).

    --json: the version object plus layers, a list of objects with name, class_name,
    output_shape, params and trainable.
    """
    svc = get_service(store)
    info = svc.model_info(ref)
    layers = svc.model_layers(info.ref)
    if as_json:
        emit_json({**info.to_dict(), "layers": [layer.to_dict() for layer in layers]})
        return
    click.echo(info.ref)
    width = max(len(k) for k, _ in _show_lines(info))
    for key, value in _show_lines(info):
        click.echo(f"  {key.ljust(width)}  {value}")
    click.echo("")
    rows = [(la.name, la.class_name, shape(la.output_shape), f"{la.params:,}",
             "yes" if la.trainable else "no")
            for la in layers]
    click.echo(table(["LAYER", "TYPE", "OUTPUT SHAPE", "PARAMS", "TRAINABLE"], rows, right=(3,)))
    trainable = sum(la.params for la in layers if la.trainable)
    click.echo(f"\n{len(layers)} layers, {sum(la.params for la in layers):,} parameters ({trainable:,} in "
               "trainable layers)")


@click.command("delete")
@click.argument("ref", metavar="NAME:VERSION", callback=_explicit_version)
@store_option
@server_option
def delete_cmd(ref: str, store: str | None) -> None:
    """Delete one version, NAME:VERSION (always explicit). Its number is never reused."""
    info = get_service(store).delete_version(ref)
    click.echo(f"Deleted {info.ref}")


@click.command("export")
@click.argument("ref", metavar="NAME[:VERSION]")
@click.argument("out", metavar="[OUT]", required=False, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["keras", "onnx", "savedmodel"]), default=None,
              help="keras: a native .keras file; onnx: an .onnx file checked in ONNX Runtime against Keras; "
                   "savedmodel: a TensorFlow SavedModel folder. Default: onnx for OUT.onnx, else keras.")
@click.option("--triton-repo", type=click.Path(file_okay=False), default=None,
              help="Instead of OUT: write DIR/NAME/config.pbtxt and DIR/NAME/VERSION/model.onnx, a Triton "
                   "model repository (ONNX Runtime backend).")
@click.option("--max-batch-size", default=64, show_default=True, type=click.IntRange(1),
              help="With --triton-repo: Triton's max_batch_size.")
@click.option("--max-batch-delay-ms", default=1.0, show_default=True, type=click.FloatRange(0),
              help="With --triton-repo: dynamic batching's longest queue delay.")
@click.option("--kserve", "storage_uri", metavar="STORAGE_URI", default=None,
              help="With --triton-repo: also print a KServe InferenceService manifest serving the repository "
                   "once it is copied to STORAGE_URI (s3://..., gs://..., pvc://...).")
@click.option("--force", is_flag=True, help="Replace what exists at OUT (or that version in the repository).")
@unsafe_option
@trust_option
@store_option
@local_only("export")
def export_cmd(ref: str, out: str | None, fmt: str | None, triton_repo: str | None, max_batch_size: int,
               max_batch_delay_ms: float, storage_uri: str | None, force: bool, unsafe: bool,
               store: str | None) -> None:
    """Export a version (latest unless NAME:VERSION) for another engine.

    \b
      reuse export NAME OUT.keras                      a native Keras file (the default format)
      reuse export NAME OUT.onnx                       ONNX, for ONNX Runtime, Triton, ...
      reuse export NAME OUT --format savedmodel        a TensorFlow SavedModel folder
      reuse export NAME --triton-repo DIR [--kserve s3://bucket/models]

    ONNX and SavedModel exports are loaded back and compared with Keras on a probe batch before they
    are put in place (within 1e-5). With --kserve the manifest goes to stdout, the summary to stderr.
    """
    if (out is None) == (triton_repo is None):
        raise InvalidInput("give OUT or --triton-repo DIR (one of them)")
    if triton_repo is None and storage_uri is not None:
        raise InvalidInput("--kserve describes a Triton repository; add --triton-repo DIR")
    if triton_repo is not None and fmt not in (None, "onnx"):
        raise InvalidInput(f"a Triton repository holds ONNX files; --format {fmt} does not apply to "
                           "--triton-repo")
    svc = get_service(store)
    info = svc.model_info(ref)
    if triton_repo is None:
        result = svc.export_model(info.ref, out, overwrite=force, unsafe=unsafe, format=fmt)
        checked = "" if result.max_difference is None else \
            f" ({result.format}, matches Keras within {result.max_difference:.1g})"
        click.echo(f"Exported {result.ref} to {result.path}{checked}")
        return
    entry = svc.export_triton(info.ref, triton_repo, overwrite=force, unsafe=unsafe,
                              max_batch_size=max_batch_size, max_delay_us=round(max_batch_delay_ms * 1000),
                              storage_uri=storage_uri)
    click.echo(f"Exported {entry.ref} to the Triton repository {entry.repo}: {entry.config}, {entry.model} "
               f"(matches Keras within {entry.max_difference:.1g})", err=storage_uri is not None)
    if storage_uri is not None:
        click.echo(entry.kserve_manifest, nl=False)


def _check_text(report: CheckReport) -> list[str]:
    lines = []
    bad = report.damaged
    lines.append(f"{len(report.files)} version file(s) in {report.root}: {len(report.files) - len(bad)} ok, "
                 f"{len(bad)} damaged")
    for f in bad:
        lines.append(f"  DAMAGED {f.ref}: {f.problem}")
    fixed = " (index rebuilt)" if report.repaired else " (run with --repair)"
    if report.index_unreadable:
        lines.append(f"index: {report.index_unreadable}{fixed}")
    for label, refs in (("missing from the index", report.missing_from_index),
                        ("in the index but not on disk", report.stale_in_index),
                        ("in the index with other metadata", report.mismatched_in_index)):
        if refs:
            lines.append(f"index: {len(refs)} version(s) {label}: {', '.join(refs)}{fixed}")
    for t in report.removed_temp_files:
        lines.append(f"removed the temp file of a writer that is gone: {t}")
    lines.extend(f"note: {n}" for n in report.notes)
    for s in report.stray_files:
        lines.append(f"unknown file, left alone: {s}")
    lines.append("OK" if report.ok else "PROBLEMS REMAIN")
    return lines


@click.group("store")
def store_group() -> None:
    """Maintain the model store."""


@store_group.command("check")
@click.option("--repair", is_flag=True,
              help="Rebuild the index from the files and remove temp files of dead writers "
                   "(damaged models are reported, never deleted).")
@store_option
@local_only("store check")
@json_option
def check_cmd(repair: bool, store: str | None, as_json: bool) -> None:
    """Verify every version's checksums and the index; exit 1 while damage remains.

    Temp files of killed writers are notes, not damage (the next write to their
    folder removes them). --json: an object with ok, root, files (ref, path, ok,
    problem, bytes_verified), damaged, missing_from_index, stale_in_index,
    mismatched_in_index, index_unreadable, temp_files, stray_files, repaired,
    removed_temp_files and notes.
    """
    report = get_service(store).check_store(repair=repair)
    if as_json:
        emit_json(report.to_dict())
    else:
        for line in _check_text(report):
            click.echo(line)
    if not report.ok:
        raise click.exceptions.Exit(1)


COMMANDS = [register_cmd, list_cmd, versions_cmd, show_cmd, delete_cmd, export_cmd, store_group]
