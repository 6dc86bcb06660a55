"""Which classes a Keras model config may name, and the Python modules an operator trusts to define them.

A config comes from a file, an upload or a store we did not write, and Keras turns every class it names
into code: its own classes (from any module of the ``keras`` package, which it imports on demand) and the
classes that imported modules registered with ``keras.saving.register_keras_serializable``. Before Keras
sees a config, :func:`check_config` checks each class it names:

- Keras' own (module ``keras`` or ``keras.*``) is resolved where Keras defines it (its operations,
  ConvNeXt's ``LayerScale``); a class this Keras version does not define is refused.
- Ours (``reuse.*``: the Maxout head layer, the ensemble layer) may be used.
- A trusted module's: the operator named the module (``--trust-module``, ``$REUSE_TRUSTED_MODULES``); it
  is imported (never code from the file), and the classes it or a module below it defines may be used.

Anything else is refused with :class:`UntrustedClass`, naming the class and the option. A layer entry must
name a layer or an operation. Trust is process-wide, as Keras' registry of classes is.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from reuse.config import ENV_TRUSTED_MODULES, env_trusted_modules
from reuse.errors import InvalidInput, UntrustedClass
from reuse.keras_compat import keras_class
from reuse.text import echo, first_line

OWN_PACKAGES = ("keras", "reuse")  # classes defined here are always allowed
# Our modules that register Keras classes ("reuse>Maxout"), imported before a name of ours is looked up: a
# legacy config names the class only, not the module that registers it.
OUR_LAYER_MODULES = ("reuse.layers",)  # importing it registers every Keras layer of ours
MAX_CONFIG_DEPTH = 200  # nesting of dicts and lists in a model config (a deep backbone needs about 40)
MODEL_CLASS_NAMES = frozenset({"Functional", "Sequential", "Model"})
OPTION_HINT = (f"if you trust the Python module that defines it, name that module with --trust-module MODULE "
               f"(the server and its jobs: ${ENV_TRUSTED_MODULES})")
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_trusted: list[str] = []  # modules trusted in this process by trust_modules(), in order
_unsafe_code = [False]  # whether this process may run the Python code of Lambda layers (--unsafe)


def _import(name: str, origin: str) -> None:
    if len(name) > 200 or not _MODULE_RE.fullmatch(name):
        raise InvalidInput(f"invalid module name {echo(name)} in {origin}: expected a dotted Python module "
                           "name, e.g. my_package.layers")
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise InvalidInput(f"trusted module {name!r} ({origin}) cannot be imported: {exc}") from exc
    # A trusted module is the operator's own code and may fail in any way while it is imported; that must
    # be one clear error naming the module, not a traceback, so every exception is caught here.
    except Exception as exc:  # noqa: BLE001
        raise InvalidInput(f"trusted module {name!r} ({origin}) raised {type(exc).__name__} while it was "
                           f"imported: {echo(first_line(exc), 200)}") from exc


def trust_modules(names: Iterable[str], origin: str = "--trust-module") -> tuple[str, ...]:
    """Import each module and trust the Keras classes it defines, for the rest of this process.

    Raises:
        InvalidInput: a malformed name, or a module that cannot be imported or raises while imported.
    """
    for name in names:
        _import(name, origin)
        if name not in _trusted:
            _trusted.append(name)
    return trusted_modules()


def trusted_modules() -> tuple[str, ...]:
    """The modules trusted in this process: those given to :func:`trust_modules`, then those in
    ``$REUSE_TRUSTED_MODULES`` (imported on first use).

    Raises:
        InvalidInput: a module in the environment variable cannot be imported.
    """
    from_env = env_trusted_modules()
    for name in from_env:
        _import(name, f"${ENV_TRUSTED_MODULES}")
    return tuple(dict.fromkeys([*_trusted, *from_env]))


@contextmanager
def trusting(names: Iterable[str]) -> Iterator[tuple[str, ...]]:
    """Trust ``names`` inside the block only (tests; a job that names its own modules)."""
    before = list(_trusted)
    try:
        yield trust_modules(names)
    finally:
        _trusted[:] = before


def allow_unsafe_code(enabled: bool = True) -> None:
    """Let this process run the Python code of Lambda layers when it loads or builds models (``--unsafe``):
    the operator's statement that they trust the models' source. Off by default."""
    _unsafe_code[0] = bool(enabled)


def unsafe_code_allowed() -> bool:
    """Whether :func:`allow_unsafe_code` is on: the default of every load and build in this process."""
    return _unsafe_code[0]


@contextmanager
def unsafe_code(enabled: bool = True) -> Iterator[None]:
    """:func:`allow_unsafe_code` inside the block only."""
    before = _unsafe_code[0]
    _unsafe_code[0] = bool(enabled)
    try:
        yield
    finally:
        _unsafe_code[0] = before


def covered(module: str | None, modules: Iterable[str]) -> bool:
    """Whether ``module`` is one of ``modules`` or inside one of them (``a.b`` is inside ``a``)."""
    return bool(module) and any(module == m or module.startswith(m + ".") for m in modules)


def check_depth(config: Any, what: str, limit: int = MAX_CONFIG_DEPTH) -> None:
    """Refuse a config nested more than ``limit`` levels of dicts and lists deep (walked without recursion,
    so the check itself cannot run out of stack).

    Raises:
        InvalidInput: the config is nested too deep.
    """
    stack = [(config, 0)]
    while stack:
        obj, depth = stack.pop()
        if depth > limit:
            raise InvalidInput(f"{what}: the model config is nested more than {limit} levels deep")
        if isinstance(obj, dict):
            stack.extend((v, depth + 1) for v in obj.values() if isinstance(v, (dict, list)))
        elif isinstance(obj, list):
            stack.extend((v, depth + 1) for v in obj if isinstance(v, (dict, list)))


def check_config(config: Any, what: str, *, model: bool = True, entry: bool = True) -> None:
    """Refuse a model config that names a class Keras would not find among Keras' own, ours and the
    trusted modules' classes, or a layer entry that is not a layer or operation.

    Args:
        config: a Keras model config (``{"class_name": ..., "config": ...}``, Keras 3 or legacy layout), or
            one layer entry of one (``model=False``).
        what: the file or model it came from, for messages.
        model: ``config`` is a whole model (its own class is checked as a model's).
        entry: ``config`` must name a layer or operation (False: any object, e.g. a call's argument).

    Raises:
        UntrustedClass: a class no trusted module defines (the message names it and --trust-module).
        InvalidInput: a Keras class this Keras does not define, a layer entry naming something that is not
            a layer, or a config nested more than MAX_CONFIG_DEPTH deep.
    """
    import keras

    check_depth(config, what)
    allowed = (*OWN_PACKAGES, *trusted_modules())
    if model and isinstance(config, dict):
        _check_model_class(config, allowed, what)
    stack: list[tuple[Any, int, bool, str]] = [(config, 0, entry, "the model" if model else what)]
    while stack:
        obj, depth, is_entry, where = stack.pop()
        if isinstance(obj, list):
            stack.extend((v, depth + 1, is_entry, where) for v in obj)
            continue
        if not isinstance(obj, dict):
            continue
        cls_name = obj.get("class_name")
        inner = obj.get("config")
        entry_name = (
            (obj.get("name") or (inner.get("name") if isinstance(inner, dict) else None))
            if is_entry
            else None
        )
        here = f"layer {echo(entry_name, 80)}" if isinstance(entry_name, str) else where
        if isinstance(cls_name, str) and "config" in obj and not cls_name.startswith("__"):
            found = _resolve(obj, cls_name, allowed, what, here)
            if (
                is_entry
                and found is not None
                and not (isinstance(found, type) and issubclass(found, keras.Operation))
            ):
                raise InvalidInput(f"{what}: {here} names {_label(obj)}, which is not a Keras layer or "
                                   "operation")
        for key, value in obj.items():
            if isinstance(value, (dict, list)):
                stack.append((value, depth + 1, key == "layers" and isinstance(value, list), here))


def _check_model_class(config: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    """The model's own class: Keras' Sequential or functional model, or a class a trusted module defines
    (a functional subclass such as a KerasHub backbone). Anything else is most likely a subclassed model,
    and the message says why that cannot be reused before it names the option."""
    cls_name = config.get("class_name")
    if not isinstance(cls_name, str) or cls_name in MODEL_CLASS_NAMES:
        return
    try:
        _resolve(config, cls_name, allowed, what, "the model")
    except UntrustedClass as exc:
        module = config.get("module")
        where = f" (module {echo(module, 80)})" if isinstance(module, str) and module else ""
        raise UntrustedClass(
            f"{what}: the model is a {echo(cls_name, 80)}{where}, not a Sequential or functional model. A "
            "subclassed keras.Model (its own call()) has no layer graph in its config, so its layers cannot "
            f"be reused; if {echo(cls_name, 80)} is a functional subclass (its __init__ builds a graph, as "
            "KerasHub backbones do), name the module that defines it with --trust-module MODULE "
            f"(the server and its jobs: ${ENV_TRUSTED_MODULES})") from exc


def _label(entry: dict[str, Any]) -> str:
    module = entry.get("module")
    name = entry.get("class_name")
    return echo(f"{module}.{name}" if isinstance(module, str) and module else name, 120)


def _resolve(entry: dict[str, Any], cls_name: str, allowed: tuple[str, ...], what: str, here: str) -> Any:
    """The class (or function) Keras would use for ``entry``; refuses what is not allowed."""
    import keras

    module = entry.get("module")
    if cls_name == "function":  # a function by name: Keras' own, or "package>name" registered by a module
        name = entry.get("config")
        if isinstance(name, str) and ">" in name:
            return _registered(name, module, allowed, what, here, entry)
        return None
    if isinstance(module, str) and covered(module, ("keras",)):
        if cls_name in MODEL_CLASS_NAMES:
            return keras.Model
        found = keras_class(module, cls_name)
        if found is None:
            raise InvalidInput(f"{what}: {here} uses {_label(entry)}, which Keras {keras.__version__} "
                               "does not define (saved by another Keras version?)")
        return found
    if module is None and cls_name in MODEL_CLASS_NAMES | {"InputLayer"}:
        return keras.Model if cls_name in MODEL_CLASS_NAMES else keras.layers.InputLayer
    if module is None and isinstance(getattr(keras.layers, cls_name, None), type):
        return getattr(keras.layers, cls_name)  # a legacy (tf.keras / .h5) entry of a built-in layer
    name = entry.get("registered_name") or cls_name
    return _registered(name, module, allowed, what, here, entry)


def _registered(name: str, module: Any, allowed: tuple[str, ...], what: str, here: str,
                entry: dict[str, Any]) -> Any:
    import keras

    found = keras.saving.get_registered_object(name)
    if found is None and name.startswith("reuse>"):
        for ours in OUR_LAYER_MODULES:
            importlib.import_module(ours)
        found = keras.saving.get_registered_object(name)
    if found is None and isinstance(module, str) and covered(module, allowed):
        _import(module, "a trusted module's submodule")  # as Keras would; it is inside a trusted module
        found = keras.saving.get_registered_object(name) or vars(importlib.import_module(module)).get(
            str(entry.get("class_name")))
    if found is None:
        where = f" (module {echo(module, 80)})" if isinstance(module, str) and module else ""
        raise UntrustedClass(f"{what}: {here} uses class {echo(name, 80)}{where}, which neither Keras nor a "
                             f"trusted module defines; {OPTION_HINT}")
    defined_in = getattr(found, "__module__", None)
    if not covered(defined_in, allowed):
        raise UntrustedClass(f"{what}: {here} uses class {echo(name, 80)}, defined in module "
                             f"{echo(defined_in, 80)}, which is not trusted; {OPTION_HINT}")
    return found
