"""The training commands through Click (and once through a subprocess), against a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_mlp

from reuse.cli import cli
from reuse.cli.train_progress import ProgressBar
from reuse.errors import Cancelled
from reuse.service import Service
from reuse.store import ModelStore

ROOT = Path(__file__).resolve().parents[2]
DIGITS = "builtin:digits?classes=5-9&per_class=20&relabel=1"
DIGITS_TEST = "builtin:digits?classes=5-9&per_class=10&relabel=1&split=test"


@pytest.fixture
def env(tmp_path):
    store = tmp_path / "store"
    model = make_mlp(n_in=64, hidden=(16, 12), n_out=5)
    model.get_layer("hidden1").trainable = False
    ModelStore(store).register(model, "digits", lineage={"steps": [{"op": "build", "at": "t0"}]})
    return store


def run(store, *args, ok=True):
    result = CliRunner().invoke(cli, [*args, "--store", str(store)], catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_train_registers_next_version_with_history_and_settings(env):
    out = run(env, "train", "digits:1", "--data", DIGITS, "--val-split", "0.25", "--epochs", "3",
              "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--json")
    d = json.loads(out.output)
    assert d["model"] == "digits:2" and d["parent"] == "digits:1" and d["epochs_run"] == 3
    assert d["cached_layers"] == ["hidden1"] and set(d["metrics"]) == {"loss", "accuracy", "val_loss",
                                                                         "val_accuracy"}
    info = ModelStore(env).info("digits:2")
    assert info.class_names == ["5", "6", "7", "8", "9"] and len(info.history["val_loss"]) == 3
    assert (
        info.settings["optimizer"] == "sgd"
        and info.settings["lr"] == 0.05
        and info.settings["data"] == DIGITS
    )
    assert [s["op"] for s in info.lineage["steps"]] == ["build", "train"] and info.lineage[
        "parent"
    ] == "digits:1"
    # `reuse lineage` follows the trained version back to the version it was trained from
    chain = json.loads(run(env, "lineage", "digits:2", "--json").output)
    entries = chain["ancestry"] if isinstance(chain, dict) else chain
    assert [(e["model"], e["operation"]) for e in entries] == [("digits:2", "train"), ("digits:1", None)]


def test_text_output_seeds_and_finetune(env):
    out = run(env, "train", "digits", "--data", DIGITS, "--epochs", "2", "--seeds", "2", "--quiet")
    assert out.output.startswith("Trained digits:1 -> digits:2: 2 epochs in ")
    # The final figures are re-measured in inference mode and say so (the bar shows training-mode means).
    assert "\n  final (inference mode): loss " in out.output and "  accuracy " in out.output
    assert "over 2 seeds: loss " in out.output and " ± " in out.output
    assert ModelStore(env).info("digits:2").metrics["seeds"]["accuracy"]["values"].__len__() == 2
    out = run(env, "finetune", "digits", "--unfreeze", "hidden1", "--data", DIGITS, "--epochs", "2", "--json")
    d = json.loads(out.output)
    assert d["model"] == "digits:3" and d["unfrozen"] == ["hidden1"] and d["cached_layers"] == []
    assert d["settings"]["lr"] == pytest.approx(0.0001)  # a tenth of adam's 0.001 used for digits:2


def test_progress_bar_labels_its_figures_training_mode(env, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich draws the final bar once on a non-terminal; keep it whole
    with ProgressBar(True) as bar:
        o = Service(env).train_model("digits", DIGITS, val=DIGITS_TEST, options={"epochs": 3}, progress=bar)
    err = capsys.readouterr().err
    last = o.result.history
    assert (f"epoch 3/3 (training mode) loss {last['loss'][-1]:.4f}  accuracy {last['accuracy'][-1]:.4f}  "
            f"(inference mode) val_loss {last['val_loss'][-1]:.4f}") in err, err


def test_evaluate_predict_report(env, tmp_path):
    run(env, "train", "digits", "--data", DIGITS, "--val", DIGITS_TEST, "--epochs", "3")
    out = run(env, "evaluate", "digits", "--data", DIGITS_TEST)
    assert out.output.startswith(f"digits:2 on {DIGITS_TEST} (50 samples): loss ")
    d = json.loads(run(env, "evaluate", "digits:2", "--data", DIGITS_TEST, "--json").output)
    assert set(d) == {"model", "data", "samples", "loss", "accuracy"}
    run(env, "predict", "digits", "--data", DIGITS_TEST, "--out", str(tmp_path / "p.csv"))
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "class,label,p0,p1,p2,p3,p4" and len(lines) == 51
    run(env, "predict", "digits", "--data", DIGITS_TEST, "--out", str(tmp_path / "p.npz"))
    with np.load(tmp_path / "p.npz") as f:
        assert f["outputs"].shape == (50, 5) and set(f["labels"].tolist()) <= {"5", "6", "7", "8", "9"}
    p = json.loads(run(env, "predict", "digits", "--data", DIGITS_TEST, "--json").output)
    assert p["samples"] == 50 and len(p["classes"]) == 50
    out = run(env, "report", "digits", "--plot", str(tmp_path / "c.png"))
    assert out.output.startswith("digits:2: 3 epochs recorded")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    r = json.loads(run(env, "report", "digits", "--json").output)
    assert set(r) == {"model", "history", "metrics", "findings", "plot"}


def test_report_plots_the_history_along_the_lineage(env, tmp_path):
    run(env, "train", "digits", "--data", DIGITS, "--epochs", "3", "--quiet")
    run(env, "finetune", "digits", "--unfreeze", "hidden1", "--data", DIGITS, "--epochs", "2", "--quiet")
    report = Service(env).report_model("digits:3", plot=tmp_path / "c.png")
    assert [(s.model, s.operation, s.epochs) for s in report.plotted] == [
        ("digits:2", "train", 3), ("digits:3", "finetune hidden1", 2)]  # not digits:1, which was not trained
    out = run(env, "report", "digits", "--plot", str(tmp_path / "c.png")).output
    assert out.splitlines()[-1] == (f"Learning curves written to {tmp_path / 'c.png'} (5 epochs along the "
                                    "lineage: epochs digits:2 train 1-3, digits:3 finetune hidden1 4-5)")


def test_errors_exit_1_with_one_line(env, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 64), np.float32), y=np.array([0, 1, 9]))
    r = run(env, "train", "digits", "--data", str(bad), ok=False)
    assert r.exit_code == 1
    assert r.output.splitlines()[-1] == (
        f"Error: {bad}: labels [9] are out of range for model 'mlp', whose output layer has 5 unit(s) "
        "(labels 0..4) (to map the labels to 0..k-1 use relabel: --relabel, or ?relabel=1 for builtin sets)")
    r = run(env, "train", "digits", "--data", DIGITS, "--clipnorm", "1", "--clipvalue", "1", ok=False)
    assert r.exit_code == 1 and r.output.splitlines()[-1] == "Error: give clipnorm or clipvalue, not both"
    r = run(env, "evaluate", "nope", "--data", DIGITS, ok=False)
    assert r.exit_code == 1 and r.output.splitlines()[-1].startswith("Error: no model named 'nope'")
    r = run(env, "finetune", "digits", "--unfreeze", "conv", "--data", DIGITS, ok=False)
    assert r.output.splitlines()[-1] == ("Error: scope 'conv' (full match) matched no layer; layers are: "
                                         "hidden1, hidden2, output")
    assert ModelStore(env).resolve("digits").version == 1


def test_cancelled_training_registers_nothing(env):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        Service(env).train_model("digits", DIGITS, options={"epochs": 5}, cancel=cancel)
    assert ModelStore(env).resolve("digits").version == 1


def test_pretrain_prints_the_table(tmp_path):
    out = run(tmp_path / "s", "pretrain", "blobs", "--data", "builtin:blobs?per_class=30", "--layers", "2",
              "--units", "4", "--mode", "supervised", "--epochs", "2")
    lines = out.output.splitlines()
    assert lines[0].split() == ["depth", "train_acc", "test_acc"]
    assert [ln.split()[0] for ln in lines[1:3]] == ["1", "2"]
    assert lines[3].startswith("Registered blobs:1 (supervised, 2 x 4 units")


def test_subprocess_evaluate_json(env):
    proc = subprocess.run([sys.executable, "cli.py", "evaluate", "digits", "--data", DIGITS_TEST, "--json",
                           "--store", str(env)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["model"] == "digits:1" and d["samples"] == 50 and 0.0 <= d["accuracy"] <= 1.0
