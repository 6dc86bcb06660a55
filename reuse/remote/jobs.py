"""Helpers of :class:`reuse.remote.RemoteService` for work that runs as server jobs.

- :func:`remote_data`: a data spec as the server can take it (local files are uploaded as datasets).
- :func:`request_options`: the facade's training options as TrainRequest fields (the job kinds' one
  list, ``reuse.jobs.kinds.TRAIN_OPTIONS``).
- :class:`TrainEvents`: job events back to the training events (:mod:`reuse.train.events`) the CLI's
  progress bar reads, from the events' fields (:func:`reuse.jobs.progress.train_event`).
- :func:`follow_job`: watch a job to its end, cancelling it on Ctrl-C or when a cancel event is set.
- :func:`outcome_from_result`: a :class:`reuse.train.output.TrainOutcome` from a train job's result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import reuse.errors as errors
from reuse.data.formats import data_file_format
from reuse.errors import Cancelled, FailedPrecondition, ReuseError
from reuse.jobs import JobEvent, JobRecord
from reuse.jobs.kinds import TRAIN_OPTIONS
from reuse.jobs.progress import train_event
from reuse.train.output import TrainOutcome


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def remote_data(client: Any, spec: str) -> str:
    """``builtin:...`` as given; a local data file uploaded (once per content) and named.

    Raises:
        InvalidInput: no such file, or a format the server cannot store.
    """
    from reuse.data import images
    from reuse.data.builtin import PREFIX

    if spec.startswith(PREFIX):
        return spec
    if spec.startswith(images.PREFIX):
        raise FailedPrecondition(f"{spec}: an image folder is read where the job runs and cannot be "
                                 "sent to a server yet; run the command against a local --store, or send "
                                 "arrays (.npz, .npy or .h5)")
    path = Path(spec)
    fmt = data_file_format(path)
    sha = _sha256(path)
    name = f"upload-{sha[:24]}"
    if any(d.name == name and d.sha256 == sha for d in client.list_datasets()):
        return name
    client.upload_dataset(path, name, format=fmt, overwrite=True, description=f"uploaded from {path.name}")
    return name


def request_options(options: Mapping[str, Any] | None, config: Any = None) -> dict[str, Any]:
    """TrainRequest fields from the facade's ``options`` (or a TrainConfig's non-default fields).

    Raises:
        FailedPrecondition: an option the request cannot carry.
    """
    given = dict(options or {})
    if config is not None:
        defaults = type(config)()
        given.update({f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                      if getattr(config, f.name) != getattr(defaults, f.name)})
    out = {k: v for k, v in given.items() if k in TRAIN_OPTIONS and v is not None}
    if given.get("cache") is False:
        out["no_cache"] = True
    other = sorted(k for k in given if k not in TRAIN_OPTIONS and k != "cache")
    if other:
        raise FailedPrecondition(f"training options {other} are not available with --server; "
                                 f"remote training takes {', '.join(TRAIN_OPTIONS)} and cache")
    return out


class TrainEvents:
    """Turns a train job's events into training events for ``progress`` (None: drop them)."""

    def __init__(self, progress: Callable[[Any], None] | None) -> None:
        self.progress = progress

    def __call__(self, ev: JobEvent) -> None:
        event = train_event(ev) if self.progress is not None else None
        if event is not None:
            self.progress(event)


def job_error(record: JobRecord) -> ReuseError:
    """The exception a finished, unsuccessful job stands for (its class when the server recorded it)."""
    if record.state == "cancelled":
        return Cancelled(f"job {record.id} was cancelled: {record.error}")
    if record.state == "interrupted":
        return FailedPrecondition(f"job {record.id} was interrupted: {record.error}")
    cls = getattr(errors, str(record.result.get("error_type", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, ReuseError)):
        cls = ReuseError
    return cls(record.error or f"job {record.id} {record.state}")


def follow_job(job_id: str, events: Callable[[], Iterator[JobEvent]], get: Callable[[], JobRecord],
               cancel_job: Callable[[], Any], on_event: Callable[[JobEvent], None] | None = None,
               cancel: threading.Event | None = None) -> JobRecord:
    """Follow a job's events to its end; cancel it on Ctrl-C or once ``cancel`` is set.

    Returns:
        the succeeded job's record.

    Raises:
        the job's error (see :func:`job_error`); KeyboardInterrupt after cancelling the job.
    """
    done = threading.Event()

    def cancel_when_asked() -> None:
        while not done.wait(0.2):
            if cancel is not None and cancel.is_set():
                _quietly(cancel_job)
                return

    if cancel is not None:
        threading.Thread(target=cancel_when_asked, name=f"cancel-{job_id}", daemon=True).start()
    try:
        for ev in events():
            if on_event is not None:
                on_event(ev)
    except KeyboardInterrupt:
        _quietly(cancel_job)
        raise
    finally:
        done.set()
    record = get()
    if record.state != "succeeded":
        raise job_error(record)
    return record


def _quietly(fn: Callable[[], Any]) -> None:
    with contextlib.suppress(ReuseError):  # already finished: nothing left to cancel
        fn()


@dataclass(frozen=True)
class RemoteTrainResult:
    """The fields of a TrainResult that a train job reports (no model object: it stays on the server)."""

    metrics: dict[str, float]
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int | None
    stopped_early: bool
    diverged: bool
    seconds: float
    cached_layers: tuple[str, ...] = ()
    unfrozen: tuple[str, ...] = ()
    bn_inference: tuple[str, ...] = ()


def outcome_from_result(result: Mapping[str, Any], info: Any) -> TrainOutcome:
    """The TrainOutcome of a train job, from its result (``TrainOutcome.to_dict()`` on the server)."""
    r = RemoteTrainResult(
        metrics=dict(result.get("metrics") or {}), history=dict(result.get("history") or {}),
        epochs_run=int(result.get("epochs_run") or 0), best_epoch=result.get("best_epoch"),
        stopped_early=bool(result.get("stopped_early")), diverged=bool(result.get("diverged")),
        seconds=float(result.get("seconds") or 0.0), cached_layers=tuple(result.get("cached_layers") or ()),
        unfrozen=tuple(result.get("unfrozen") or ()), bn_inference=tuple(result.get("bn_inference") or ()))
    return TrainOutcome(info=info, parent=str(result.get("parent", "")), result=r, seeds=result.get("seeds"))
