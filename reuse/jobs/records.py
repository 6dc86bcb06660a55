"""Job records and events, and the types of a job kind (the data of :mod:`reuse.jobs`)."""

from __future__ import annotations

import datetime as _dt
import json
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Progress = Callable[[dict[str, Any]], None]
JobFn = Callable[[dict[str, Any], Progress, threading.Event], dict[str, Any]]
Validator = Callable[[dict[str, Any]], None]

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINISHED = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
JOB_ID_RE = re.compile(r"[0-9a-f]{12}")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class JobEvent:
    """One progress or state event of a job; ``seq`` counts from 1."""

    job_id: str
    seq: int
    state: str
    epoch: int = 0
    epochs: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    eta_s: float = -1.0
    message: str = ""
    model: str = ""
    error: str = ""
    time: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobEvent:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class JobRecord:
    """What is known of one job; persisted as JSON."""

    id: str
    kind: str
    params: dict[str, Any]
    state: str = "queued"
    created: str = ""
    started: str = ""
    finished: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    last_event: JobEvent | None = None

    @property
    def model(self) -> str:
        return str(self.result.get("model", "") or "")

    @property
    def done(self) -> bool:
        return self.state in FINISHED

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobRecord:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if fields.get("last_event"):
            fields["last_event"] = JobEvent.from_dict(fields["last_event"])
        return cls(**fields)


def read_records(jobs_dir: Path) -> list[JobRecord]:
    """The job records in a folder, read-only (no recovery); unreadable files are skipped."""
    out = []
    for path in sorted(Path(jobs_dir).glob("*.json")) if Path(jobs_dir).is_dir() else ():
        if JOB_ID_RE.fullmatch(path.stem):
            try:
                out.append(JobRecord.from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError, KeyError):
                continue
    return out
