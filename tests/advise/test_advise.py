"""The advisor end to end on constructed tasks with known answers; budget, cancellation, workers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from advise_helpers import FAST, shared_env

from reuse.advise import AdviceFinished, RunFinished, RunProgress
from reuse.errors import FailedPrecondition
from reuse.service import Service
from reuse.store import ModelStore
from reuse.train import TrainStarted, evaluate


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return shared_env(tmp_path_factory)


def by_label(advice):
    return {r.candidate.label: r for r in advice.rows}


def test_reuse_wins_when_the_base_learned_what_the_task_needs_and_is_registered(env):
    svc = Service(env.store)
    events = []
    a = svc.advise("digits10", env.files["a_train"], val=env.files["a_val"], depths="0,2", register="mod5",
                   progress=events.append, **FAST)
    rows = by_label(a)
    assert list(rows) == ["scratch", "reuse 2 frozen", "reuse 2 fine-tuned"]
    assert all(len(r.scores) == 2 and r.extra["seeds"] == [0, 1] for r in a.rows)
    assert a.metric == "val_accuracy" and a.higher_is_better and a.stopped is None and not a.not_run
    rec = a.recommendation
    assert rec.reuse_helps and rec.choice.candidate.depth >= 1 and "beats training from scratch" in rec.reason
    assert rows["reuse 2 frozen"].mean > rows["scratch"].mean + 0.03
    # Trainable parameters: the head only when frozen; everything when fine-tuned or from scratch.
    head = 32 * 5 + 5
    assert rows["reuse 2 frozen"].trainable_params == head
    assert (
        rows["reuse 2 fine-tuned"].trainable_params
        == rows["scratch"].trainable_params
        == 64 * 32 + 32 + 32 * 32 + 32 + head
    )
    # Frozen runs trained on cached features of the reused layers.
    started = [e for e in events if isinstance(e, RunProgress) and isinstance(e.event, TrainStarted)]
    assert {e.event.cached_layers for e in started if e.candidate == "reuse 2 frozen"} == {
        ("hidden1", "hidden2")
    }
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert [e.done for e in finished] == list(range(1, 7)) and isinstance(events[-1], AdviceFinished)
    # The registered network is the run of the first seed, with lineage and the table in its metadata.
    assert a.registered == "mod5:1"
    info = ModelStore(env.store).info("mod5:1")
    assert info.lineage["operation"] == "advise" and info.lineage["base"] == {
        "name": "digits10",
        "version": 1,
    }
    assert (
        info.lineage["advice"]["candidate"] == rec.choice.candidate.label
        and info.lineage["advice"]["seed"] == 0
    )
    assert [s["op"] for s in info.lineage["steps"]][:2] == ["build", "train"]
    table = info.metrics["advice"]
    assert [r["candidate"] for r in table["rows"]] == list(rows) and table["recommendation"]["reuse_helps"]
    model = ModelStore(env.store).load("mod5:1")
    from reuse.data import load_data

    got = evaluate(model, load_data(env.files["a_val"]))["accuracy"]
    assert got == pytest.approx(rec.choice.scores[0], abs=1e-6)
    assert svc.lineage("mod5:1")[1]["model"] == "digits10:1"


def test_scratch_wins_or_ties_when_the_base_never_saw_the_inputs(env):
    svc = Service(env.store)
    a = svc.advise("blind", env.files["b_train"], val=env.files["b_val"], depths="0,2", register="blindnew",
                   **FAST)
    rows = by_label(a)
    rec = a.recommendation
    assert not rec.reuse_helps and rec.choice.candidate.depth == 0
    assert rec.reason.startswith("reuse does not help here")
    assert rows["reuse 2 frozen"].mean < rows["scratch"].mean
    # Nothing was copied into a network trained from scratch: no base in its lineage.
    info = ModelStore(env.store).info(a.registered)
    assert "base" not in info.lineage and info.lineage["architecture_from"] == {"name": "blind", "version": 1}
    assert all("from" not in x and x["trainable"] for x in info.lineage["layers"])
    d = a.to_dict()
    assert d["recommendation"]["candidate"] == "scratch" and d["rows"][0]["recommended"]


def test_tiny_budget_stops_after_the_first_unit_and_lists_the_rest(env):
    a = Service(env.store).advise("blind", env.files["b_train"], val=env.files["b_val"], depths="0..1",
                                  budget_minutes=0.0001, **FAST)
    assert a.stopped == "budget"
    assert [len(r.scores) for r in a.rows] == [1, 0, 0]  # scratch seed 0 ran; nothing else was started
    assert a.recommendation.choice.candidate.depth == 0
    not_run = {(c.label, s) for c, s in a.not_run}
    assert not_run == {("scratch", (1,)), ("reuse 1 frozen", (0, 1)), ("reuse 1 fine-tuned", (0, 1))}
    assert a.to_dict()["not_run"][0] == {"candidate": "scratch", "depth": 0, "finetune": False, "seeds": [1]}


def test_cancel_after_the_first_run_keeps_it(env):
    cancel = threading.Event()
    seen = []

    def progress(ev):
        seen.append(ev)
        if isinstance(ev, RunFinished):
            cancel.set()

    a = Service(env.store).advise("blind", env.files["b_train"], val=env.files["b_val"], depths="1",
                                  register="never", progress=progress, cancel=cancel, **FAST)
    assert a.stopped == "cancelled" and a.registered is None
    rows = by_label(a)
    assert len(rows["reuse 1 frozen"].scores) == 1 and rows["reuse 1 fine-tuned"].scores == ()
    assert a.recommendation.choice.candidate.label == "reuse 1 frozen"
    assert {(c.label, s) for c, s in a.not_run} == {("reuse 1 frozen", (1,)), ("reuse 1 fine-tuned", (0, 1))}
    assert isinstance(seen[-1], AdviceFinished) and seen[-1].stopped == "cancelled"
    assert "never" not in ModelStore(env.store).names()


def test_two_worker_processes_give_the_same_table_as_one(env):
    kw = dict(val=env.files["b_val"], depths="0,1", finetune=False, **{**FAST, "epochs": 10})
    one = Service(env.store).advise("blind", env.files["b_train"], **kw)
    two = Service(env.store).advise("blind", env.files["b_train"], jobs=2, **kw)
    assert two.jobs == 2 and two.stopped is None
    assert [r.candidate for r in one.rows] == [r.candidate for r in two.rows]
    for a, b in zip(one.rows, two.rows, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
        assert a.trainable_params == b.trainable_params and a.extra["epochs_run"] == b.extra["epochs_run"]
    assert one.recommendation.choice.candidate == two.recommendation.choice.candidate


def test_default_split_is_stratified_and_labels_pick_the_output(env):
    a = Service(env.store).advise("digits10", env.files["a_train"], depths="2", val_split=0.4,
                                  **{**FAST, "seeds": 1, "epochs": 5})
    assert a.samples + a.val_samples == 30 and a.val_samples == 10  # 2 of each of the 5 classes
    assert a.output == {"head": "", "classes": 5, "regression": False}
    assert any("validation samples" in w for w in a.warnings)


def test_regression_scores_the_loss_lower_is_better(env, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 16)).astype(np.float32)
    path = tmp_path / "reg.npz"
    np.savez(path, x=x, y=(x[:, 8:] @ rng.normal(size=8)).astype(np.float32))
    a = Service(env.store).advise("blind", str(path), depths="0,1", regression=True, finetune=False,
                                  **{**FAST, "seeds": 1, "epochs": 5})
    assert a.metric == "val_loss" and not a.higher_is_better and a.output["regression"] is True
    assert [r.candidate.label for r in a.rows] == ["scratch", "reuse 1 frozen"]
    best = min(a.rows, key=lambda r: r.mean)
    assert a.recommendation.choice.mean <= best.mean + max(best.std, 0.01 * best.mean) + 1e-12


def test_register_needs_the_weights_kept(env):
    from reuse.advise import AdviseConfig, advise
    from reuse.advise.register import register_choice
    from reuse.data import load_data

    store = ModelStore(env.store)
    a = advise(store, "blind", load_data(env.files["b_train"]), val=load_data(env.files["b_val"]), depths="1",
               config=AdviseConfig(seeds=1, epochs=2, finetune=False))
    with pytest.raises(FailedPrecondition, match="were not kept"):
        register_choice(store, a, "nope", data="x", val=None)
