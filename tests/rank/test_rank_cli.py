"""``reuse rank`` through Click (and once as a subprocess): the table, --json, the plot, bad input and exit
codes; ``reuse advise --shortlist`` trains only the shortlisted candidates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from rank_helpers import TARGET, TARGET_VAL, graded

from reuse.cli import cli
from reuse.store import ModelStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    g = graded(tmp_path_factory)
    root = tmp_path_factory.mktemp("rankcli")
    store = root / "store"
    # A copy of three graded bases plus one that overflows (weights of 1e30: inf, then NaN, in its features).
    src, dst = ModelStore(g.store), ModelStore(store)
    for name in ("all10", "d04", "untrained"):
        dst.register(src.load(name), name)
    keras.utils.set_random_seed(0)
    wild = keras.Sequential([keras.Input((64,), name="pixels"),
                             keras.layers.Dense(8, activation="relu", name="h1"),
                             keras.layers.Dense(8, activation="relu", name="h2"),
                             keras.layers.Dense(5, activation="softmax", name="out")], name="wild")
    for layer in wild.layers[:2]:
        layer.kernel.assign(np.full(layer.kernel.shape, 1e30, np.float32))
    dst.register(wild, "wild")
    files = {"target": g.data}
    d = np.load(g.data)
    files["narrow"] = _save(root / "narrow.npz", d["x"][:, :10], d["y"])
    files["one_class"] = _save(root / "one.npz", d["x"], np.zeros(len(d["y"]), np.int64))
    nan = d["x"].copy()
    nan[3, 5] = np.nan
    files["nan"] = _save(root / "nan.npz", nan, d["y"])
    return store, files


def _save(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x.astype(np.float32), y=y)
    return str(path)


def run(store: Path, *args: str, code: int = 0):
    result = CliRunner().invoke(cli, ["rank", "--store", str(store), "--quiet", *args])
    assert result.exit_code == code, result.output
    return result


def _files(store: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(store)), p.stat().st_mtime_ns) for p in store.rglob("*")
                  if p.is_file() and ".reuse" not in p.parts)


def test_table_recommendation_reasons_and_plot(env, tmp_path):
    store, files = env
    plot = tmp_path / "rank.png"
    out = run(store, "--data", files["target"], "--plot", str(plot)).stdout
    lines = out.splitlines()
    assert lines[0].startswith("Rank of 10 cut(s) of 4 model(s) on ")
    assert "100 rows, classification (5 classes)" in lines[0]
    assert lines[0].endswith("ranked by LogME + k-NN (mean position)")
    assert lines[1].split() == ["RANK", "MODEL", "VERSION", "CUT", "REUSED", "PARAMS", "LogME", "k-NN",
                                "SFDA", "MEAN", "POS", "SECONDS"]
    top = lines[2].split()
    assert top[:3] == ["1", "all10", "1"] and top[3].endswith(":")
    assert any("(raw inputs, no reuse)" in line and "64 input values" in line for line in lines)
    depth = int(top[3][:-1])
    scope = "|".join(f"hidden{i}" for i in range(1, depth + 1))
    assert f"Recommendation: all10:1 up to depth {depth} (reuse '{scope}')" in out
    assert "  it ranks above the raw inputs" in out
    assert "Not ranked:\n  wild:1 depth 2: not scored: the features hold" in out
    assert "(a diverged base?)" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"Plot written to {plot}" in out


def test_json_keys_are_stable(env):
    store, files = env
    d = json.loads(run(store, "--data", files["target"], "--models", "all10,d04:1", "--metric", "logme",
                       "--json").stdout)
    assert set(d) == {"data", "samples", "task", "classes", "metric", "scores", "models", "candidates",
                      "baseline", "recommendation", "not_ranked", "stopped", "seconds", "warnings",
                      "settings", "plot"}
    assert d["models"] == ["all10:1", "d04:1"] and d["metric"] == ["logme"] and d["stopped"] is None
    first = d["candidates"][0]
    assert {"model", "version", "scope", "scores", "rank"} <= set(first)
    assert [c["rank"] for c in d["candidates"]] == sorted(c["rank"] for c in d["candidates"])
    logme = [c["scores"]["logme"] for c in d["candidates"]]
    assert logme == sorted(logme, reverse=True) and set(first["scores"]) == {"logme", "knn", "sfda"}
    assert d["baseline"]["model"] is None and d["baseline"]["rank"] >= 1 and d["seconds"] > 0


@pytest.mark.parametrize(("args", "error"), [
    (["--data", "narrow"], "the data fits no matching model (all10:1: "),
    (["--data", "target", "--models", "nope.*"], "no model in the store matches 'nope.*'; models: all10,"),
    (["--data", "target", "--cuts", "zzz;yyy"], "no cut scope matches a layer of any matching model"),
    (["--data", "one_class"], "every label is 0: the scores need at least two classes"),
    (["--data", "nan"], "NaN or infinite feature values (first at row 3)"),
    (["--data", "target", "--metric", "logme,acc"], "invalid metric 'logme,acc': expected auto or some of"),
    (["--data", "target", "--cuts", "hidden1", "--blocks", "b{1..2}_"], "give either cut scopes or a block"),
    (["--data", "target", "--models", "all10:9"], "model 'all10' has no version 9 (versions: 1)"),
    (["--data", "target", "--plot", "rank.gif"], "unknown plot format '.gif'"),
    (["--data", "target", "--memory-mb", "1"],
     "but the memory budget (--memory-mb 1: 1.0 MiB) leaves 0 bytes"),
])
def test_bad_input_is_refused_before_any_pass_and_the_store_is_untouched(env, args, error):
    store, files = env
    before = _files(store)
    args = [files.get(a, a) for a in args]
    result = run(store, *args, code=1)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and error in last, result.output
    assert _files(store) == before


def test_when_nothing_can_be_ranked_the_table_says_why_and_the_exit_code_is_3(env):
    store, files = env
    d = json.loads(run(store, "--data", files["target"], "--json", "--budget", "0.000001", code=3).stdout)
    assert d["candidates"] == [] and d["recommendation"] is None and d["baseline"]["scores"]["knn"] > 0
    assert d["not_ranked"] and all("not started: the time "
                                   "budget ran out" in n["reason"] for n in d["not_ranked"])


def test_rank_own_memory_limit_refuses_and_skips_with_the_figure(env):
    """The limit on kept features and their scoring (half of what the memory budget leaves, or a job's
    memory_mb): too small for the raw inputs, refused; too small for a model, that model listed."""
    from reuse.errors import InvalidInput
    from reuse.service import Service

    store, files = env
    with pytest.raises(InvalidInput, match="100 rows cannot be scored within the memory limit of"):
        Service(store).rank(data=files["target"], memory_mb=0.001)
    d = Service(store).rank(data=files["target"], memory_mb=0.2, models="all10|d04").to_dict()
    assert d["candidates"] == [] and d["not_ranked"]
    assert all("over the limit of 0.2 MB" in n["reason"] for n in d["not_ranked"])


def test_a_subprocess_prints_json(env):
    store, files = env
    env_vars = {**os.environ, "PYTHONPATH": str(ROOT), "REUSE_STORE": str(store)}
    proc = subprocess.run([sys.executable, "cli.py", "rank", "--data", files["target"], "--models", "d04",
                           "--json", "--quiet"], cwd=ROOT, env=env_vars, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert [c["depth"] for c in d["candidates"]] != [] and {c["model"] for c in d["candidates"]} == {"d04"}


QUICK = ["--seeds", "1", "--epochs", "15", "--patience", "3", "--lr", "0.01", "--quiet", "--json"]


def test_advise_shortlist_trains_only_the_best_ranked_across_models(env):
    store, files = env
    ranked = json.loads(run(store, "--data", files["target"], "--models", "all10|d04|untrained",
                            "--json").stdout)
    result = CliRunner().invoke(cli, ["advise", "--store", str(store), "--models", "all10|d04|untrained",
                                      "--shortlist", "4", "--data", TARGET, "--val", TARGET_VAL,
                                      "--no-finetune", *QUICK])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    s = d["shortlist"]
    top = [(c["model"], c["depth"]) for c in ranked["candidates"]]
    assert [(e["model"], e["depth"]) for e in s["trained"]] == top[:4]
    assert [(e["model"], e["depth"]) for e in s["skipped"]] == top[4:]
    assert all(e["scores"]["logme"] is not None and e["rank"] for e in s["skipped"])
    assert len({m for m, _ in top[:4]}) == 2  # the four best span two bases: their advice runs are joined
    assert d["base"] == ", ".join(s["models"])
    trained = {(r["base"], r["depth"]) for r in d["rows"] if r["depth"]}
    assert trained == {(f"{m}:1", depth) for m, depth in top[:4]}
    assert d["rows"][0]["candidate"] == "scratch" and len(d["rows"]) == 5  # nothing else was trained
    assert all(len(r["scores"]) == 1 for r in d["rows"])
    assert d["recommendation"]["candidate"] in [r["candidate"] for r in d["rows"]]


def test_advise_shortlist_of_one_base_trains_its_best_depths(env):
    store, files = env
    result = CliRunner().invoke(cli, ["advise", "--store", str(store), "--from", "d04", "--shortlist", "1",
                                      "--data", files["target"], "--no-finetune", *QUICK])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    best = d["shortlist"]["trained"][0]["depth"]
    assert [r["depth"] for r in d["rows"]] == [0, best] and d["base"] == "d04:1"
    assert len(d["shortlist"]["skipped"]) == 2 and d["shortlist"]["models"] == ["d04:1"]


@pytest.mark.parametrize(("args", "error"), [
    (["--models", "d04"], "--models and --metric choose what --shortlist ranks"),
    (["--shortlist", "2"], "give exactly one of them"),
    (["--from", "d04", "--models", "all10", "--shortlist", "2"], "give exactly one of them"),
    (["--models", "all10", "--shortlist", "2", "--depths", "1"], "--depths picks among one base's"),
])
def test_bad_shortlist_options(env, args, error):
    store, files = env
    args = ["advise", "--store", str(store), "--data", files["target"], *args, *QUICK]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and error in result.output, result.output
