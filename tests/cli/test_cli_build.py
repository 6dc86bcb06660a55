"""CLI: reuse layers, reuse build, reuse lineage (outputs, --json, one-line errors, a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reuse.cli import cli
from reuse.store import ModelStore
from tests.conftest import make_mlp


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("cli") / "store"
    ModelStore(root).register(make_mlp(batchnorm=True), "base", description="tiny base")
    return str(root)


def run(store_dir, *args, ok=True):
    result = CliRunner().invoke(cli, [*args, "--store", store_dir], catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def error_of(store_dir, *args) -> str:
    result = run(store_dir, *args, ok=False)
    assert result.exit_code == 1, result.output
    return result.output.strip().splitlines()[-1]


def test_layers_table_and_dry_run(store_dir):
    out = run(store_dir, "layers", "base", "--scope", "hidden[12]|bn1").output.splitlines()
    assert out[0] == "base:1"
    assert out[1].split() == ["#", "name", "class", "output", "shape", "params", "trainable",
                              "inputs", "matched"]
    assert out[2].split() == ["0", "hidden1", "Dense", "(None,", "16)", "144", "yes", "features", "yes"]
    assert out[5].split()[1] == "bn2" and out[5].split()[-1] == "-"
    assert out[-1] == "3 of 7 layers match 'hidden[12]|bn1' (full match)"
    plain = run(store_dir, "layers", "base").output.splitlines()
    assert "matched" not in plain[1] and len(plain) == 9
    none = run(store_dir, "layers", "base", "--scope", "conv.*").output.splitlines()
    assert none[-1] == "0 of 7 layers match 'conv.*' (full match); a build with this scope would fail"


def test_layers_json(store_dir):
    data = json.loads(run(store_dir, "layers", "base:1", "--scope", "hidden1", "--match", "prefix",
                          "--json").output)
    assert set(data) == {"model", "scope", "match", "layers", "matched", "unmatched", "selected"}
    assert (data["model"], data["scope"], data["match"]) == ("base:1", "hidden1", "prefix")
    assert data["matched"] == ["hidden1"]
    assert data["layers"][0] == {"index": 0, "name": "hidden1", "class_name": "Dense",
                                 "output_shape": [None, 16], "params": 144, "trainable": True,
                                 "matched": True, "depth": 0, "inputs": ["features"], "op": False}


def test_layers_errors(store_dir):
    assert error_of(store_dir, "layers", "base", "--scope", "hidden[") == (
        "Error: invalid scope pattern 'hidden[': missing ]: [")
    assert error_of(store_dir, "layers", "nope") == f"Error: no model named 'nope' in store {store_dir}"
    assert error_of(store_dir, "layers", "../etc").startswith("Error: invalid model name '../etc'")


def test_build_then_lineage(store_dir, tmp_path):
    head = tmp_path / "head.json"
    head.write_text(json.dumps({"layers": [{"type": "dense", "units": 8, "activation": "relu"},
                                           {"type": "dropout", "rate": 0.1}]}))
    out = run(store_dir, "build", "child", "--from", "base:1", "--reuse", "hidden[12]|bn[12]", "--trainable",
              "bn2|hidden2", "--head-file", str(head), "--classes", "3", "--seed", "1").output.splitlines()
    assert out == [
        "Built child:1 from base:1",
        "  reused (frozen):    hidden1, bn1",
        "  reused (trainable): hidden2, bn2",
        "  head:               head1_dense, head2_dropout, output",
        "  input shape (8,), output shape (3,)",
    ]
    data = json.loads(run(store_dir, "build", "grandchild", "--from", "child", "--reuse", "hidden|bn",
                          "--match", "prefix", "--regression", "--outputs", "2", "--head", "dense:4:tanh",
                          "--input-shape", "8", "--description", "two targets", "--json").output)
    assert (data["name"], data["version"], data["description"]) == ("grandchild", 1, "two targets")
    assert data["output_shape"] == [None, 2]
    lin = data["lineage"]
    assert lin["base"] == {"name": "child", "version": 1}
    assert [x["name"] for x in lin["layers"]] == ["hidden1", "bn1", "hidden2", "bn2"]
    assert (lin["scope"], lin["match"], lin["head"], lin["output"]) == (
        "hidden|bn", "prefix", "dense:4:tanh:glorot_uniform", {"regression": 2})

    text = run(store_dir, "lineage", "child").output.splitlines()
    assert text[0] == ("child:1  built from base:1: reuse 'hidden[12]|bn[12]' (full match), trainable "
                       "bn2|hidden2, head dense:8:relu:glorot_uniform,dropout:0.1, output 3 classes "
                       "(softmax)")
    assert text[1].startswith("  base:1  registered ")
    assert text[2:] == ["layers:", "  hidden1 <- base:1/hidden1", "  bn1 <- base:1/bn1",
                        "  hidden2 <- base:1/hidden2", "  bn2 <- base:1/bn2"]


def test_lineage_json_through_two_generations(store_dir):
    run(store_dir, "build", "gen1", "--from", "base", "--reuse", "hidden1|bn1|hidden2|bn2", "--classes", "3")
    run(store_dir, "build", "gen2", "--from", "gen1", "--reuse", "hidden1|bn1", "--regression")
    data = json.loads(run(store_dir, "lineage", "gen2", "--json").output)
    assert set(data) == {"model", "ancestry", "layer_origins"}
    assert [e["model"] for e in data["ancestry"]] == ["gen2:1", "gen1:1", "base:1"]
    assert [e["base"] for e in data["ancestry"]] == ["gen1:1", "base:1", None]
    assert [e["operation"] for e in data["ancestry"]] == ["build", "build", None]
    assert data["layer_origins"] == {"hidden1": ["gen1:1/hidden1", "base:1/hidden1"],
                                     "bn1": ["gen1:1/bn1", "base:1/bn1"]}
    assert set(data["ancestry"][0]) == {"model", "name", "version", "created", "description", "operation",
                                        "base", "lineage", "missing"}


@pytest.mark.parametrize(("args", "line"), [
    (["--reuse", "conv.*", "--classes", "3"],
     "Error: scope 'conv.*' (full match) matched no layer; layers are: hidden1, bn1, hidden2, bn2, "
     "hidden3, bn3, output"),
    (["--reuse", "(a+", "--classes", "3"], "Error: invalid scope pattern '(a+': missing ): (a+"),
    (["--reuse", "hidden[12]", "--classes", "3"],
     "Error: unselected layer(s) bn1 (BatchNormalization) sit between selected layers hidden1 and "
     "hidden2, and hidden2 was trained on their output; select it too, e.g. --reuse 'hidden[12]|bn1', or "
     "end the selection at hidden1"),
    (["--reuse", "hidden1", "--head", "dense:64:swish"],
     "Error: unknown field 'swish' in head layer 'dense:64:swish': expected an activation (relu, leaky_relu, "
     "prelu, elu, selu, tanh, sigmoid, hard_sigmoid, softmax, linear), an initializer (glorot_uniform, "
     "glorot_normal, he_uniform, he_normal, lecun_normal), l2=F or maxnorm=F"),
    (["--reuse", "hidden1", "--head", "dense:4", "--head-file", "x.json"],
     "Error: give either a head spec or a head file, not both"),
    (["--reuse", "hidden1", "--classes", "3", "--regression"],
     "Error: give either classes or regression, not both"),
    (["--reuse", "hidden1", "--outputs", "2"], "Error: --outputs needs --regression"),
    (["--reuse", "hidden1", "--regression", "--outputs", "0"],
     "Error: invalid regression targets 0: expected True or an integer >= 1"),
    (["--reuse", "hidden1"],
     "Error: nothing to put on top of the reused layers: give a head, classes or regression"),
    (["--reuse", "hidden1", "--classes", "3", "--input-shape", "8,x"],
     "Error: invalid input shape '8,x': expected positive integers separated by commas, e.g. 64 or 28,28,1"),
    (["--reuse", "hidden1", "--classes", "3", "--input-shape", "5"],
     "Error: layer hidden1 (Dense) gets input of shape (None, 5) here, which gives it weights of shapes "
     "[(5, 16), (16,)], but its weights in base:1 have shapes [(8, 16), (16,)]"),
    (["--reuse", "hidden1", "--trainable", "hidden2", "--classes", "3"],
     "Error: scope 'hidden2' (full match) matched no layer; layers are: hidden1"),
])
def test_build_errors(store_dir, args, line):
    assert error_of(store_dir, "build", "bad", "--from", "base", *args) == line
    assert not (Path(store_dir) / "bad").exists()


def test_build_refuses_a_bad_new_name_before_any_work(store_dir):
    assert error_of(store_dir, "build", "Bad/Name", "--from", "base", "--reuse", "hidden1",
                    "--classes", "3") \
        .startswith("Error: invalid model name 'Bad/Name'")


def test_subprocess_layers_json(store_dir):
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "cli.py", "layers", "base", "--scope", "bn.*", "--json", "--store",
                          store_dir], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["matched"] == ["bn1", "bn2", "bn3"]
    # TensorFlow's C++ start-up lines (oneDNN, CUDA probe) stay off the terminal (reuse.cli._quiet_backend)
    assert "oneDNN" not in out.stderr and "cuInit" not in out.stderr and "InitializeLog" not in out.stderr
    bad = subprocess.run([sys.executable, "cli.py", "lineage", "missing", "--store", store_dir], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == (
        f"Error: no model named 'missing' in store {store_dir}")
