"""The files through which the servers of one store share its jobs (all in ``<store>/.reuse/jobs/``).

- ``<id>.json``: the job's record, written atomically by the server that runs the jobs (the runner).
- ``<id>.events.jsonl``: every event of the job, one JSON object a line, appended by the runner before
  it writes the record, so a reader that saw the record finished has seen every event.
- ``requests/<id>.start.json`` / ``requests/<id>.cancel.json``: a job to start or to cancel, written
  atomically by any other server on the store (a replica); the runner takes each, acts on it and
  deletes it.
- ``runner.json``: which process runs the jobs (pid, host, since when), for start-up lines and logs.

The runner is whichever process holds ``.manager.lock`` (:class:`reuse.jobs.manager.JobManager`).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from reuse.atomic import write_json_atomic
from reuse.jobs.records import JOB_ID_RE, JobEvent, JobRecord, _now

REQUESTS = "requests"
ACTIONS = ("start", "cancel")


def event_log(jobs_dir: Path, job_id: str) -> Path:
    return Path(jobs_dir) / f"{job_id}.events.jsonl"


def append_event(jobs_dir: Path, event: JobEvent) -> None:
    """One line per event; a reader only takes lines that end in a newline."""
    with open(event_log(jobs_dir, event.job_id), "a", encoding="utf-8") as f:
        f.write(json.dumps(event.to_dict(), sort_keys=True) + "\n")


def read_events(jobs_dir: Path, job_id: str, after_seq: int = 0) -> list[JobEvent] | None:
    """The logged events with ``seq > after_seq``, in order; None when the job has no log."""
    try:
        text = event_log(jobs_dir, job_id).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    out = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # being written
        try:
            ev = JobEvent.from_dict(json.loads(line))
        except (ValueError, TypeError):
            continue
        if ev.seq > after_seq:
            out.append(ev)
    return out


def read_record(jobs_dir: Path, job_id: str) -> JobRecord | None:
    """One job's record, or None (no such job, or not a job id)."""
    if not (isinstance(job_id, str) and JOB_ID_RE.fullmatch(job_id)):
        return None
    try:
        return JobRecord.from_dict(
            json.loads((Path(jobs_dir) / f"{job_id}.json").read_text(encoding="utf-8"))
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def request_path(jobs_dir: Path, job_id: str, action: str) -> Path:
    return Path(jobs_dir) / REQUESTS / f"{job_id}.{action}.json"


def write_request(jobs_dir: Path, job_id: str, action: str, body: dict[str, Any]) -> Path:
    """Leave a request for the runner (atomically: it sees the whole file or none)."""
    path = request_path(jobs_dir, job_id, action)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {**body, "id": job_id})
    return path


def pending_requests(jobs_dir: Path) -> list[tuple[str, str, Path]]:
    """``(action, job id, file)`` of every request waiting, starts first, oldest first within each."""
    folder = Path(jobs_dir) / REQUESTS
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else ():
        job_id, _, action = path.name[: -len(".json")].partition(".")
        if JOB_ID_RE.fullmatch(job_id) and action in ACTIONS:
            try:
                found.append((ACTIONS.index(action), path.stat().st_mtime_ns, action, job_id, path))
            except FileNotFoundError:
                continue  # taken meanwhile
    return [(a, i, p) for _, _, a, i, p in sorted(found)]


def read_request(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def write_runner_note(jobs_dir: Path) -> None:
    write_json_atomic(Path(jobs_dir) / "runner.json", {"pid": os.getpid(), "host": socket.gethostname(),
                                                       "since": _now()})


def runner_note(jobs_dir: Path) -> dict[str, Any]:
    """What the runner wrote about itself (empty if nothing could be read)."""
    body = read_request(Path(jobs_dir) / "runner.json")
    return body or {}
