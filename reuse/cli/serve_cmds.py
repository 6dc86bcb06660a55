"""Serving commands: serve, ui, jobs, job, infer."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reuse.cli.common import (
    emit_json,
    facade_options,
    get_service,
    json_option,
    load_options,
    memory_option,
    option_group,
    read_token,
    server_option,
    store_option,
)
from reuse.config import ENV_TOKEN, ENV_TRUSTED_MODULES, ServerSettings

_D = ServerSettings()


_tls_options = option_group(
    click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None,
                 help="TLS certificate (PEM)."),
    click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None,
                 help="TLS private key (PEM)."),
)


@click.command("serve")
@store_option
@click.option("--host", default=_D.host, show_default=True, help="Address to bind (0.0.0.0 exposes it).")
@click.option("--port", default=_D.port, show_default=True, type=int, help="Port (0: any free port).")
@click.option("--http-port", type=click.IntRange(0, 65535), default=None, metavar="N",
              help="Also serve HTTP on this port of --host: the KServe v2 REST protocol and the read-only "
                   "dashboard (/ui/), same token, TLS and limits (0: any free port; default: no HTTP).")
@click.option("--max-batch-size", default=_D.max_batch_size, show_default=True, type=click.IntRange(1),
              help="Most rows merged into one forward pass.")
@click.option("--max-batch-delay-ms", default=_D.max_batch_delay_ms, show_default=True,
              type=click.FloatRange(0), help="Longest wait for a batch to fill, under concurrent load.")
@click.option("--max-message-mb", default=_D.max_message_bytes // 2**20, show_default=True,
              type=click.IntRange(1),
              help="Largest gRPC message, each way (larger: RESOURCE_EXHAUSTED), and largest HTTP request "
                   "body (larger: 413).")
@click.option("--max-upload-mb", default=_D.max_upload_mb, show_default=True, type=click.IntRange(1),
              help="Largest model or dataset upload.")
@click.option("--cache-mb", default=_D.cache_mb, show_default=True, type=click.IntRange(1),
              help="Memory cap of the loaded-model cache (least recently used evicted).")
@click.option("--runtime", type=click.Choice(["auto", "onnx", "keras"]), default="auto", show_default=True,
              help="Forward pass of each served version: ONNX Runtime where the model exports and matches "
                   "Keras (auto), always ONNX Runtime (onnx: a version that cannot is refused), or Keras.")
@click.option("--onnx-threads", default=1, show_default=True, type=click.IntRange(1),
              help="ONNX Runtime intra-op threads per served version.")
@click.option("--workers", default=_D.workers, show_default=True, type=click.IntRange(1),
              help="Jobs (build, train, ...) running at once (in the process that runs them).")
@click.option("--processes", default="1", show_default=True, metavar="N|auto",
              help="Server processes on the one port, each with its own model cache (auto: one per core).")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help=f"Require this bearer token on every RPC but health (default: ${ENV_TOKEN}).")
@_tls_options
@click.option("--allow-unsafe-uploads", is_flag=True,
              help="Accept uploaded models that run code when loaded.")
@memory_option
@click.option("--trust-module", "trust_modules", multiple=True, metavar="MODULE",
              help=f"Import MODULE at start and allow the Keras classes it defines in the models this server "
                   f"loads, uploads included (repeatable; with ${ENV_TRUSTED_MODULES}). Code is only ever "
                   "imported from MODULE, never from an uploaded file.")
@click.option("--unsafe", is_flag=True, help="Load and build stored models with Lambda layers, running their "
              "Python code in this server (only for models whose source you trust).")
def serve_cmd(store: str | None, host: str, port: int, http_port: int | None, max_batch_size: int,
              max_batch_delay_ms: float, max_message_mb: int, max_upload_mb: int, cache_mb: int, runtime: str,
              onnx_threads: int, workers: int, processes: str, token_file: str | None, tls_cert: str | None,
              tls_key: str | None, allow_unsafe_uploads: bool, trust_modules: tuple[str, ...],
              unsafe: bool) -> None:
    """Serve the store over gRPC: KServe v2 inference, the reuse.v1 management API, health, reflection;
    with --http-port also over HTTP: KServe v2 REST and the read-only dashboard (docs/http-api.md).

    Prints `listening on HOST:PORT` when ready (and `http on http://HOST:PORT/ui/ (KServe v2 REST under
    /v2)` with --http-port), then which process runs the store's jobs: this one, or
    another server of the store (this one is then a serving replica); on stderr the runtime chosen for
    each version as it is loaded (with the reason when it is not ONNX Runtime). SIGTERM or Ctrl-C: stops
    accepting calls, finishes those in flight, marks running jobs interrupted, exits 0 (with --processes:
    in every process).
    """
    from reuse.config import store_root
    from reuse.grpc.processes import ServeSpec, build_service, processes_count, serve_processes
    from reuse.grpc.server import ServerConfig, run_server
    from reuse.service.state import StateSettings
    from reuse.serving.engine import ServingOptions
    from reuse.serving.runtime_choice import check_mode, describe_mode, log_choices_to_stderr

    check_mode(runtime)
    n = processes_count(processes)
    log_choices_to_stderr()
    config = ServerConfig(host=host, port=port, max_message_bytes=max_message_mb * 2**20,
                          token=read_token(token_file), tls_cert=Path(tls_cert) if tls_cert else None,
                          tls_key=Path(tls_key) if tls_key else None, http_port=http_port)
    spec = ServeSpec(store, config, ServingOptions(max_batch_size, max_batch_delay_ms, cache_mb * 2**20,
                                                   runtime, onnx_threads),
                     StateSettings(job_workers=workers, max_upload_bytes=max_upload_mb * 2**20,
                                   allow_unsafe_uploads=allow_unsafe_uploads, trusted_modules=trust_modules,
                                   run_unsafe=unsafe))
    extras = (
        f"{', token required' if config.token else ''}{', TLS' if tls_cert else ''}; {describe_mode(runtime)}"
    )

    def say(*lines: str) -> None:
        for line in lines:
            click.echo(line)
        sys.stdout.flush()

    def http_line(http_bound: int | None) -> tuple[str, ...]:
        if http_bound is None:
            return ()
        scheme = "https" if tls_cert else "http"
        return (f"http on {scheme}://{host}:{http_bound}/ui/ (KServe v2 REST under /v2)",)

    if n == 1:
        service = build_service(spec)
        sys.exit(run_server(service, config, lambda server: say(
            f"listening on {host}:{server.port} (store {service.store.root}{extras})",
            *http_line(server.http_port), service.state.jobs_line())))

    def ready(bound: int, ups: list, http_bound: int | None = None) -> None:
        runner = next((u for u in ups if u.runs_jobs), None)
        jobs = (f"jobs: run by process pid {runner.pid}; the others are serving replicas" if runner
                else ups[0].jobs_line)
        say(f"listening on {host}:{bound} (store {store_root(store)}{extras}; {n} processes, pids "
            f"{', '.join(str(u.pid) for u in ups)})", *http_line(http_bound), jobs)

    sys.exit(serve_processes(spec, n, ready))


@click.command("ui")
@store_option
@click.option("--host", default=_D.host, show_default=True, help="Address to bind (0.0.0.0 exposes it).")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free port).")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help=f"Ask for this bearer token (default: ${ENV_TOKEN}; none: no login).")
@_tls_options
@click.option("--max-message-mb", default=_D.max_message_bytes // 2**20, show_default=True,
              type=click.IntRange(1), help="Largest request body (larger: 413).")
@click.option("--open", "open_browser", is_flag=True, help="Also open the dashboard in a web browser.")
def ui_cmd(store: str | None, host: str, port: int, token_file: str | None, tls_cert: str | None,
           tls_key: str | None, max_message_mb: int, open_browser: bool) -> None:
    """Open the read-only dashboard over a local store, without gRPC: models and versions, learning
    curves, lineage graphs, the advisor's tables, jobs, and a "try it" panel (KServe v2 REST under /v2).

    Prints `dashboard on http://HOST:PORT/ui/ (store DIR)` when ready. Nothing is started but this one
    HTTP server; jobs started by a `reuse serve` of the same store are shown, not run. SIGTERM or Ctrl-C
    stops it.
    """
    from reuse.http.body import Limits
    from reuse.http.context import HttpContext
    from reuse.http.server import run_ui, tls_context
    from reuse.service import Service

    tls = tls_context(Path(tls_cert) if tls_cert else None, Path(tls_key) if tls_key else None)
    service = Service(store)
    ctx = HttpContext(service, limits=Limits(max_message_mb * 2**20), token=read_token(token_file),
                      tls=tls is not None)

    def ready(server) -> None:
        click.echo(f"dashboard on {server.url}/ui/ (store {service.store.root}"
                   f"{', token required' if ctx.token else ''})")
        sys.stdout.flush()
        if open_browser:
            import webbrowser

            webbrowser.open(f"{server.url}/ui/")

    sys.exit(run_ui(ctx, host, port, tls, on_ready=ready))


def _model_or_progress(r) -> str:
    ev = r.last_event
    progress = f"epoch {ev.epoch}/{ev.epochs}" if ev is not None and ev.epochs else ""
    return r.model or progress


def _job_line(r) -> str:
    return "\t".join(x for x in (r.id, r.kind, r.state, _model_or_progress(r), r.error) if x)


@click.command("jobs")
@store_option
@server_option
@click.option("--state", default="", help="Only jobs in this state (queued, running, succeeded, ...).")
@click.option("--kind", default="", help="Only jobs of this kind (build, train, verify, ...).")
@json_option
def jobs_cmd(store: str | None, state: str, kind: str, as_json: bool) -> None:
    """List jobs, oldest first. JSON: a list of job records (id, kind, state, params, created, started,
    finished, model, result, error, last_event)."""
    records = get_service(store).list_jobs(state=state, kind=kind)
    if as_json:
        emit_json([r.to_dict() for r in records])
        return
    from reuse.text import short_time, table

    if not records:
        given = ", ".join(f"{k} {v!r}" for k, v in (("state", state), ("kind", kind)) if v)
        click.echo(f"No jobs with {given}." if given else "No jobs.")
        return
    rows = [(r.id, r.kind, r.state, short_time(r.created), _model_or_progress(r), r.error) for r in records]
    click.echo(table(["ID", "KIND", "STATE", "CREATED (UTC)", "MODEL / PROGRESS", "ERROR"], rows))


@click.command("job")
@click.argument("job_id")
@store_option
@server_option
@click.option("--watch", is_flag=True, help="Follow the job's progress until it finishes.")
@click.option("--cancel", is_flag=True, help="Cancel the job (needs --server).")
@json_option
def job_cmd(job_id: str, store: str | None, watch: bool, cancel: bool, as_json: bool) -> None:
    """Show, follow or cancel one job. JSON: the job record; with --watch, one event object per line."""
    svc = get_service(store)
    if cancel:
        svc.cancel_job(job_id)
    if watch:
        for ev in svc.watch_job(job_id):
            if as_json:
                click.echo(__import__("json").dumps(ev.to_dict(), sort_keys=True))
            else:
                step = f"{ev.epoch}/{ev.epochs}" if ev.epochs else ""
                values = " ".join(f"{k}={v:.4g}" for k, v in {**ev.losses, **ev.metrics}.items())
                eta = f"eta {ev.eta_s:.0f}s" if ev.eta_s >= 0 and ev.epochs and ev.state == "running" else ""
                click.echo(" ".join(x for x in (f"[{ev.state}]", step, values, eta, ev.message) if x))
        if as_json:
            return
    record = svc.get_job(job_id)
    if as_json:
        emit_json(record.to_dict())
    else:
        click.echo(_job_line(record))


@click.command("infer")
@click.argument("ref")
@click.option("--input", "input_paths", required=True, multiple=True, type=click.Path(exists=True),
              help="A .npy array, a .npz with one array per model input (by input name), or images: "
                   "image files (.png, .jpg, .jpeg, .bmp, .gif) and folders of them (searched recursively); "
                   "repeatable for images.")
@click.option("--top", default=3, show_default=True, type=click.IntRange(1),
              help="Images: how many of each image's best classes to print.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write the outputs to this .npz (by output name) instead of printing them.")
@facade_options
@load_options
def infer_cmd(ref: str, input_paths: tuple[str, ...], top: int, out_path: str | None, store: str | None,
              as_json: bool) -> None:
    """Run NAME[:VERSION] on an array or on images through the serving path (batched engine, or the
    server's v2 API).

    The --input .npy holds float32 values, one row per sample, shaped like the model's input (`reuse
    show NAME` prints its input shape). Make one from the x array of a data file, or from a built-in set:

    \b
      python -c "import numpy as np; np.save('x.npy', np.load('data.npz')['x'][:5].astype('float32'))"
      python -c "import numpy as np; from reuse.data import load_data; np.save('x.npy', \
load_data('builtin:digits?classes=5-9&split=test').x[:5])"

    A model with several inputs takes a .npz with one array per input name:
    np.savez('x.npz', NAME1=..., NAME2=...).

    An image model (input (height, width, channels)) also takes image files and folders: each image is
    decoded and resized to the model's input as `images:DIR` training data is (the server does it with
    --server), fed through the model's own preprocessing, and printed with its best --top classes.

    JSON: {"model": "NAME:VERSION", "outputs": {"NAME": nested lists}}; for images also "images":
    [{"input": PATH, "top": [{"class", "index", "score"}]}].
    """
    from reuse.cli.infer_images import image_files, infer_image_files

    paths = image_files(input_paths)
    if paths is not None:
        infer_image_files(get_service(store), ref, paths, top=top, out_path=out_path, as_json=as_json)
        return
    import numpy as np

    from reuse.errors import InvalidInput

    if len(input_paths) != 1:
        raise InvalidInput("give one .npy or .npz --input (several --input are for images)")
    input_path = input_paths[0]
    try:
        data = np.load(input_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidInput(f"{input_path}: expected a .npy or .npz array file, or images ({exc})") from exc
    inputs = dict(data) if isinstance(data, np.lib.npyio.NpzFile) else data
    result = get_service(store).infer(ref, inputs)
    outputs = {s.name: o for s, o in zip(result.signature.outputs, result.outputs, strict=True)}
    if out_path:
        np.savez(out_path, **outputs)
    if as_json:
        emit_json({"model": result.signature.ref, "outputs": {k: v.tolist() for k, v in outputs.items()}})
    elif not out_path:
        for name, arr in outputs.items():
            click.echo(f"{name} {list(arr.shape)}:\n{arr}")


COMMANDS = [serve_cmd, ui_cmd, jobs_cmd, job_cmd, infer_cmd]
