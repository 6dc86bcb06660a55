"""The walk-through end to end (few epochs): every step, registered models with lineage, sane accuracies,
the server stopped; the CLI's failure line; and one real `python cli.py quickstart --quick` run."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reuse.advise.events import AdviceStarted, RunFinished
from reuse.cli import cli
from reuse.cli.quickstart_progress import RunsBar
from reuse.data import load_data
from reuse.errors import NotFound
from reuse.quickstart import QuickstartOptions, plan, run_quickstart
from reuse.service import Service
from reuse.train.events import EpochEnd, TrainFinished, TrainStarted

ROOT = Path(__file__).resolve().parents[2]
CHANCE = 1.0 / plan.CLASSES


class Recorder:
    """A progress sink for the walk-through: keeps the events it is given."""

    def __init__(self, planned: int | None = None) -> None:
        self.planned = planned
        self.events: list = []

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, event) -> None:
        self.events.append(event)


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    store = tmp_path_factory.mktemp("qs") / "models"
    lines: list[str] = []
    options = QuickstartOptions(epochs=25, finetune_epochs=10, seeds=2, advisor=False)
    bars: dict[str, list[Recorder]] = {"run": [], "step": []}

    def bar(kind: str, planned: int | None = None) -> Recorder:
        bars[kind].append(Recorder(planned))
        return bars[kind][-1]

    result = run_quickstart(store, options=options, say=lines.append, progress=lambda: bar("run"),
                            step_progress=lambda runs: bar("step", runs))
    result.bars = bars
    return result, lines, store


def test_step_5_reports_every_run_to_one_bar(walk):
    bars = walk[0].bars
    assert len(bars["run"]) == 2  # step 4: train, then fine-tune, one bar each
    (step,) = bars["step"]  # step 5: one bar for all its runs, planned and counted
    finished = [e for e in step.events if isinstance(e, TrainFinished)]
    assert step.planned == len(finished) == 4  # scratch for seeds 0 and 1; train and fine-tune for seed 1
    assert sum(isinstance(e, EpochEnd) for e in step.events) == 25 + 25 + 25 + 10


def test_the_runs_bar_counts_training_and_advisor_runs(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich draws the final bar once on a non-terminal
    with RunsBar(3, enabled=True) as bar:
        bar(TrainStarted("train", 2, 10, 0, 1))
        bar(EpochEnd(2, 2, {"loss": 0.5}, {"accuracy": 0.9}, elapsed=0.1, eta=0.0))
        bar(TrainFinished(2, False, None))
        bar(AdviceStarted(runs=3, candidates=("scratch", "hidden1"), seeds=(0,), jobs=1,
                          metric="val_accuracy"))
        for i, cand in enumerate(("scratch", "hidden1", "hidden1+ft"), start=1):
            bar(RunFinished(cand, 0, False, 0, 0.9, 0.1, done=i, total=3))
    assert bar.done == bar.total == 4  # the advisor planned one run more than guessed
    assert "run 4/4" in capsys.readouterr().err
    with RunsBar(3, enabled=False) as quiet:  # off (--quiet, not a terminal): no callback for the runs
        assert quiet is None


def test_every_step_ran_and_said_so(walk):
    result, lines, _ = walk
    assert len(result.steps) == 6
    headings = [line for line in lines if line.startswith("[")]
    assert [h[:5] for h in headings] == [f"[{i}/6]" for i in range(1, 7)]
    assert lines[-1].startswith("Every step succeeded in ")
    assert result.scope_matched == ["hidden1", "hidden2", "hidden3"]


def test_models_are_registered_with_lineage(walk):
    result, _, store = walk
    svc = Service(store)
    names = {i.name for i in svc.list_models()}
    assert {"digits-base", "digits-5to9", "digits-5to9-seed1", "digits-scratch",
            "digits-scratch-seed1"} <= names
    built = svc.model_info(result.built)
    assert built.lineage["base"] == {"name": "digits-base", "version": 1}
    assert [
        (la.name, la.trainable) for la in svc.model_layers(built.ref) if la.name.startswith("hidden")
    ] == [("hidden1", False), ("hidden2", False), ("hidden3", False)]
    tuned = svc.model_info(result.run.finetuned.info.ref)
    assert tuned.ref == "digits-5to9:3" and tuned.class_names == ["5", "6", "7", "8", "9"]
    assert [(s["op"], s["from"]) for s in tuned.lineage["steps"]] == [("train", "digits-5to9:1"),
                                                                      ("finetune", "digits-5to9:2")]
    assert tuned.lineage["steps"][1]["unfrozen"] == [plan.UNFREEZE]
    assert [e["model"] for e in svc.lineage(tuned.ref)] == ["digits-5to9:3", "digits-5to9:2", "digits-5to9:1",
                                                           "digits-base:1"]
    scratch = svc.model_info("digits-scratch:1")
    assert scratch.lineage == {"operation": "scratch",
                               "steps": [{"op": "scratch", "architecture_of": "digits-5to9:1", "seed": 0}]}
    assert all(la.trainable for la in svc.model_layers(scratch.ref))


def test_accuracies_are_in_a_sane_range(walk):
    result, lines, _ = walk
    run, cmp_ = result.run, result.comparison
    for acc in (run.frozen_accuracy, run.finetuned_accuracy):
        assert CHANCE + 0.3 < acc <= 1.0
    by = cmp_.by_label()
    assert set(by) == {"scratch (same architecture)", "reuse hidden1-3 frozen",
                       "reuse, then fine-tune hidden3"}
    assert all(len(a.scores) == 2 and all(CHANCE + 0.3 < s <= 1.0 for s in a.scores) for a in cmp_.approaches)
    assert by["reuse hidden1-3 frozen"].scores[0] == run.frozen_accuracy
    assert by["reuse hidden1-3 frozen"].trainable_params == 5 * 100 + 5
    assert by["scratch (same architecture)"].trainable_params == 64 * 100 + 100 + 2 * (100 * 100 + 100) + 505
    assert any(line.startswith("  verdict: ") for line in lines)
    assert cmp_.advisor is None


def test_served_predictions_match_and_the_server_stopped(walk):
    result, _, _ = walk
    served = result.served
    assert served.model == "digits-5to9:3" and served.stopped
    assert served.requests == len(load_data(plan.TEST_DATA))
    assert served.accuracy == pytest.approx(result.run.finetuned_accuracy, abs=1e-9)
    assert served.forward_passes >= 1 and served.forward_passes <= served.requests
    host, port = served.target.rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), timeout=5):
        pass


def test_a_failing_step_is_named_and_raises(tmp_path):
    lines: list[str] = []
    with pytest.raises(NotFound):
        run_quickstart(tmp_path / "s", options=QuickstartOptions.quick(1), say=lines.append,
                       example=tmp_path / "missing.h5")
    assert lines[-1] == "Step 1 failed: Register the example network shipped in models/"


def test_cli_exits_1_with_one_error_line(tmp_path):
    res = CliRunner().invoke(cli, ["quickstart", "--quick", "--store", str(tmp_path / "s"),
                                   "--example", str(tmp_path / "missing.h5")])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == f"Error: {tmp_path / 'missing.h5'}: no such file"


def test_subprocess_quick_run(tmp_path):
    store = tmp_path / "models"
    out = subprocess.run([sys.executable, "cli.py", "quickstart", "--quick", "--epochs", "5",
                          "--store", str(store)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "[6/6] Serve over gRPC" in out.stdout and "stopped cleanly" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("Every step succeeded in ")
    assert Service(store).model_info("digits-5to9").version == 3


def test_make_run_ends_by_saying_how_to_reach_the_reuse_command():
    # -n prints the recipes without running them (no install, no walk-through).
    recipe = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60).stdout
    lines = recipe.splitlines()
    walk = next(i for i, line in enumerate(lines) if line.endswith("reuse quickstart"))
    after = "\n".join(lines[walk + 1:])
    assert "source .venv/bin/activate" in after and ".venv/bin/reuse" in after


def test_readme_tour_says_to_activate_the_venv_before_the_first_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme[readme.index("## A tour of the command line"):]
    before_first_command = tour[:tour.index("\n$ reuse ")]
    assert "source .venv/bin/activate" in before_first_command and ".venv/bin/reuse" in before_first_command
