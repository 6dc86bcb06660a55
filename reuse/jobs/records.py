"""Job records and events, and the types of a job kind (the data of :mod:`reuse.jobs`)."""

from __future__ import annotations

import datetime as _dt
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Progress = Callable[[dict[str, Any]], None]
JobFn = Callable[[dict[str, Any], Progress, threading.Event], dict[str, Any]]
Validator = Callable[[dict[str, Any]], None]

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINISHED = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
# What a training job's progress event stands for (JobEvent.stage); "" for anything else.
STAGES = ("feature_pass", "train_started", "epoch_end", "train_finished")
JOB_ID_RE = re.compile(r"[0-9a-f]{12}")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class JobEvent:
    """One progress or state event of a job; ``seq`` counts from 1.

    A training job's events carry the training event they stand for in fields (``stage``: one of
    ``STAGES``, with the phase's ``task``/``label``/``phase``/``phases``, and what that event knows), so a
    client rebuilds it without reading ``message``, which is for people (:mod:`reuse.jobs.progress`).
    """

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
    stage: str = ""
    task: str = ""
    label: str = ""
    phase: int = 0
    phases: int = 0
    samples: int = 0
    val_samples: int = 0
    steps_per_epoch: int = 0
    cached_layers: tuple[str, ...] = ()
    stopped_early: bool = False
    best_epoch: int = 0  # 0: none
    rows_done: int = 0  # feature_pass: rows computed so far, of rows_total
    rows_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobEvent:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "cached_layers" in fields:
            fields["cached_layers"] = tuple(fields["cached_layers"] or ())
        return cls(**fields)


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


# How each scalar key of a job kind's progress event becomes a JobEvent field (missing or None: its zero).
_PROGRESS_SCALARS: dict[str, Callable[..., Any]] = {
    "epoch": int, "epochs": int, "message": str, "stage": str, "task": str, "label": str, "phase": int,
    "phases": int, "samples": int, "val_samples": int, "steps_per_epoch": int, "stopped_early": bool,
    "best_epoch": int}
PROGRESS_KEYS = frozenset({*_PROGRESS_SCALARS, "losses", "metrics", "cached_layers", "eta_s"})


def progress_fields(event: Mapping[str, Any]) -> dict[str, Any]:
    """The JobEvent fields of a job kind's ``progress(event)``, but ``eta_s`` (the manager estimates it
    when left out); keys outside ``PROGRESS_KEYS`` are dropped."""
    out: dict[str, Any] = {k: conv(event.get(k) or conv()) for k, conv in _PROGRESS_SCALARS.items()}
    for key in ("losses", "metrics"):
        out[key] = {str(k): float(v) for k, v in (event.get(key) or {}).items()}
    out["cached_layers"] = tuple(str(x) for x in event.get("cached_layers") or ())
    return out


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
