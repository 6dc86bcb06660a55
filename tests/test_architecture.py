"""The import rule (docs/architecture.md): imports point inward. The core never imports Click, gRPC,
protobuf or generated code, nor any adapter; only reuse/cli imports Click."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reuse"
# Adapters: they turn the service into a command line, a server, a client, or the walk-through.
ADAPTERS = ("cli/", "grpc/", "client.py", "remote.py", "quickstart/", "__main__.py")
TRANSPORT = ("click", "grpc", "grpc_health", "grpc_reflection", "google.protobuf")
ADAPTER_MODULES = ("reuse.cli", "reuse.grpc", "reuse.client", "reuse.remote", "reuse.quickstart", "reuse.__main__")


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_proto" not in p.parts)


def imports_of(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (function-level imports included), made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(("reuse", *path.relative_to(PACKAGE).parent.parts))
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


CORE = [p for p in _modules() if not _relative(p).startswith(ADAPTERS)]


def test_the_rule_sees_the_whole_package():
    names = {_relative(p) for p in CORE}
    assert {"service.py", "errors.py", "build.py", "store/model_store.py", "train/fit.py",
            "serving/engine.py", "jobs/manager.py"} <= names
    assert not any(n.startswith(("cli/", "grpc/")) for n in names)
    assert "grpc" in imports_of(PACKAGE / "client.py")  # the parser finds what it should


@pytest.mark.parametrize("path", CORE, ids=_relative)
def test_core_imports_no_transport_and_no_adapter(path):
    bad = [n for n in imports_of(path) if _hits(n, TRANSPORT) or _hits(n, ADAPTER_MODULES)]
    assert not bad, f"reuse/{_relative(path)} imports {sorted(set(bad))}; the core must not (docs/architecture.md)"


@pytest.mark.parametrize("path", [p for p in _modules() if not _relative(p).startswith(("cli/", "__main__.py"))],
                         ids=_relative)
def test_only_the_cli_imports_click(path):
    bad = [n for n in imports_of(path) if _hits(n, ("click", "reuse.cli"))]
    assert not bad, f"reuse/{_relative(path)} imports {sorted(set(bad))}; only reuse/cli may"
