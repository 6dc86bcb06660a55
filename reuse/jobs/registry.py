"""The job kinds one :class:`reuse.jobs.JobManager` can run: a table handed to it when it is made.

There is no global registry: whoever builds the manager (a server's runtime) decides which
kinds it runs (:func:`reuse.jobs.kinds.builtin_kinds` plus any of its own), and a test can give a
manager a kind without other managers seeing it.
"""

from __future__ import annotations

import re
import threading

from reuse.errors import FailedPrecondition, InvalidInput
from reuse.jobs.records import JobFn, Validator
from reuse.text import echo


class JobKinds:
    """Kind name -> job function, and an optional start-time validator for each."""

    def __init__(self) -> None:
        self._fns: dict[str, JobFn] = {}
        self._validators: dict[str, Validator] = {}
        self._lock = threading.Lock()

    def register(self, kind: str, fn: JobFn, *, replace: bool = False,
                 validate: Validator | None = None) -> None:
        """Make ``kind`` startable. Raises InvalidInput if it exists (unless ``replace``) or is malformed.

        ``validate(params)`` (params with ``"store"``) runs when a job is started, before it is queued, so
        a bad parameter is refused at once (InvalidInput, NotFound) instead of failing the job later.
        """
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", kind or ""):
            raise InvalidInput(f"invalid job kind {kind!r}: expected 1-32 of a-z, 0-9, '_', '-'")
        with self._lock:
            if kind in self._fns and not replace and self._fns[kind] is not fn:
                raise InvalidInput(f"job kind {kind!r} is already registered")
            self._fns[kind] = fn
            if validate is not None:
                self._validators[kind] = validate
            else:
                self._validators.pop(kind, None)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._fns)

    def get(self, kind: str) -> JobFn:
        """The function of a kind; raises FailedPrecondition naming the kinds there are."""
        with self._lock:
            fn = self._fns.get(kind)
            known = ", ".join(sorted(self._fns)) or "(none)"
        if fn is None:
            raise FailedPrecondition(f"job kind {echo(kind)} is not available on this server; kinds: {known}")
        return fn

    def validator(self, kind: str) -> Validator | None:
        """The start-time check of a kind, if it has one."""
        with self._lock:
            return self._validators.get(kind)
