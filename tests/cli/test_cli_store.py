"""The store commands through Click's CliRunner (and one real subprocess): output, --json, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import pytest
from click.testing import CliRunner
from conftest import make_mlp
from store_helpers import flip_byte

from reuse.cli import cli
from reuse.store import ModelStore, h5file

ROOT = Path(__file__).resolve().parents[2]
VERSION_KEYS = {
    "ref", "name", "version", "path", "created", "description", "tags", "input_shape", "output_shape",
    "class_names", "metrics", "history", "lineage", "settings", "keras_version", "backend",
    "tensorflow_version", "params", "source", "unsafe_layers", "size_bytes", "preprocess", "base_family",
    "model_class",
}


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=code != 0)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def error_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "mlp.keras"
    make_mlp().save(path)
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "store"


def test_register_list_versions_show(model_file, root):
    out = run("register", model_file, "--name", "mlp", "-d", "first", "--tag", "team=a", "--tag", "k=v",
              "--store", root).output
    assert out.startswith("Registered mlp:1 (511 parameters, ") and str(root / "mlp" / "v1.h5") in out
    obj = json.loads(run("register", model_file, "--name", "mlp", "--json", "--store", root).output)
    assert set(obj) == VERSION_KEYS and obj["ref"] == "mlp:2" and obj["source"]["format"] == "keras"

    lines = run("list", "--store", root).output.splitlines()
    assert lines[0].split() == ["MODEL", "VERSION", "CREATED", "(UTC)", "PARAMS", "SIZE",
                                "DESCRIPTION", "TAGS"]
    assert lines[1].split()[:2] == ["mlp", "2"] and len(lines) == 2
    listed = json.loads(run("list", "--json", "--store", root).output)
    assert [set(i) for i in listed] == [VERSION_KEYS] and listed[0]["ref"] == "mlp:2"

    versions = json.loads(run("versions", "mlp", "--json", "--store", root).output)
    assert [(v["version"], v["description"], v["tags"]) for v in versions] == [
        (1, "first", {"team": "a", "k": "v"}), (2, "", {})]
    text = run("versions", "mlp", "--store", root).output
    assert "first" in text and "k=v team=a" in text

    shown = run("show", "mlp:1", "--store", root).output
    assert shown.splitlines()[0] == "mlp:1"
    assert "description   first" in shown and "input shape   (None, 8)" in shown
    assert "LAYER    TYPE   OUTPUT SHAPE  PARAMS  TRAINABLE" in shown
    assert "hidden1  Dense  (None, 16)       144  yes" in shown
    assert "4 layers, 511 parameters" in shown
    obj = json.loads(run("show", "mlp", "--json", "--store", root).output)
    assert set(obj) == VERSION_KEYS | {"layers"} and obj["ref"] == "mlp:2"
    assert obj["layers"][0] == {"name": "hidden1", "class_name": "Dense", "output_shape": [None, 16],
                                "params": 144, "trainable": True}


def test_empty_store_and_reuse_errors_are_one_line_exit_1(model_file, root, tmp_path):
    assert run("list", "--store", root).output == f"No models in {root}.\n"
    assert json.loads(run("list", "--json", "--store", root).output) == []
    r = run("show", "nope", "--store", root, code=1)
    assert error_line(r) == f"Error: no model named 'nope' in store {root}"
    r = run("register", model_file, "--name", "Bad", "--store", root, code=1)
    assert error_line(r).startswith("Error: invalid model name 'Bad': expected 1-64 characters")
    r = run("register", tmp_path / "missing.keras", "--name", "m", "--store", root, code=1)
    assert error_line(r) == f"Error: {tmp_path / 'missing.keras'}: no such file"
    lam = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t + 1, name="plus")])
    lam.save(tmp_path / "lam.h5")
    r = run("register", tmp_path / "lam.h5", "--name", "lam", "--store", root, code=1)
    assert error_line(r) == (
        f"Error: {tmp_path / 'lam.h5'} contains Lambda layer(s) 'plus' whose Python code would run on load; "
        "refused in safe mode (pass --unsafe / unsafe=True only if you trust its source)")
    run("register", tmp_path / "lam.h5", "--name", "lam", "--unsafe", "--store", root)
    r = run("export", "lam", tmp_path / "lam.keras", "--store", root, code=1)
    assert "refused in safe mode" in error_line(r)
    run("export", "lam", tmp_path / "lam.keras", "--unsafe", "--store", root)


def test_usage_errors_keep_exit_2(model_file, root):
    r = run("register", model_file, "--name", "m", "--tag", "novalue", "--store", root, code=2)
    assert "expected KEY=VALUE, received 'novalue'" in r.stderr
    run("register", model_file, "--store", root, code=2)  # --name missing
    r = run("delete", "m", "--store", root, code=2)
    assert "expected NAME:VERSION" in r.stderr
    run("nonsense", code=2)


def test_delete_and_export(model_file, root, tmp_path):
    for _ in range(2):
        run("register", model_file, "--name", "m", "--store", root)
    assert run("delete", "m:2", "--store", root).output == "Deleted m:2\n"
    r = run("delete", "m:2", "--store", root, code=1)
    assert error_line(r) == "Error: model 'm' has no version 2 (versions: 1)"
    out = tmp_path / "exported" / "m.keras"
    assert run("export", "m", out, "--store", root).output == f"Exported m:1 to {out}\n"
    keras.models.load_model(out, compile=False)
    r = run("export", "m:1", out, "--store", root, code=1)
    assert error_line(r) == f"Error: {out} exists; pass overwrite (--force) to replace it"
    run("export", "m:1", out, "--force", "--store", root)
    r = run("export", "m", tmp_path / "m.h5", "--store", root, code=1)
    assert error_line(r) == f"Error: export path must end in .keras; received '{tmp_path / 'm.h5'}'"


def test_store_check_exit_codes_and_json(model_file, root):
    run("register", model_file, "--name", "m", "--store", root)
    run("register", model_file, "--name", "m", "--store", root)
    assert run("store", "check", "--store", root).output.splitlines()[-1] == "OK"
    path = root / "m" / "v2.h5"
    with h5py.File(path) as f:
        kernel = h5file.layer_weight_datasets(f, "output", path)[0].name
    flip_byte(path, kernel)
    r = run("store", "check", "--store", root, code=1)
    assert "  DAMAGED m:2: " in r.output and r.output.splitlines()[-1] == "PROBLEMS REMAIN"
    report = json.loads(run("store", "check", "--json", "--repair", "--store", root, code=1).output)
    assert report["ok"] is False and report["damaged"] == ["m:2"] and report["repaired"] is True
    assert {f["ref"]: f["ok"] for f in report["files"]} == {"m:1": True, "m:2": False}
    assert set(report) >= {"root", "files", "missing_from_index", "stale_in_index", "mismatched_in_index",
                           "index_unreadable", "temp_files", "stray_files", "removed_temp_files"}
    r = run("show", "m:2", "--store", root)  # metadata is intact; the weights are not
    assert r.output.startswith("m:2")
    r = run("export", "m:2", root.parent / "x.keras", "--store", root, code=1)
    assert error_line(r).startswith(f"Error: {path}: checksum mismatch in weight ")


def test_cli_in_a_subprocess_uses_reuse_store_env(tiny_model, tmp_path):
    root = tmp_path / "store"
    ModelStore(root).register(tiny_model, "sub", description="via env")
    env = {**os.environ, "REUSE_STORE": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "cli.py", "list", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [(i["ref"], i["description"]) for i in json.loads(proc.stdout)] == [("sub:1", "via env")]
    proc = subprocess.run([sys.executable, "cli.py", "show", "nope"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert (
        proc.returncode == 1
        and proc.stderr.strip().splitlines()[-1] == f"Error: no model named 'nope' in store {root}"
    )
