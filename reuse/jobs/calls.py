"""The job operations of the facade (:class:`reuse.service.protocol.Facade`), as both facades answer them:
passed on to a :class:`JobHost`, the local :class:`reuse.service.state.ServerState` or the client of a server
(:class:`reuse.remote.ReuseClient`), which take the same calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from reuse.jobs.records import JobEvent, JobRecord


class JobHost(Protocol):
    """Where a facade's job calls go; it takes them as the facade does."""

    def start_job(self, kind: str, params: dict[str, Any]) -> JobRecord: ...

    def list_jobs(self, *, state: str = "", kind: str = "") -> list[JobRecord]: ...

    def get_job(self, job_id: str) -> JobRecord: ...

    def cancel_job(self, job_id: str) -> JobRecord: ...

    def watch_job(self, job_id: str, *, after_seq: int = 0) -> Iterator[JobEvent]: ...


class JobCalls:
    """The job operations of a facade, passed on to its ``job_host``."""

    job_host: JobHost

    def start_job(self, kind: str, params: dict[str, Any]) -> JobRecord:
        return self.job_host.start_job(kind, params)

    def list_jobs(self, *, state: str = "", kind: str = "") -> list[JobRecord]:
        """Jobs oldest first (locally without a started job manager: read from the records)."""
        return self.job_host.list_jobs(state=state, kind=kind)

    def get_job(self, job_id: str) -> JobRecord:
        return self.job_host.get_job(job_id)

    def cancel_job(self, job_id: str) -> JobRecord:
        return self.job_host.cancel_job(job_id)

    def watch_job(self, job_id: str, *, after_seq: int = 0) -> Iterator[JobEvent]:
        """The job's events until it finishes (locally without a started job manager: its last event)."""
        return self.job_host.watch_job(job_id, after_seq=after_seq)

    def start_train(self, params: dict[str, Any]) -> JobRecord:
        return self.start_job("train", params)

    def start_finetune(self, params: dict[str, Any]) -> JobRecord:
        return self.start_job("finetune", params)

    def start_advise(self, params: dict[str, Any]) -> JobRecord:
        return self.start_job("advise", params)

    def start_rank(self, params: dict[str, Any]) -> JobRecord:
        return self.start_job("rank", params)
