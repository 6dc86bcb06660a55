"""The import rule (docs/architecture.md): imports point inward. The core never imports Click, gRPC,
protobuf or generated code, nor any adapter or the facade; only reuse/cli imports Click; only
reuse/backend/ imports TensorFlow or JAX; only reuse/keras_compat.py touches private Keras API; and no
two modules under reuse/ import each other, however indirectly (imports inside functions and under
``TYPE_CHECKING`` included: a cycle hidden in a function is still a cycle in the design)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reuse"
# Adapters: they turn the service into a command line, a server, a client, or the walk-through.
ADAPTERS = ("cli/", "grpc/", "http/", "client.py", "remote/", "quickstart/", "__main__.py")
TRANSPORT = ("click", "grpc", "grpc_health", "grpc_reflection", "google.protobuf", "aiohttp", "jinja2")
ADAPTER_MODULES = ("reuse.cli", "reuse.grpc", "reuse.http", "reuse.client", "reuse.remote",
                   "reuse.quickstart", "reuse.__main__")
# The facade sits between the adapters and the core: the core never calls back up into it.
FACADE_MODULES = ("reuse.service", "reuse.service.protocol")


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _modules(package: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in package.rglob("*.py") if "_proto" not in p.parts)


def imports_of(path: Path, package_dir: Path = PACKAGE) -> list[str]:
    """Every module ``path`` imports, at any depth (function-level imports included), made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(("reuse", *path.relative_to(package_dir).parent.parts))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append(name)
            found += [f"{name}.{a.name}" for a in node.names]  # `from reuse import grpc`
    return found


def _hits(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_name(path: Path, package_dir: Path = PACKAGE) -> str:
    parts = ("reuse", *path.relative_to(package_dir).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package_dir: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules under reuse/ it imports, at any depth. ``from reuse.store import h5file`` is
    an edge to ``reuse.store.h5file`` alone (the package's ``__init__`` runs first, but it re-exports
    rather than depends); ``from reuse.store import ModelStore`` is an edge to ``reuse.store``."""
    paths = {module_name(p, package_dir): p for p in _modules(package_dir)}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = module_name(path, package_dir) if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in paths}
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = (
                    (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
                )
                subs = {f"{source}.{a.name}" for a in node.names}
                edges |= subs & paths.keys()
                if not subs <= paths.keys() and source in paths:
                    edges.add(source)
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


CORE = [p for p in _modules() if not _relative(p).startswith((*ADAPTERS, "service/"))]


def test_the_rule_sees_the_whole_package():
    names = {_relative(p) for p in CORE}
    assert {"errors.py", "build/network.py", "store/model_store.py", "train/fit.py", "serving/engine.py",
            "jobs/manager.py"} <= names
    assert not any(n.startswith("service/") for n in names)  # the facade: the core never imports it
    assert not any(n.startswith(("cli/", "grpc/")) for n in names)
    assert "grpc" in imports_of(PACKAGE / "remote" / "client.py")  # the parser finds what it should


@pytest.mark.parametrize("path", CORE, ids=_relative)
def test_core_imports_no_transport_and_no_adapter(path):
    bad = [n for n in imports_of(path) if _hits(n, TRANSPORT + ADAPTER_MODULES + FACADE_MODULES)]
    assert not bad, (
        f"reuse/{_relative(path)} imports {sorted(set(bad))}; the core must not (docs/architecture.md)"
    )


@pytest.mark.parametrize("path",
                         [p for p in _modules() if not _relative(p).startswith(("cli/", "__main__.py"))],
                         ids=_relative)
def test_only_the_cli_imports_click(path):
    bad = [n for n in imports_of(path) if _hits(n, ("click", "reuse.cli"))]
    assert not bad, f"reuse/{_relative(path)} imports {sorted(set(bad))}; only reuse/cli may"


BACKEND_LIBRARIES = ("tensorflow", "jax", "jaxlib")


@pytest.mark.parametrize("path",
                         [p for p in _modules() if not _relative(p).startswith("backend/")], ids=_relative)
def test_only_the_backend_seam_imports_a_backend_library(path):
    bad = [n for n in imports_of(path) if _hits(n, BACKEND_LIBRARIES)]
    assert not bad, (f"reuse/{_relative(path)} imports {sorted(set(bad))}; backend-specific code belongs in "
                     "reuse/backend/ (docs/architecture.md)")


COMPAT = "keras_compat.py"
# Private names of libraries other than Keras that we use on purpose, and why.
OTHER_PRIVATE = {"_Regexp": "google-re2 exposes its compiled-pattern type only under this name (annotations)"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def defined_private_names(package_dir: Path = PACKAGE) -> set[str]:
    """The private names our own code defines (functions, classes, attributes it assigns, names it binds),
    outside the compatibility module: a private attribute not among them belongs to a library."""
    ours: set[str] = set()
    for path in _modules(package_dir):
        if _relative_to(path, package_dir) == COMPAT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                ours.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                ours.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                ours.add(node.id)
            elif isinstance(node, ast.alias):
                ours.add(node.asname or node.name.rsplit(".", 1)[-1])
    return {n for n in ours if _private(n)}


def _relative_to(path: Path, package_dir: Path) -> str:
    return path.relative_to(package_dir).as_posix()


def private_library_uses(path: Path, ours: set[str]) -> list[str]:
    """``line: name`` for each private attribute of a library ``path`` reads or writes (``x._name``, or
    ``getattr(x, "_name")`` and its kin), and each ``keras.src`` import or attribute."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        name = None
        if isinstance(node, ast.Attribute):
            if node.attr == "src" and isinstance(node.value, ast.Name) and node.value.id == "keras":
                name = "keras.src"
            elif _private(node.attr) and node.attr not in ours:
                name = node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _private(node.args[1].value) and node.args[1].value not in ours):
            name = node.args[1].value
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(_hits(m, ("keras.src",)) for m in modules):
                name = "keras.src"
        if name is not None and name not in OTHER_PRIVATE:
            found.append(f"{node.lineno}: {name}")
    return found


def private_keras_outside_compat(package_dir: Path = PACKAGE) -> dict[str, list[str]]:
    ours = defined_private_names(package_dir)
    found = {}
    for path in _modules(package_dir):
        if _relative_to(path, package_dir) != COMPAT and (uses := private_library_uses(path, ours)):
            found[_relative_to(path, package_dir)] = uses
    return found


def test_private_keras_api_only_in_keras_compat():
    found = private_keras_outside_compat()
    assert not found, (f"private Keras API outside reuse/{COMPAT}: {found}; add an accessor there that says "
                       "why it is needed (docs/architecture.md)")


def test_the_private_api_check_finds_a_private_attribute_and_keras_src(tmp_path):
    copy = tmp_path / "reuse"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("_proto", "__pycache__"))
    assert private_keras_outside_compat(copy) == {}
    with (copy / "train" / "fit.py").open("a", encoding="utf-8") as f:
        f.write("\n\ndef _peek(layer):\n    return layer._tracker, getattr(layer, '_inbound_nodes')\n")
    with (copy / "graph" / "select.py").open("a", encoding="utf-8") as f:
        f.write("\n\ndef _late():\n    from keras.src import backend\n    return backend\n")
    found = private_keras_outside_compat(copy)
    assert set(found) == {"train/fit.py", "graph/select.py"}
    assert [u.split(": ")[1] for u in found["train/fit.py"]] in (["_tracker", "_inbound_nodes"],
                                                                 ["_inbound_nodes", "_tracker"])
    assert [u.split(": ")[1] for u in found["graph/select.py"]] == ["keras.src"]


def test_no_import_cycles_between_modules():
    found = cycles(import_graph())
    assert not found, (
        f"import cycles under reuse/: {[sorted(c) for c in found]}; break them (docs/architecture.md)"
    )


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path):
    """A copy of the package with one deliberately added cycle, through a function-level import."""
    copy = tmp_path / "reuse"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("_proto", "__pycache__"))
    assert cycles(import_graph(copy)) == []
    with (copy / "errors.py").open("a", encoding="utf-8") as f:  # h5file imports errors
        f.write("\n\ndef _late():\n    from reuse.store import h5file\n    return h5file\n")
    found = cycles(import_graph(copy))
    assert any({"reuse.errors", "reuse.store.h5file"} <= c for c in found), found


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"a"}}, [{"a", "b"}]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [{"a", "b", "c"}]),
    ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [{"a", "b"}, {"c", "d"}]),
])
def test_cycles_on_synthetic_graphs(graph, expected):
    assert sorted(map(sorted, cycles(graph))) == sorted(map(sorted, expected))


# The packages (and the root's cross-cutting modules) from the bottom up: a module may import its own
# package and any package listed before it, never one listed after it (docs/architecture.md says what
# each holds and why it sits where it does).
LAYERS = (
    "errors", "text", "config", "names", "atomic", "h5guard", "memory", "keras_compat", "trust",  # the base
    "preprocess_spec",
    "layers", "graph", "data", "store", "heads", "build",  # stored networks and what is built from them
    "backend", "train", "ensemble", "advise", "rank", "export", "serving", "jobs",  # the work
    "service",  # the facade
    "http", "grpc", "remote", "client", "quickstart", "cli", "__main__",  # the adapters (gRPC starts HTTP)
)


def package_of(module: str) -> str:
    """``reuse.store.h5file`` -> ``store``; ``reuse.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(package_dir: Path = PACKAGE) -> list[str]:
    """``module -> imported`` for each import that runs up the declared order (or names a package the
    order does not list)."""
    level = {name: i for i, name in enumerate(LAYERS)}
    found = []
    for path in _modules(package_dir):
        source = module_name(path, package_dir)
        mine = package_of(source)
        for target in {n for n in imports_of(path, package_dir) if n.startswith("reuse.")}:
            theirs = package_of(target)
            if not theirs or theirs == mine or (package_dir / theirs).suffix == ".py":
                continue
            if theirs not in level and not (package_dir / theirs).exists() and not (
                    package_dir / f"{theirs}.py").exists():
                continue  # `from reuse import x` names inside a module, not a package
            if level.get(theirs, len(level)) > level.get(mine, -1):
                found.append(f"{source} -> {target}")
    return sorted(found)


def test_every_package_is_in_the_order():
    here = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} | {
        p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__",)}
    assert here - set(LAYERS) == set(), "a new package or root module: place it in LAYERS"


def test_no_import_runs_up_the_package_order():
    found = upward_imports()
    assert not found, f"imports that run up the package order: {found} (docs/architecture.md)"


def test_the_order_check_finds_a_deliberate_upward_import(tmp_path):
    """A copy of the package with one import added from the store up to the serving engine, inside a
    function: no module cycle, but against the order."""
    copy = tmp_path / "reuse"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("_proto", "__pycache__"))
    assert upward_imports(copy) == []
    with (copy / "store" / "meta.py").open("a", encoding="utf-8") as f:
        f.write("\n\ndef _late():\n    from reuse.serving import engine\n    return engine\n")
    assert upward_imports(copy) == ["reuse.store.meta -> reuse.serving",
                                    "reuse.store.meta -> reuse.serving.engine"]


MAX_MODULE_LINES = 400


def test_no_module_is_longer_than_a_reader_can_hold():
    """A module past 400 lines holds two concepts; split it where they part (generated code excluded)."""
    long = {str(p.relative_to(PACKAGE)): n for p in _modules(PACKAGE)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}
