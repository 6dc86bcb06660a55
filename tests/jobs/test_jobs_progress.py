"""Training events as job events and back (reuse/jobs/progress.py): fields carry them, not text."""

from __future__ import annotations

import json
import threading

import pytest

from reuse.errors import Cancelled
from reuse.jobs import JobEvent, JobKinds, JobManager, read_records
from reuse.jobs.progress import job_progress, train_event
from reuse.jobs.records import progress_fields
from reuse.train.events import EpochEnd, TrainFinished, TrainStarted

ONE_PHASE = [
    TrainStarted(task="finetune", epochs=3, samples=60, val_samples=12, steps_per_epoch=4,
                 cached_layers=("hidden1",)),
    EpochEnd(1, 3, {"loss": 0.9, "val_loss": 1.0}, {"accuracy": 0.5, "val_accuracy": 0.4},
             elapsed=0.0, eta=2.0),
    EpochEnd(2, 3, {"loss": 0.7, "val_loss": 1.1}, {"accuracy": 0.6, "val_accuracy": 0.4},
             elapsed=0.0, eta=1.0),
    TrainFinished(epochs_run=2, stopped_early=True, best_epoch=1, metrics={"accuracy": 0.55}),
]
SECOND_SEED = [
    TrainStarted(task="train", epochs=2, samples=30, val_samples=0, steps_per_epoch=1, phase=2, phases=3,
                 label="seed 1"),
    EpochEnd(1, 2, {"loss": 0.5}, {"accuracy": 0.5}, elapsed=0.0, eta=0.5, phase=2, phases=3),
    TrainFinished(epochs_run=2, stopped_early=False, best_epoch=None, metrics={}, phase=2, phases=3),
]


def _as_job_events(training_events):
    """What a job's watcher receives: each progress dict as the manager stores it, as a running event."""
    sent = []
    forward = job_progress(sent.append, threading.Event())
    for ev in training_events:
        forward(ev)
    return sent, [
        JobEvent(
            job_id="0123456789ab",
            seq=i + 1,
            state="running",
            eta_s=float(d.get("eta_s", -1.0)),
            **progress_fields(d),
        )
        for i, d in enumerate(sent)
    ]


@pytest.mark.parametrize("training_events", [ONE_PHASE, SECOND_SEED], ids=["one phase", "a seed of three"])
def test_training_events_come_back_from_the_fields(training_events):
    _, events = _as_job_events(training_events)
    assert [train_event(e) for e in events] == training_events
    # The fields alone carry them: the text for people can be anything.
    assert [train_event(JobEvent(**{**vars(e), "message": ""})) for e in events] == training_events


def test_the_messages_for_people():
    sent, events = _as_job_events(ONE_PHASE)
    assert [d["message"] for d in sent] == [
        "started finetune: 60 samples, 4 steps per epoch; cached hidden1", "finetune", "finetune",
        "finished finetune: 2 epochs, stopped early (best epoch 1)"]
    sent, _ = _as_job_events(SECOND_SEED)
    assert sent[0]["message"] == "started seed 1 2/3: 30 samples, 1 steps per epoch"
    assert sent[-1]["message"] == "finished seed 1 2/3: 2 epochs"
    assert [e.stage for e in events] == ["train_started", "epoch_end", "epoch_end", "train_finished"]


def test_events_without_a_stage_stand_for_no_training_event():
    text_only = JobEvent(job_id="0123456789ab", seq=2, state="running", epoch=0, epochs=3,
                         message="started train: 60 samples, 4 steps per epoch")
    assert train_event(text_only) is None
    _, events = _as_job_events(ONE_PHASE)
    assert train_event(JobEvent(**{**vars(events[1]), "state": "succeeded"})) is None
    assert train_event(JobEvent(job_id="0123456789ab", seq=9, state="running", epoch=1, epochs=1,
                                metrics={"score": 1.0}, message="advise run")) is None


def test_a_cancel_stops_training_at_its_next_event():
    cancel = threading.Event()
    forward = job_progress(lambda d: None, cancel)
    forward(ONE_PHASE[0])
    cancel.set()
    with pytest.raises(Cancelled, match="nothing was registered"):
        forward(ONE_PHASE[-1])


def test_a_job_manager_keeps_and_persists_the_fields(tmp_path):
    def fake_training(params, progress, cancel):
        forward = job_progress(progress, cancel)
        for ev in ONE_PHASE:
            forward(ev)
        return {}

    kinds = JobKinds()
    kinds.register("fake-train", fake_training)
    jobs = JobManager(tmp_path / "jobs", tmp_path, workers=1, kinds=kinds)
    try:
        record = jobs.start("fake-train", {})
        assert jobs.wait(record.id, timeout=30).state == "succeeded"
        events, done = jobs.events(record.id)
    finally:
        jobs.shutdown(timeout=5)
    assert done
    assert [e for e in (train_event(e) for e in events) if e is not None] == ONE_PHASE
    started = next(e for e in events if e.stage == "train_started")
    assert (started.samples, started.val_samples, started.steps_per_epoch, started.cached_layers) == (
        60, 12, 4, ("hidden1",))
    finished = next(e for e in events if e.stage == "train_finished")
    assert finished.stopped_early and finished.best_epoch == 1
    # A record's last event read back from disk has its fields too (here: the final state event).
    on_disk = json.loads((tmp_path / "jobs" / f"{record.id}.json").read_text())
    assert set(on_disk["last_event"]) == set(JobEvent.__dataclass_fields__)
    assert read_records(tmp_path / "jobs")[0].last_event == events[-1]
