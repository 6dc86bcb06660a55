"""Jobs core: registry, worker pool, progress, cancel, shutdown, restart recovery."""

from __future__ import annotations

import json

import h5py
import pytest
from grpc_support import slow_kind
from store_helpers import flip_byte

from reuse.errors import FailedPrecondition, InvalidInput, NotFound
from reuse.jobs import JobKinds, JobManager, builtin_kinds, write_json_atomic
from reuse.service import Service
from reuse.store import h5file


@pytest.fixture
def manager(store):
    m = JobManager(store.state_dir / "jobs", store.root, workers=2, kinds=_with_slow())
    yield m
    m.shutdown(timeout=5)


def _with_slow() -> JobKinds:
    kinds = builtin_kinds(Service)
    kinds.register("slow", slow_kind)
    return kinds


def test_registry():
    kinds = builtin_kinds(Service)
    assert "verify" in kinds.names()
    with pytest.raises(InvalidInput, match="invalid job kind"):
        kinds.register("Bad Kind", slow_kind)
    kinds.register("tmp-kind", slow_kind)
    with pytest.raises(InvalidInput, match="already registered"):
        kinds.register("tmp-kind", lambda p, pr, c: {})
    assert "tmp-kind" in kinds.names()
    assert "tmp-kind" not in builtin_kinds(Service).names()  # each table is its own: no global registry


def test_job_runs_reports_progress_and_persists(manager, store):
    rec = manager.start("slow", {"epochs": 3, "name": "trained"})
    done = manager.wait(rec.id, timeout=30)
    assert done.state == "succeeded" and done.model == "trained:1"
    events, finished = manager.events(rec.id)
    assert finished
    assert [e.state for e in events][:2] == ["queued", "running"] and events[-1].state == "succeeded"
    progress = [e for e in events if e.epochs]
    assert [e.epoch for e in progress] == [1, 2, 3]
    assert progress[0].losses == {"loss": 1.0} and progress[-1].metrics == {"accuracy": 1.0}
    assert progress[-1].eta_s == pytest.approx(0.0, abs=1e-6)
    assert events[-1].model == "trained:1"
    on_disk = json.loads((store.state_dir / "jobs" / f"{rec.id}.json").read_text())
    assert on_disk["state"] == "succeeded" and on_disk["result"]["model"] == "trained:1"
    assert "store" not in on_disk["params"]


def test_cancel_running_job_registers_nothing(manager, store):
    rec = manager.start("slow", {"epochs": 1000, "step_s": 0.01, "name": "never"})
    manager.events(rec.id, after_seq=2, timeout=10)  # first progress event: it is running
    manager.cancel(rec.id)
    assert manager.wait(rec.id, timeout=10).state == "cancelled"
    assert "never" not in store.names()
    with pytest.raises(FailedPrecondition, match="already finished"):
        manager.cancel(rec.id)


def test_queued_jobs_wait_for_a_worker_and_can_be_cancelled(store):
    m = JobManager(store.state_dir / "jobs", store.root, workers=1, kinds=_with_slow())
    first = m.start("slow", {"epochs": 1000, "name": "a"})
    second = m.start("slow", {"epochs": 1, "name": "b"})
    assert m.get(second.id).state == "queued"
    assert m.cancel(second.id).state == "cancelled"
    interrupted = m.shutdown(timeout=5)
    assert interrupted == [first.id] and m.get(first.id).state == "interrupted"
    assert "a" not in store.names() and "b" not in store.names()


def test_restart_marks_running_jobs_interrupted_and_lists_finished(store):
    jobs = store.state_dir / "jobs"
    jobs.mkdir(parents=True)
    stale = {"id": "0123456789ab", "kind": "train", "params": {}, "state": "running", "created": "2025-01-01"}
    write_json_atomic(jobs / "0123456789ab.json", stale)
    write_json_atomic(jobs / "ba9876543210.json", {**stale, "id": "ba9876543210", "state": "succeeded",
                                                    "result": {"model": "x:1"}})
    m = JobManager(jobs, store.root)
    try:
        assert m.get("0123456789ab").state == "interrupted"
        assert m.get("ba9876543210").state == "succeeded" and m.get("ba9876543210").model == "x:1"
        assert json.loads((jobs / "0123456789ab.json").read_text())["state"] == "interrupted"
        with pytest.raises(FailedPrecondition, match="another server"):
            JobManager(jobs, store.root)
    finally:
        m.shutdown()


def test_errors(manager):
    with pytest.raises(FailedPrecondition, match="job kind 'nope' is not available.*build.*train.*verify"):
        manager.start("nope", {})
    with pytest.raises(InvalidInput, match="JSON"):
        manager.start("slow", {"x": object()})
    with pytest.raises(NotFound):
        manager.get("../../etc")


def test_verify_kind(manager, store):
    from conftest import make_mlp

    store.register(make_mlp(), "a")
    store.register(make_mlp(), "a")
    rec = manager.wait(manager.start("verify", {}).id, timeout=30)
    assert rec.state == "succeeded"
    assert rec.result == {"checked": 2, "corrupt": {}, "ok": True, "index_problems": False}
    path = store.path("a:2")
    with h5py.File(path) as f:
        kernel = h5file.layer_weight_datasets(f, "hidden1", path)[0].name
    flip_byte(path, kernel)  # the store's check (the one implementation) names the damaged version
    rec = manager.wait(manager.start("verify", {"models": ["a"]}).id, timeout=30)
    assert rec.state == "succeeded" and list(rec.result["corrupt"]) == ["a:2"] and not rec.result["ok"]
