"""Options and output helpers shared by every command."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from reuse.config import ENV_SERVER, ENV_STORE, ENV_TOKEN, ENV_TRUSTED_MODULES
from reuse.errors import FailedPrecondition

store_option = click.option(
    "--store",
    "store",
    envvar=ENV_STORE,
    type=click.Path(file_okay=False),
    default=None,
    show_envvar=True,
    help="Model store folder (default: ./models).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def option_group(*options: Any) -> Any:
    """One decorator that adds ``options`` (click option decorators), listed in ``--help`` in this order."""
    def apply(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


_REMOTE_KEY = "reuse.remote"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(_REMOTE_KEY, {})[param.name] = value
    return value


# --server/--token-file/--tls-ca: with --server, ``get_service`` talks to a running server. The values go
# to the click context, not to the command's parameters, so adopting remote mode in a command is this one
# decorator.
server_option = option_group(
    click.option("--server", "server", envvar=ENV_SERVER, show_envvar=True, default=None, metavar="HOST:PORT",
                 expose_value=False, callback=_remember,
                 help="Act on a running `reuse serve` instead of the local store."),
    click.option("--token-file", "token_file", type=click.Path(dir_okay=False, exists=True), default=None,
                 expose_value=False, callback=_remember,
                 help=f"File holding the server's bearer token (default: ${ENV_TOKEN})."),
    click.option("--tls-ca", "tls_ca", type=click.Path(dir_okay=False, exists=True), default=None,
                 expose_value=False, callback=_remember,
                 help="CA certificate of a TLS server (with --server)."),
)


# What a command that works on either facade takes: the store, or a server instead, and --json.
facade_options = option_group(store_option, server_option, json_option)

_LOAD_KEY = "reuse.load"


def _remember_load(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(_LOAD_KEY, {})[param.name] = value
    return value


TRUST_HELP = (f"Import MODULE and allow the Keras classes it defines (registered with "
              f"keras.saving.register_keras_serializable) in the models this command loads; repeatable. "
              f"Modules in ${ENV_TRUSTED_MODULES} are trusted too. Code is only ever imported from MODULE, "
              "never from a model file.")
# --trust-module and --unsafe for the commands that load or build models: like --server, their values go to
# the click context, and get_service applies them, so adopting them in a command is one decorator.
trust_option = click.option("--trust-module", "trust_modules", multiple=True, metavar="MODULE",
                            expose_value=False, callback=_remember_load, help=TRUST_HELP)
load_options = option_group(
    trust_option,
    click.option("--unsafe", "unsafe", is_flag=True, expose_value=False, callback=_remember_load,
                 help="Run the Python code of Lambda layers in the models this command loads or builds (a "
                      "model registered with --unsafe); only for models whose source you trust."),
)


def apply_load_options(ctx: click.Context | None, *, remote: bool = False) -> None:
    """Trust the modules given with --trust-module (and let processes this one starts trust them too) and
    allow Lambda code with --unsafe, for the rest of this process. With --server both are refused: the
    server loads the models, with what it trusts."""
    from reuse.trust import allow_unsafe_code, trust_modules

    given = ctx.meta.get(_LOAD_KEY, {}) if ctx is not None else {}
    names = list(given.get("trust_modules") or ())
    if remote and (names or given.get("unsafe")):
        raise FailedPrecondition("--trust-module and --unsafe apply to the models this process loads; with "
                                 "--server the server loads them (start it with reuse serve --trust-module "
                                 "MODULE / --unsafe)")
    if names:
        trust_modules(names)
        inherited = [m for m in os.environ.get(ENV_TRUSTED_MODULES, "").replace(",", " ").split() if m]
        os.environ[ENV_TRUSTED_MODULES] = ",".join(dict.fromkeys([*inherited, *names]))
    if given.get("unsafe"):
        allow_unsafe_code(True)


def _set_budget(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from reuse.memory import ENV_MEMORY_MB, process_budget, set_budget, set_process_budget

    before, env = process_budget(), os.environ.get(ENV_MEMORY_MB)
    flag = ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE
    budget = set_process_budget(value if flag else None)  # None: $REUSE_MEMORY_MB, or the default
    if flag:  # processes this one starts (serving processes, advisor workers) take the same cap
        os.environ[ENV_MEMORY_MB] = str(budget.mb)

    def restore() -> None:  # the command is over (matters when commands run in one process: tests)
        set_budget(before)
        if env is None:
            os.environ.pop(ENV_MEMORY_MB, None)
        else:
            os.environ[ENV_MEMORY_MB] = env

    ctx.call_on_close(restore)
    return value


def _memory_option(expose: bool) -> Any:
    return click.option(
        "--memory-mb", "memory_mb", metavar="MB", envvar="REUSE_MEMORY_MB", show_envvar=True, default=None,
        expose_value=expose, callback=_set_budget,
        help="Cap the memory of this process (and of each process it starts) at MB megabytes: passes over "
        "data size their batches to fit, frozen features go to disk when they do not fit, and work "
        "that cannot fit is refused before it starts (default: a quarter of the machine's memory, at "
        "least 2048).")


# The process's memory budget (reuse.memory), set as the option is parsed, before any data is read;
# ``memory_option_value`` also hands the command the value (to pass on to a server's job).
memory_option = _memory_option(expose=False)
memory_option_value = _memory_option(expose=True)


# Training-only augmentation (reuse.train.augment), on train, finetune and advise.
augment_options = option_group(
    click.option("--augment", default=None, metavar="SPEC",
                 help="Augment the training images while training only (never part of the registered "
                 "network): comma-separated steps flip (or flip:vertical, flip:both), rotate:F, zoom:F, "
                 "translate:F, contrast:F, brightness:F, e.g. flip,rotate:0.1 (Keras' random image layers; "
                 "pixels 0..255)."),
    click.option("--augment-views", "augment_views", type=click.IntRange(min=1), default=None, metavar="K",
                 help="With --augment and frozen layers: pass K augmented copies of the training set through "
                 "the frozen layers once (epoch e trains on copy e mod K; kept like cached features) "
                 "instead of augmenting every batch and running the frozen layers each time."),
)


def local_only(command: str) -> Any:
    """For a command the remote facade does not offer (reuse.service.protocol.Facade lacks what it calls):
    ``--server`` is refused with one clear line instead of an unknown-option usage error."""
    def refuse(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value:
            raise FailedPrecondition(f"{command} is not available with --server yet; run it against a "
                                     "local --store")

    return click.option("--server", "server", default=None, metavar="HOST:PORT", expose_value=False,
                        hidden=True, callback=refuse)


def read_token(token_file: str | None) -> str | None:
    """The bearer token: the file's first line, else $REUSE_TOKEN, else None."""
    if token_file:
        with open(token_file, encoding="utf-8") as fh:
            return fh.readline().strip() or None
    return os.environ.get(ENV_TOKEN) or None


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def get_service(store: str | None):
    """The facade: a local Service on ``store``, or a RemoteService when the command got --server."""
    ctx = click.get_current_context(silent=True)
    remote = ctx.meta.get(_REMOTE_KEY, {}) if ctx is not None else {}
    apply_load_options(ctx, remote=bool(remote.get("server")))
    if remote.get("server"):
        from reuse.remote import RemoteService

        return RemoteService(remote["server"], token=read_token(remote.get("token_file")),
                             tls_ca=remote.get("tls_ca"))
    from reuse.service import Service

    return Service(store)


def name_list(names: list[str] | tuple[str, ...], limit: int = 8) -> str:
    """Layer names for a summary line: all of them, or the first and last few and how many (a reused
    backbone has hundreds; ``--json`` and ``reuse lineage`` list every one)."""
    if not names:
        return "-"
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:3])}, ..., {', '.join(names[-2:])} ({len(names)} layers)"
