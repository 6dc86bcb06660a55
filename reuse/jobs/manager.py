"""The job manager: a bounded pool of worker threads running registered job kinds."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from filelock import FileLock, Timeout

from reuse.atomic import write_json_atomic
from reuse.errors import Cancelled, FailedPrecondition, InvalidInput, NotFound, ReuseError
from reuse.jobs import files
from reuse.jobs.records import (
    JOB_ID_RE,
    PROGRESS_KEYS,
    JobEvent,
    JobRecord,
    _now,
    progress_fields,
    read_records,
)
from reuse.jobs.registry import JobKinds
from reuse.text import echo

log = logging.getLogger(__name__)
PERSIST_EVERY_S = 0.5
REQUEST_POLL_S = 0.05  # how often the runner looks for requests other servers of the store left


def prepare_params(kinds: JobKinds, kind: str, params: dict[str, Any], store_root: Path) -> dict[str, Any]:
    """The parameters of a job about to start, checked: the kind exists, they are a JSON object, and the
    kind's validator accepts them. ``"store"`` is dropped (the manager sets it; a client cannot point a
    job at another folder). Raises what :meth:`JobManager.start` documents."""
    kinds.get(kind)
    try:
        params = json.loads(json.dumps(params))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"job parameters must be JSON values: {exc}") from exc
    if not isinstance(params, dict):
        raise InvalidInput(f"job parameters must be a JSON object, got {type(params).__name__}")
    params.pop("store", None)
    validate = kinds.validator(kind)
    if validate is not None:
        validate({**params, "store": str(store_root)})
    return params


class _Job:
    def __init__(self, record: JobRecord) -> None:
        self.record = record
        self.cancel = threading.Event()
        self.events: list[JobEvent] = [record.last_event] if record.last_event else []
        self.t0 = time.monotonic()
        self.last_write = 0.0


class JobManager:
    """Run jobs on ``workers`` threads; keep their records in ``jobs_dir``.

    Args:
        jobs_dir: folder of the JSON records (``<store>/.reuse/jobs``); created if missing.
        store_root: passed to every job kind as ``params["store"]``.
        workers: most jobs running at once; more wait in state ``queued``.

    The manager holds the store's jobs lock while it lives (one runner per store). It also takes the
    start and cancel requests that other servers of the store leave in the jobs folder, every
    ``REQUEST_POLL_S``, and logs every event beside the record (:mod:`reuse.jobs.files`).
        kinds: the kinds it runs (default: none; a :class:`reuse.service.state.ServerState` passes its own).
    """

    def __init__(self, jobs_dir: Path, store_root: Path | str, *, workers: int = 2,
                 kinds: JobKinds | None = None) -> None:
        self.kinds = kinds if kinds is not None else JobKinds()
        self.dir = Path(jobs_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store_root = store_root if isinstance(store_root, str) else Path(store_root)  # str: a URL
        # One manager per store: a second one would mark the first one's running jobs interrupted.
        # Not thread-local: a server takes it on a request thread and gives it back on the one stopping it.
        self._owner = FileLock(str(self.dir / ".manager.lock"), thread_local=False)
        try:
            self._owner.acquire(timeout=0)
        except Timeout as exc:
            raise FailedPrecondition("another server is running the jobs of store "
                                     f"{self.store_root}") from exc
        self._jobs: dict[str, _Job] = {}
        self._cond = threading.Condition()
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._stopping = False
        files.write_runner_note(self.dir)
        self._recover()
        self._threads = [threading.Thread(target=self._work, name=f"job-worker-{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()
        self._take_pending()  # requests left while no server ran the jobs are known before we answer
        self._requests = threading.Thread(target=self._take_requests, name="job-requests", daemon=True)
        self._requests.start()

    # -- public ----------------------------------------------------------------------------------
    def start(self, kind: str, params: dict[str, Any]) -> JobRecord:
        """Queue a job. Raises FailedPrecondition (unknown kind, stopping), or what the kind's validator
        raises for bad parameters (InvalidInput, NotFound)."""
        params = prepare_params(self.kinds, kind, params, self.store_root)
        return self._admit(JobRecord(id=uuid.uuid4().hex[:12], kind=kind, params=params, created=_now()))

    def get(self, job_id: str) -> JobRecord:
        with self._cond:
            return self._job(job_id).record

    def list(self, *, state: str = "", kind: str = "") -> list[JobRecord]:
        with self._cond:
            recs = [j.record for j in self._jobs.values()]
        return sorted((r for r in recs if (not state or r.state == state) and (not kind or r.kind == kind)),
                      key=lambda r: (r.created, r.id))

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued or running job. Raises FailedPrecondition if it already finished."""
        with self._cond:
            job = self._job(job_id)
            if job.record.done:
                raise FailedPrecondition(f"job {job_id} already finished ({job.record.state}); nothing "
                                         "to cancel")
            job.cancel.set()
            if job.record.state == "queued":
                self._finish(job, "cancelled", error="cancelled before it started")
            return job.record

    def events(
        self, job_id: str, after_seq: int = 0, timeout: float | None = None
    ) -> tuple[list[JobEvent], bool]:
        """Events with ``seq > after_seq``, waiting up to ``timeout`` for one; and whether the job is done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            job = self._job(job_id)
            while True:
                new = [e for e in job.events if e.seq > after_seq]
                if new or job.record.done:
                    return new, job.record.done
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return [], False
                self._cond.wait(left)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job finishes (or ``timeout``); return its record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            job = self._job(job_id)
            while not job.record.done:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            return job.record

    def shutdown(self, timeout: float = 5.0) -> list[str]:
        """Stop taking jobs, mark queued and running ones interrupted, signal them to stop.

        Returns the ids marked interrupted. Worker threads are daemons: a kind that ignores its cancel
        event does not keep the process alive.
        """
        with self._cond:
            self._stopping = True
            hit = [j for j in self._jobs.values() if not j.record.done]
            for job in hit:
                job.cancel.set()
                self._finish(job, "interrupted", error="the server stopped while the job was "
                             f"{job.record.state}")
        for _ in self._threads:
            self._queue.put(None)
        end = time.monotonic() + timeout
        for t in (*self._threads, self._requests):
            t.join(max(0.0, end - time.monotonic()))
        self._owner.release()
        return [j.record.id for j in hit]

    # -- internals (call with self._cond held where noted) ---------------------------------------
    def _admit(self, record: JobRecord) -> JobRecord:
        job = _Job(record)
        with self._cond:
            if self._stopping:
                raise FailedPrecondition("the server is shutting down; no new jobs")
            self._jobs[record.id] = job
            self._event(job, "queued")
        self._queue.put(job)
        return job.record

    def _take_requests(self) -> None:
        """Act on the requests other servers of the store leave (:mod:`reuse.jobs.files`), until stopped.
        Their parameters were checked by the server that took the call, with the same kinds."""
        while not self._stopping and self._take_pending():
            time.sleep(REQUEST_POLL_S)

    def _take_pending(self) -> bool:
        """One pass over the waiting requests; False when stopping (what is left waits for the next
        runner)."""
        for action, job_id, path in files.pending_requests(self.dir):
            if self._stopping:
                return False
            body = files.read_request(path)
            try:
                if action == "start" and body is not None and job_id not in self._jobs:
                    record = JobRecord(id=job_id, kind=str(body.get("kind", "")), params=dict(body["params"]),
                                       created=str(body.get("created") or _now()))
                    self._admit(record)
                elif action == "cancel":
                    self.cancel(job_id)
            except (ReuseError, KeyError, TypeError, ValueError) as exc:
                if self._stopping:
                    return False
                log.info("job request %s: %s", path.name, exc)
            path.unlink(missing_ok=True)
        return True

    def _job(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id) if isinstance(job_id, str) and JOB_ID_RE.fullmatch(job_id) else None
        if job is None:
            raise NotFound(f"no job {echo(job_id)}")
        return job

    def _persist(self, job: _Job) -> None:
        job.last_write = time.monotonic()
        try:
            write_json_atomic(self.dir / f"{job.record.id}.json", job.record.to_dict())
        except OSError:
            log.exception("could not write the record of job %s", job.record.id)

    def _event(self, job: _Job, state: str, **fields: Any) -> None:
        """Append an event, update the record, wake watchers; persist state changes. Holds _cond."""
        seq = job.events[-1].seq + 1 if job.events else 1
        ev = JobEvent(job_id=job.record.id, seq=seq, state=state, time=_now(), **fields)
        job.events.append(ev)
        try:
            files.append_event(self.dir, ev)  # before the record, which a reader trusts for "done"
        except OSError:
            log.exception("could not log an event of job %s", job.record.id)
        changed = job.record.state != state or state == "queued"
        job.record = replace(job.record, state=state, last_event=ev)
        if changed or time.monotonic() - job.last_write >= PERSIST_EVERY_S:
            self._persist(job)
        self._cond.notify_all()

    def _finish(self, job: _Job, state: str, *, result: dict[str, Any] | None = None,
                error: str = "") -> None:
        job.record = replace(job.record, finished=_now(), result=dict(result or job.record.result),
                             error=error)
        model = str((result or {}).get("model", "") or "")
        self._event(job, state, model=model, error=error,
                    message=error or (f"registered {model}" if model else state))

    def _progress(self, job: _Job, event: dict[str, Any]) -> None:
        unknown = set(event) - PROGRESS_KEYS
        if unknown:
            log.debug("job %s: ignoring progress keys %s", job.record.id, sorted(unknown))
        fields = progress_fields(event)
        eta = event.get("eta_s")
        if eta is None and fields["epoch"] > 0 and fields["epochs"] >= fields["epoch"]:
            per_epoch = (time.monotonic() - job.t0) / fields["epoch"]
            eta = per_epoch * (fields["epochs"] - fields["epoch"])
        fields["eta_s"] = float(eta) if eta is not None else -1.0
        with self._cond:
            if job.record.state == "running":
                self._event(job, "running", **fields)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            with self._cond:
                if job.record.state != "queued":
                    continue  # cancelled or interrupted while waiting
                job.record = replace(job.record, started=_now())
                job.t0 = time.monotonic()
                self._event(job, "running", message="started")
            self._run(job)

    def _run(self, job: _Job) -> None:
        params = {**job.record.params, "store": str(self.store_root)}
        state, result, error = "succeeded", None, ""
        try:
            fn = self.kinds.get(job.record.kind)
            result = fn(params, lambda ev: self._progress(job, ev), job.cancel)
            if not isinstance(result, dict):
                raise TypeError(f"job kind {job.record.kind!r} returned {type(result).__name__}, not a dict")
            result = json.loads(json.dumps(result, default=str))
        except Cancelled as exc:
            state, error = "cancelled", str(exc) or "cancelled"
        except ReuseError as exc:
            # The class travels in the result, so a remote client can raise the same one.
            state, error, result = "failed", str(exc), {"error_type": type(exc).__name__}
        except Exception:  # noqa: BLE001 - a job's crash must not kill its worker thread
            log.exception("job %s (%s) crashed", job.record.id, job.record.kind)
            state, error = "failed", "internal error (see the server log)"
        with self._cond:
            if job.record.done and state != "succeeded":
                return  # already cancelled or interrupted; keep that state
            if job.record.done:
                error = ""  # finished its work before it saw the stop: the truth is success
            self._finish(job, state, result=result, error=error)

    def _recover(self) -> None:
        for record in read_records(self.dir):
            job = _Job(record)
            with self._cond:
                self._jobs[record.id] = job
                if not record.done:
                    job.cancel.set()
                    self._finish(job, "interrupted",
                                 error=f"the server stopped while the job was {record.state}")
