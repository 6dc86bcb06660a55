"""The CLI's commands with --server give what they give on the local store with the same content."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_mlp
from grpc_support import blobs

from reuse.cli import cli
from reuse.grpc.server import ServerConfig, start_in_thread
from reuse.service import Service


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-remote")
    root = tmp / "store"
    service = Service(root)
    service.register_model(make_mlp(), "mlp", description="base", tags={"k": "v"})
    with start_in_thread(service, ServerConfig(port=0, token="tok")) as server:
        token = tmp / "token"
        token.write_text("tok\n")
        yield {"remote": ["--server", server.target, "--token-file", str(token)],
               "local": ["--store", str(root)], "data": str(blobs(tmp / "blobs.npz")), "tmp": tmp,
               "service": service}


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def both(env, *args):
    return run(*args, *env["remote"]), run(*args, *env["local"])


@pytest.mark.parametrize("args", [
    ["list"], ["list", "--json"], ["versions", "mlp"], ["versions", "mlp", "--json"], ["show", "mlp"],
    ["show", "mlp:1", "--json"], ["layers", "mlp"], ["layers", "mlp", "--scope", "hidden[12]"],
    ["layers", "mlp", "--scope", "hid", "--match", "prefix", "--json"],
])
def test_read_commands_print_the_same(env, args):
    remote, local = both(env, *args)
    assert remote == local


def test_build_remote_records_the_same_lineage(env):
    args = ["--from", "mlp:1", "--reuse", "hidden[12]", "--head", "dense:4:relu", "--classes", "3", "--seed",
            "1", "--json"]
    remote = json.loads(run("build", "built-r", *args, *env["remote"]))
    local = json.loads(run("build", "built-l", *args, *env["local"]))
    assert remote["ref"] == "built-r:1" and local["ref"] == "built-l:1"
    assert remote["lineage"] == local["lineage"]
    r, lo = both(env, "layers", "built-r")
    assert r == lo and "hidden1" in r and "hidden3" not in r
    assert run("lineage", "built-r", "--json", *env["remote"]) == run(
        "lineage", "built-r", "--json", *env["local"]
    )


def test_train_finetune_evaluate_predict_remote_match_local(env):
    opts = ["--data", env["data"], "--epochs", "2", "--batch-size", "20", "--optimizer", "sgd", "--lr",
            "0.05", "--seed", "0", "--json"]
    remote = json.loads(run("train", "mlp:1", *opts, *env["remote"]))
    local = json.loads(run("train", "mlp:1", *opts, *env["local"]))
    assert set(remote) == set(local) and remote["parent"] == local["parent"] == "mlp:1"
    assert (remote["model"], local["model"]) == ("mlp:2", "mlp:3")
    assert remote["metrics"] == pytest.approx(local["metrics"], rel=1e-4, abs=1e-5)
    assert remote["epochs_run"] == local["epochs_run"] == 2
    text = run("train", "mlp:1", *opts[:-1], "--quiet", *env["remote"])
    assert text.startswith("Trained mlp:1 -> mlp:4: 2 epochs in ")
    # The figures in the order a local run prints them (loss first), though the server sends sorted keys.
    final = [line for line in text.splitlines() if line.startswith("  final (inference mode): ")]
    assert [line.split(": ", 1)[1].split()[::2] for line in final] == [["loss", "accuracy"]]

    ft = json.loads(run("finetune", "mlp:1", "--unfreeze", "hidden1", "--data", env["data"], "--epochs", "1",
                        "--json", *env["remote"]))
    assert ft["parent"] == "mlp:1" and ft["unfrozen"] == ["hidden1"] and ft["model"] == "mlp:5"

    r, lo = both(env, "evaluate", "mlp:2", "--data", env["data"], "--json")
    assert json.loads(r) == pytest.approx(json.loads(lo))
    r, lo = (json.loads(x) for x in both(env, "predict", "mlp:2", "--data", env["data"], "--json"))
    assert {k: v for k, v in r.items() if k != "outputs"} == {k: v for k, v in lo.items() if k != "outputs"}
    np.testing.assert_allclose(r["outputs"], lo["outputs"], atol=1e-5)
    out = env["tmp"] / "p.csv"
    assert run("predict", "mlp:2", "--data", env["data"], "--out", out, *env["remote"]).startswith("Wrote 60")
    assert out.read_text().splitlines()[0] == "class,label,p0,p1,p2"

    lines = run("jobs", *env["remote"]).splitlines()  # the jobs these commands ran on the server
    assert lines[0].split() == ["ID", "KIND", "STATE", "CREATED", "(UTC)", "MODEL", "/", "PROGRESS", "ERROR"]
    rows = [line.split() for line in lines[1:]]  # id, kind, state, date, time, model (all succeeded)
    assert {r[1] for r in rows} >= {"train", "finetune", "evaluate"}
    assert [r[5] for r in rows if r[1:3] == ["train", "succeeded"]] == ["mlp:2", "mlp:4"]


def test_register_and_delete_remote(env):
    path = env["tmp"] / "m.h5"
    keras.saving.save_model(make_mlp(seed=3), str(path))
    info = json.loads(run("register", path, "--name", "uploaded", "--tag", "a=b", "--json", *env["remote"]))
    assert info["ref"] == "uploaded:1" and info["tags"] == {"a": "b"}
    assert run("delete", "uploaded:1", *env["remote"]) == "Deleted uploaded:1\n"
    r = CliRunner().invoke(cli, ["show", "uploaded", *env["remote"]])
    assert r.exit_code == 1 and r.output.splitlines()[-1].startswith("Error: no model named 'uploaded'")


def test_remote_errors_name_the_problem(env, tmp_path):
    r = CliRunner().invoke(cli, ["train", "mlp", "--data", str(tmp_path / "none.npz"), *env["remote"]])
    assert (
        r.exit_code == 1 and r.output.splitlines()[-1] == f"Error: {tmp_path / 'none.npz'}: no such data file"
    )
    r = CliRunner().invoke(cli, ["train", "mlp", "--data", env["data"], "--epochs", "1", "--momentum", "0.5",
                                 *env["remote"]])
    assert (
        r.exit_code == 1
        and r.output.splitlines()[-1] == "Error: momentum applies to sgd and rmsprop, not adam"
    )
    r = CliRunner().invoke(cli,
                           ["build", "x", "--from", "mlp", "--reuse", "zzz", "--classes", "2",
                            *env["remote"]])
    assert r.exit_code == 1 and "zzz" in r.output.splitlines()[-1]


@pytest.mark.parametrize(("args", "line"), [
    (["--classes", "2", "--outputs", "2"], "Error: --outputs needs --regression"),
    ([], "Error: nothing to put on top of the reused layers: give a head, classes or regression"),
])
def test_build_head_errors_are_the_same_line_remote_and_local(env, args, line):
    """The head checks live in the core; the CLI and the server's build job only pass values through."""
    for where in ("remote", "local"):
        r = CliRunner().invoke(cli, ["build", "x", "--from", "mlp", "--reuse", "hidden1", *args, *env[where]])
        assert (r.exit_code, r.output.splitlines()[-1]) == (1, line), where


def test_data_parallel_with_server_is_refused_as_locally(env):
    """--data-parallel travels to the server's job; on TensorFlow both refuse it with the same line."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("checks the refusal on the TensorFlow backend")
    jobs = len(json.loads(run("jobs", "--json", *env["remote"])))
    lines = []
    for where in ("remote", "local"):
        r = CliRunner().invoke(cli, ["train", "mlp", "--data", env["data"], "--epochs", "1",
                                     "--data-parallel", *env[where]])
        assert r.exit_code == 1, r.output
        lines.append(r.output.splitlines()[-1])
    assert lines[0] == lines[1] == (
        "Error: data-parallel training needs the JAX backend (KERAS_BACKEND=jax, with the jax extra: "
        "pip install 'reuse[jax]'); this process runs 'tensorflow'")
    assert len(json.loads(run("jobs", "--json", *env["remote"]))) == jobs  # refused before a job existed


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["export", "mlp", "OUT"], "export"),
        (["store", "check"], "store check"),
        (["report", "mlp"], "report"),
        (["pretrain", "p", "--data", "builtin:digits"], "pretrain"),
        (["advise", "mlp", "--data", "builtin:digits"], "advise"),
        (["quickstart"], "quickstart"),
    ],
)
def test_commands_the_server_does_not_offer_say_so_in_one_line(env, tmp_path, args, command):
    out = tmp_path / "out.keras"
    r = CliRunner().invoke(cli, [str(out) if a == "OUT" else a for a in args] + ["--server", "127.0.0.1:1"])
    assert r.exit_code == 1
    assert r.output.splitlines() == [f"Error: {command} is not available with --server yet; run it against a "
                                     "local --store"]
    assert not out.exists()
