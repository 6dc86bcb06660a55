"""Read-only commands answer from the store's index without importing TensorFlow or Keras.

The commands run in one real subprocess (``sys.executable``) that calls the CLI's Click group once per
command and reports, after each, whether a deep-learning module had been imported by then.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reuse.jobs import JobManager
from reuse.service import Service
from tests.conftest import make_mlp

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "keras", "jax", "torch")

# Runs each command (argv[1]: a JSON list of argument lists) through the CLI's Click group in this one
# process and prints, per command, its exit code, its output and which of the modules in argv[2] (a JSON
# list) were imported once it had run.
WRAPPER = """
import contextlib, io, json, sys
from reuse.cli import cli
results = []
for args in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = cli.main(args=args, prog_name="reuse", standalone_mode=False)
        except SystemExit as exc:
            code = exc.code
        except Exception as exc:
            code = repr(exc)
    heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
    results.append({"args": args, "code": code or 0, "output": out.getvalue(), "heavy": heavy})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str]:
    """A store with a base, a network built from it, and one finished job; and the job's id."""
    root = tmp_path_factory.mktemp("startup") / "store"
    svc = Service(root)
    svc.register_model(make_mlp(), "base", description="tiny base")
    svc.build("clf", "base", "hidden[12]", classes=2, seed=0)
    jobs = JobManager(svc.store.state_dir / "jobs", svc.store.root, workers=1, kinds=svc.state.kinds)
    record = jobs.start("verify", {})
    assert jobs.wait(record.id, timeout=60).state == "succeeded"
    jobs.shutdown(timeout=5)
    return str(root), record.id


def test_read_only_commands_import_no_deep_learning_backend(store):
    store_dir, job_id = store
    commands = [
        ["list"], ["list", "--json"], ["versions", "base"], ["show", "clf"], ["show", "base:1", "--json"],
        ["layers", "base"], ["layers", "base", "--scope", "hidden[12]"],
        ["layers", "base", "--scope", "hidden.*", "--match", "prefix", "--json"],
        ["lineage", "clf"], ["lineage", "clf", "--json"], ["jobs"], ["jobs", "--json"], ["job", job_id],
        ["job", job_id, "--watch"], ["store", "check"], ["store", "check", "--json"],
    ]
    commands = [[*c, "--store", store_dir] for c in commands]
    proc = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(commands), json.dumps(HEAVY)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    assert [r["code"] for r in results] == [0] * len(commands), results
    first_heavy = next((r for r in results if r["heavy"]), None)
    assert first_heavy is None, f"{' '.join(first_heavy['args'][:-2])} imported {first_heavy['heavy']}"
    # They did their work: the tables and records are there.
    out = {" ".join(r["args"][:-2]): r["output"] for r in results}
    assert "hidden1" in out["layers base"] and "2 of 4 layers match" in out["layers base --scope hidden[12]"]
    assert "clf:1  built from base:1" in out["lineage clf"]
    header, row = out["jobs"].splitlines()
    assert header.split() == ["ID", "KIND", "STATE", "CREATED", "(UTC)", "MODEL", "/", "PROGRESS", "ERROR"]
    assert row.split()[:3] == [job_id, "verify", "succeeded"]
    assert "verify" in out[f"job {job_id}"]
    assert out["store check"].rstrip().endswith("OK")
