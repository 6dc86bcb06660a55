"""Jobs across the servers of one store: the runner (a JobManager) and replicas (JobDesk) see the same
jobs."""

from __future__ import annotations

import json

import pytest
from grpc_support import slow_kind, wait_until

from reuse.errors import FailedPrecondition, InvalidInput, NotFound
from reuse.jobs import JobKinds, builtin_kinds, files
from reuse.jobs.desk import JobDesk
from reuse.service import Service


def _kinds() -> JobKinds:
    kinds = builtin_kinds(Service)
    kinds.register("slow", slow_kind)
    return kinds


@pytest.fixture
def pair(store):
    """The runner and one replica over one store's jobs folder."""
    jobs = store.state_dir / "jobs"
    runner = JobDesk(jobs, store.root, kinds=_kinds())
    replica = JobDesk(jobs, store.root, kinds=_kinds(), takeover_every_s=0.1)
    yield runner, replica
    replica.shutdown(5)
    runner.shutdown(5)


def test_one_runner_and_the_note_says_which(pair, store):
    runner, replica = pair
    assert runner.runs_jobs and not replica.runs_jobs
    note = replica.runner()
    assert note["pid"] > 0 and note["host"]


def test_a_job_started_on_the_replica_runs_on_the_runner_and_both_see_it(pair, store):
    runner, replica = pair
    rec = replica.start("slow", {"epochs": 3, "name": "via-replica"})
    assert runner.get(rec.id).id == rec.id  # visible everywhere once start returns
    assert rec.id in [r.id for r in replica.list()]
    done = replica.wait(rec.id, timeout=30)
    assert done.state == "succeeded" and done.model == "via-replica:1"
    assert runner.get(rec.id).state == "succeeded"
    mine, finished = replica.events(rec.id, timeout=5)
    theirs, _ = runner.events(rec.id)
    assert finished and [e.to_dict() for e in mine] == [e.to_dict() for e in theirs]
    assert [e.epoch for e in mine if e.epochs] == [1, 2, 3]
    assert not list((store.state_dir / "jobs" / files.REQUESTS).iterdir())  # every request taken


def test_bad_parameters_are_refused_on_the_replica_at_once(pair):
    _, replica = pair
    with pytest.raises(FailedPrecondition, match="job kind 'nope' is not available"):
        replica.start("nope", {})
    with pytest.raises(InvalidInput, match="unknown parameter"):
        replica.start("train", {"model": "m", "data": "builtin:digits", "bogus": 1})
    with pytest.raises(NotFound):
        replica.get("0123456789ab")
    with pytest.raises(NotFound):
        replica.get("../../etc")


def test_cancel_through_the_replica(pair, store):
    runner, replica = pair
    rec = runner.start("slow", {"epochs": 10000, "step_s": 0.01, "name": "never"})
    wait_until(lambda: replica.get(rec.id).state == "running")
    replica.events(rec.id, after_seq=2, timeout=10)
    replica.cancel(rec.id)
    assert replica.wait(rec.id, timeout=20).state == "cancelled"
    assert runner.get(rec.id).state == "cancelled" and "never" not in store.names()
    with pytest.raises(FailedPrecondition, match="already finished"):
        replica.cancel(rec.id)


def test_replica_watch_follows_progress_live(pair):
    runner, replica = pair
    rec = replica.start("slow", {"epochs": 20, "step_s": 0.05, "name": "watched"})
    seen, seq, done = [], 0, False
    while not done:
        events, done = replica.events(rec.id, after_seq=seq, timeout=10)
        seen += events
        seq = events[-1].seq if events else seq
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))  # no gaps, nothing twice
    assert seen[-1].state == "succeeded"


def test_replica_takes_over_when_the_runner_stops(store):
    jobs = store.state_dir / "jobs"
    runner = JobDesk(jobs, store.root, kinds=_kinds())
    replica = JobDesk(jobs, store.root, kinds=_kinds(), takeover_every_s=0.1)
    try:
        running = runner.start("slow", {"epochs": 10000, "name": "never"})
        wait_until(lambda: runner.get(running.id).state == "running")
        assert runner.shutdown(5) == [running.id]
        wait_until(lambda: replica.runs_jobs, timeout=20)
        assert replica.get(running.id).state == "interrupted"
        again = replica.start("slow", {"epochs": 1, "name": "after"})
        assert replica.wait(again.id, timeout=30).state == "succeeded"
        assert json.loads((jobs / "runner.json").read_text())["pid"] > 0
    finally:
        replica.shutdown(5)


def test_a_request_left_while_no_server_runs_jobs_is_listed_queued_then_run(store):
    jobs = store.state_dir / "jobs"
    runner = JobDesk(jobs, store.root, kinds=_kinds())
    replica = JobDesk(jobs, store.root, kinds=_kinds(), takeover_every_s=3600)  # never takes over here
    runner.shutdown(5)
    try:
        files.write_request(jobs, "00000000abcd", "start", {"kind": "slow",
                                                            "params": {"epochs": 1, "name": "late"},
                                                              "created": "2026-01-01T00:00:00.000+00:00"})
        assert [(r.id, r.state) for r in replica.list()] == [("00000000abcd", "queued")]
        assert replica.get("00000000abcd").kind == "slow"
    finally:
        replica.shutdown(5)
    first = JobDesk(jobs, store.root, kinds=_kinds())  # the next server on the store runs the jobs
    try:
        assert first.runs_jobs and first.wait("00000000abcd", timeout=30).state == "succeeded"
    finally:
        first.shutdown(5)
