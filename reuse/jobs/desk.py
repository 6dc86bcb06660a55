"""The jobs of a store as one server sees them, whichever server of the store runs them.

Several servers may serve one store (``reuse serve --processes N``, or servers on several hosts over
one shared store folder). Exactly one of them runs its jobs: the one holding the store's jobs lock, a
:class:`reuse.jobs.manager.JobManager`. The others are serving replicas; their :class:`JobDesk` takes the
same calls and answers them from the job files on disk (:mod:`reuse.jobs.files`), so a client sees
the same jobs whichever server it reaches:

- start: the parameters are checked here, with the same kinds and validators, so a bad one is refused
  at once; then a start request is left for the runner, and the call returns once the runner has
  written the job's record (it looks every ``REQUEST_POLL_S``), so every server lists the job after it;
- cancel: a cancel request, answered once the runner has acted on it;
- get, list, watch: the records and event logs the runner writes (a replica polls every
  ``EVENT_POLL_S``), plus the start requests not taken yet (as ``queued``).

A replica tries to take the lock every ``TAKEOVER_EVERY_S``; when the runner stops or dies, one
replica becomes the runner (marking what the old one left running ``interrupted``, as a restarted
server does) and takes the requests left meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from reuse.errors import FailedPrecondition, NotFound
from reuse.jobs import files
from reuse.jobs.manager import JobManager, prepare_params
from reuse.jobs.records import JobEvent, JobRecord, _now, read_records
from reuse.jobs.registry import JobKinds
from reuse.text import echo

log = logging.getLogger(__name__)
EVENT_POLL_S = 0.1
TAKEOVER_EVERY_S = 1.0
PICKUP_TIMEOUT_S = 10.0
T = TypeVar("T")


class JobDesk:
    """A :class:`JobManager` when this process holds the store's jobs lock, else a replica's view.

    Args: as :class:`JobManager`; ``takeover_every_s``: how often a replica tries to become the runner.
    """

    def __init__(self, jobs_dir: Path, store_root: Path | str, *, workers: int = 2,
                 kinds: JobKinds | None = None, takeover_every_s: float = TAKEOVER_EVERY_S) -> None:
        self.dir = Path(jobs_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store_root = store_root if isinstance(store_root, str) else Path(store_root)  # str: a URL
        self.kinds = kinds if kinds is not None else JobKinds()
        self.workers = workers
        self._manager: JobManager | None = None
        self._stop = threading.Event()
        self._take_over()
        self._watcher: threading.Thread | None = None
        if self._manager is None:
            self._watcher = threading.Thread(target=self._watch_runner, args=(takeover_every_s,),
                                             name="job-takeover", daemon=True)
            self._watcher.start()

    @property
    def runs_jobs(self) -> bool:
        """Whether this process runs the store's jobs (now; a replica may take over later)."""
        return self._manager is not None

    def runner(self) -> dict[str, Any]:
        """What the runner wrote about itself: ``pid``, ``host``, ``since`` (empty if unknown)."""
        return files.runner_note(self.dir)

    # -- the JobManager calls --------------------------------------------------------------------
    def start(self, kind: str, params: dict[str, Any]) -> JobRecord:
        if (m := self._manager) is not None:
            return m.start(kind, params)
        self._refuse_if_stopping()
        params = prepare_params(self.kinds, kind, params, self.store_root)
        job_id, created = uuid.uuid4().hex[:12], _now()
        files.write_request(self.dir, job_id, "start", {"kind": kind, "params": params, "created": created})
        record = _poll(lambda: files.read_record(self.dir, job_id), PICKUP_TIMEOUT_S)
        if record is None:
            log.warning("job %s: no server has taken its start request yet (is the runner alive?)", job_id)
        return record or JobRecord(id=job_id, kind=kind, params=params, created=created)

    def get(self, job_id: str) -> JobRecord:
        if (m := self._manager) is not None:
            return m.get(job_id)
        record = files.read_record(self.dir, job_id) or self._pending(job_id)
        if record is None:
            raise NotFound(f"no job {echo(job_id)}")
        return record

    def list(self, *, state: str = "", kind: str = "") -> list[JobRecord]:
        if (m := self._manager) is not None:
            return m.list(state=state, kind=kind)
        records = {r.id: r for r in read_records(self.dir)}
        for action, job_id, _ in files.pending_requests(self.dir):
            if action == "start" and job_id not in records:
                pending = self._pending(job_id)
                if pending is not None:
                    records[job_id] = pending
        return sorted(
            (r for r in records.values() if (not state or r.state == state) and (not kind or r.kind == kind)),
            key=lambda r: (r.created, r.id),
        )

    def cancel(self, job_id: str) -> JobRecord:
        if (m := self._manager) is not None:
            return m.cancel(job_id)
        record = self.get(job_id)
        if record.done:
            raise FailedPrecondition(f"job {job_id} already finished ({record.state}); nothing to cancel")
        path = files.write_request(self.dir, job_id, "cancel", {})
        if not _poll(lambda: not path.exists(), PICKUP_TIMEOUT_S):
            log.warning("job %s: no server has taken its cancel request yet (is the runner alive?)", job_id)
        return self.get(job_id)

    def events(
        self, job_id: str, after_seq: int = 0, timeout: float | None = None
    ) -> tuple[list[JobEvent], bool]:
        """As :meth:`JobManager.events`, from the job's event log (its last event if it has none)."""
        if (m := self._manager) is not None:
            return m.events(job_id, after_seq, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.get(job_id)  # first: a finished record means the log is complete
            new = files.read_events(self.dir, job_id, after_seq)
            if new is None:
                last = record.last_event
                new = [last] if last is not None and last.seq > after_seq else []
            if new or record.done:
                return new, record.done
            if deadline is not None and time.monotonic() >= deadline:
                return [], False
            time.sleep(EVENT_POLL_S)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        if (m := self._manager) is not None:
            return m.wait(job_id, timeout)
        _poll(lambda: self.get(job_id).done, timeout)
        return self.get(job_id)

    def shutdown(self, timeout: float = 5.0) -> list[str]:
        """Stop trying to take over; as a runner, :meth:`JobManager.shutdown`. Returns the ids interrupted."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout)
        m = self._manager
        return m.shutdown(timeout) if m is not None else []

    # -- internals -------------------------------------------------------------------------------
    def _refuse_if_stopping(self) -> None:
        if self._stop.is_set():
            raise FailedPrecondition("the server is shutting down; no new jobs")

    def _pending(self, job_id: str) -> JobRecord | None:
        body = files.read_request(files.request_path(self.dir, job_id, "start"))
        if body is None:
            return None
        return JobRecord(id=job_id, kind=str(body.get("kind", "")), params=dict(body.get("params") or {}),
                         created=str(body.get("created", "")))

    def _take_over(self) -> bool:
        try:
            manager = JobManager(self.dir, self.store_root, workers=self.workers, kinds=self.kinds)
        except FailedPrecondition:
            return False
        if self._stop.is_set():  # stopped while taking over: give the jobs back at once
            manager.shutdown(0.0)
            return False
        self._manager = manager
        return True

    def _watch_runner(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            if self._take_over():
                log.warning("the server running the jobs of store %s stopped; this process runs them now",
                            self.store_root)
                return


def _poll(check: Callable[[], T], timeout: float | None, every_s: float = 0.02) -> T | None:
    """``check()`` until it returns something true or ``timeout`` passes; its last answer."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        answer = check()
        if answer or (deadline is not None and time.monotonic() >= deadline):
            return answer or None
        time.sleep(every_s)
