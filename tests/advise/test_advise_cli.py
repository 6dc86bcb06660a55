"""``reuse advise`` through Click, and once through a subprocess interrupted with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from advise_helpers import shared_env
from click.testing import CliRunner

from reuse.cli import cli

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--seeds", "2", "--epochs", "5", "--patience", "3", "--lr", "0.03", "--batch-size", "8"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return shared_env(tmp_path_factory)


def run(env, *args, ok=True):
    result = CliRunner().invoke(cli, ["advise", *args, "--store", str(env.store)], catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_table_recommendation_and_plot(env, tmp_path):
    plot = tmp_path / "advice.png"
    out = run(env, "--from", "blind", "--data", env.files["b_train"], "--val", env.files["b_val"],
              "--depths", "0,1", "--no-finetune", "--plot", str(plot), "--quiet", *QUICK).stdout
    lines = out.splitlines()
    assert (
        lines[0].startswith("Advice for blind:1 on ") and "150 training / 150 validation samples" in lines[0]
    )
    assert lines[1].split() == ["candidate", "reuses", "val_accuracy", "time/run", "trainable", "seeds"]
    scratch, frozen = (line.lstrip("* ").split() for line in lines[2:4])
    assert scratch[:4] == ["scratch", "none", "(hidden1", "fresh)"] and scratch[5] == "±"
    assert frozen[:4] == ["reuse", "1", "frozen", "hidden1"] and frozen[-1] == scratch[-1] == "2/2"
    assert [line.startswith("*") for line in lines[2:4]].count(True) == 1
    assert "Recommendation: " in out and f"Plot written to {plot}" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_document(env):
    out = run(env, "--from", "blind:1", "--data", env.files["b_train"], "--val-split", "0.3", "--depths", "1",
              "--scopes", "hidden1,hidden[12]", "--json", *QUICK).stdout
    d = json.loads(out)
    assert set(d) == {"base", "data", "val", "metric", "higher_is_better", "samples", "val_samples", "seeds",
                      "jobs", "rows", "recommendation", "not_run", "stopped", "seconds", "output", "settings",
                      "warnings", "registered", "registered_ensemble", "plot", "shortlist"}
    assert d["base"] == "blind:1" and d["samples"] == 105 and d["val_samples"] == 45 and d["seeds"] == [0, 1]
    assert [r["candidate"] for r in d["rows"]] == ["reuse 1 frozen", "reuse 1 fine-tuned"]
    row = d["rows"][0]
    assert set(row) == {"candidate", "depth", "finetune", "scope", "layers", "mean", "std", "scores", "seeds",
                        "seconds", "trainable_params", "epochs_run", "recommended"}
    assert row["scope"] == "hidden1" and row["layers"] == ["hidden1"] and len(row["scores"]) == 2
    assert d["recommendation"]["candidate"] in ("reuse 1 frozen", "reuse 1 fine-tuned")
    assert d["stopped"] is None and d["not_run"] == [] and d["registered"] is None


ERRORS = [
    (["--from", "missing"], "Error: no model named 'missing' in store {store}"),
    (["--from", "blind", "--depths", "0..9"],
     "Error: depth 3 is out of range: blind:1 (2 reusable layer(s) with "
     "weights) allows depths 0..2"),
    (["--from", "blind", "--register", "../x"], "Error: invalid model name '../x'"),
    (["--from", "blind", "--plot", "advice.txt"],
     "Error: advice.txt: unknown plot format '.txt'; expected .png, "
     ".pdf, .svg"),
    (["--from", "blind", "--val-split", "0.2", "--val", "{b_val}"],
     "Error: give validation data or a validation "
     "split, not both"),
    (["--from", "blind", "--scopes", "conv.*"],
     "Error: scope 'conv.*' (full match) matched no layer; layers are: "
     "hidden1, hidden2, output"),
    (["--from", "blind", "--classes", "2"], "Error: {b_train} (train part): labels [2] are out of range"),
]


@pytest.mark.parametrize(("args", "error"), ERRORS)
def test_errors_come_before_any_training(env, args, error):
    names = {**env.files, "store": env.store}
    result = run(env, "--data", env.files["b_train"], *[a.format(**names) for a in args], ok=False)
    assert result.exit_code == 1
    line = [x for x in result.output.splitlines() if x.startswith("Error: ")][0]
    assert line.startswith(error.format(**names)), line
    assert "advise:" not in result.output  # no run was started


def test_ctrl_c_keeps_the_finished_runs(env):
    """A real process: SIGINT after the first finished run prints the partial table and exits 130."""
    cmd = [sys.executable, "cli.py", "advise", "--from", "blind", "--data", env.files["b_train"], "--val",
           env.files["b_val"], "--store", str(env.store), "--depths", "0..2", "--seeds", "3", "--epochs",
           "30", "--patience", "30"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("[1/"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + err
    assert "Interrupted: stopping after the current runs" in err
    assert "Not run (interrupted): " in out and "Recommendation (from the runs that finished): " in out
    scratch = [x for x in out.splitlines() if "none (hidden1,hidden2 fresh)" in x][0]
    assert scratch.rstrip().endswith("/3") and not scratch.rstrip().endswith("0/3")
