"""Background jobs: a table of job kinds given to each manager, a bounded worker pool, and records persisted
in the store.

A job kind is a function ``fn(params, progress, cancel) -> result``:

- ``params``: the JSON-able parameters the client gave, plus ``"store"`` (the store folder, a str);
- ``progress(event)``: report progress; ``event`` may hold ``epoch``, ``epochs``, ``losses`` and
  ``metrics`` (dicts of floats), ``eta_s`` and ``message`` (the ETA is estimated when left out);
- ``cancel``: a ``threading.Event`` set when the job is cancelled or the server stops; the kind raises
  :class:`reuse.errors.Cancelled` and must not register a model once it is set;
- ``result``: a JSON-able dict; ``result["model"]`` (``"NAME:VERSION"``) names a registered model.

Records live as one JSON file per job in ``<store>/.reuse/jobs/``, written atomically. A manager that
starts on a store marks the jobs an earlier process left queued or running as ``interrupted``.
"""

from __future__ import annotations

from reuse.atomic import write_json_atomic
from reuse.jobs.kinds import builtin_kinds
from reuse.jobs.manager import JobManager
from reuse.jobs.records import (
    FINISHED,
    STATES,
    JobEvent,
    JobFn,
    JobRecord,
    Progress,
    read_records,
)
from reuse.jobs.registry import JobKinds

__all__ = ["FINISHED", "STATES", "JobEvent", "JobFn", "JobKinds", "JobManager", "JobRecord", "Progress",
           "builtin_kinds", "read_records", "write_json_atomic"]
