"""What a serving process holds beside its store: the inference engine, the job manager and its job
kinds (or, where another server of the store runs its jobs, a desk that hands them to it:
reuse.jobs.desk), and the upload policy. The facade (:class:`reuse.service.Service`) keeps the
operations and asks its server state for this; the gRPC server closes the state when it stops.

Both the engine and the job manager are made on first use, under one lock, so a command-line process
that never serves pays for neither. Without a started job manager (a local command, not a server), the
job records are read from the store's jobs folder without touching them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reuse.errors import FailedPrecondition, NotFound
from reuse.jobs.records import read_records
from reuse.jobs.registry import JobKinds
from reuse.store import ModelStore
from reuse.store.uploads import DEFAULT_MAX_UPLOAD_BYTES, Upload
from reuse.text import echo

if TYPE_CHECKING:
    from reuse.jobs import JobEvent, JobRecord
    from reuse.jobs.desk import JobDesk
    from reuse.serving.engine import InferenceEngine, ServingOptions


@dataclass(frozen=True)
class StateSettings:
    """How a server runs jobs and takes uploads (flags of ``reuse serve``)."""

    job_workers: int = 2
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    allow_unsafe_uploads: bool = False
    # imported at start; their Keras classes may be loaded (with the env's)
    trusted_modules: tuple[str, ...] = ()
    run_unsafe: bool = False  # run the Lambda layers of stored models (serve --unsafe)


class ServerState:
    """The serving state of one process over one store.

    Args:
        store: the store it serves.
        kinds: the job kinds its job manager runs (whoever makes the state decides; the facade
            passes :func:`reuse.jobs.kinds.builtin_kinds`).
    """

    def __init__(self, store: ModelStore, kinds: JobKinds | None = None) -> None:
        self.store = store
        self.kinds = kinds if kinds is not None else JobKinds()
        self.serving_options: ServingOptions | None = None
        self.settings = StateSettings()
        self._engine: InferenceEngine | None = None
        self._jobs: JobDesk | None = None
        self._lock = threading.Lock()

    def configure(self, options: ServingOptions | None = None, settings: StateSettings | None = None) -> None:
        """Settings of the server this state backs; call before the first request."""
        self.serving_options = options
        self.settings = settings or StateSettings()

    # -- inference -------------------------------------------------------------------------------
    @property
    def engine(self) -> InferenceEngine:
        with self._lock:
            if self._engine is None:
                from reuse.serving.engine import InferenceEngine

                self._engine = InferenceEngine(self.store, self.serving_options)
            return self._engine

    def forget(self, ref: str) -> None:
        """Drop a deleted version from the serving cache, if an engine has loaded it."""
        if self._engine is not None:
            self._engine.forget(ref)

    def serving_stats(self) -> dict[str, Any]:
        engine = self._engine
        if engine is None:
            return {"models": {}, "cache_bytes": 0, "cache_limit_bytes": 0}
        return {"models": {k: vars(v) for k, v in engine.stats().items()}, "cache_bytes": engine.cache.nbytes,
                "cache_limit_bytes": engine.cache.limit_bytes}

    # -- uploads ---------------------------------------------------------------------------------
    def open_upload(self) -> Upload:
        """A staging file in the store, capped at ``max_upload_bytes``."""
        return Upload(self.store.state_dir / "uploads", self.settings.max_upload_bytes)

    def check_unsafe_upload(self, unsafe: bool) -> None:
        """Refuse an upload marked unsafe unless this server accepts them."""
        if unsafe and not self.settings.allow_unsafe_uploads:
            raise FailedPrecondition("this server refuses unsafe models (they run code when loaded); "
                                     "start it with --allow-unsafe-uploads to accept them")

    # -- jobs ------------------------------------------------------------------------------------
    @property
    def jobs(self) -> JobDesk:
        """The store's jobs as this process sees them, from first use: run here if no other server of the
        store runs them (this process then takes over the job records), else handed to the one that does
        (a serving replica; see reuse.jobs.desk)."""
        with self._lock:
            if self._jobs is None:
                from reuse.jobs.desk import JobDesk

                self._jobs = JobDesk(self.store.state_dir / "jobs", self.store.root,
                                     workers=self.settings.job_workers, kinds=self.kinds)
            return self._jobs

    def jobs_line(self) -> str:
        """Which process runs the store's jobs, as ``reuse serve`` says at start-up."""
        desk = self.jobs
        if desk.runs_jobs:
            return f"jobs: run by this process (pid {os.getpid()})"
        note = desk.runner()
        who = f"pid {note.get('pid', '?')} on {note.get('host', '?')}"
        return (f"jobs: run by another server of this store ({who}); this process is a serving replica "
                "and takes the jobs over if that server stops")

    def start_job(self, kind: str, params: dict[str, Any]) -> JobRecord:
        return self.jobs.start(kind, params)

    def list_jobs(self, *, state: str = "", kind: str = "") -> list[JobRecord]:
        """Jobs oldest first; without a started manager, read from the records without touching them."""
        if self._jobs is not None:
            return self._jobs.list(state=state, kind=kind)
        return sorted((r for r in read_records(self.store.state_dir / "jobs")
                       if (not state or r.state == state) and (not kind or r.kind == kind)),
                      key=lambda r: (r.created, r.id))

    def get_job(self, job_id: str) -> JobRecord:
        if self._jobs is not None:
            return self._jobs.get(job_id)
        for r in self.list_jobs():
            if r.id == job_id:
                return r
        raise NotFound(f"no job {echo(job_id)} in store {self.store.root}")

    def cancel_job(self, job_id: str) -> JobRecord:
        if self._jobs is None:
            raise FailedPrecondition("jobs run inside a server; cancel them with --server HOST:PORT")
        return self._jobs.cancel(job_id)

    def watch_job(self, job_id: str, *, after_seq: int = 0) -> Iterator[JobEvent]:
        """The job's events until it finishes (without a started manager: its last event)."""
        if self._jobs is None:
            last = self.get_job(job_id).last_event
            yield from ([last] if last is not None else [])
            return
        while True:
            events, done = self._jobs.events(job_id, after_seq, timeout=1.0)
            yield from events
            after_seq = events[-1].seq if events else after_seq
            if done and not events:
                return

    # -- stopping --------------------------------------------------------------------------------
    def close(self, *, job_timeout: float = 5.0) -> list[str]:
        """Stop serving: mark running jobs interrupted, unload models. Returns the interrupted job ids."""
        interrupted = self._jobs.shutdown(job_timeout) if self._jobs is not None else []
        if self._engine is not None:
            self._engine.close()
        return interrupted
