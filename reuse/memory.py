"""The process's memory budget: ``REUSE_MEMORY_MB`` (or a command's ``--memory-mb``).

One number caps the whole process: the runtime (Keras, its backend, loaded models) plus whatever a pass
over data holds at once (a batch's activations, decoded images, cached features). Every pass outside the
training loop sizes its batch from what the budget leaves (:meth:`MemoryBudget.rows_for`); training
decides from it whether cached features stay in memory or are read back from disk in chunks; and a job
whose bounded footprint cannot fit is refused before it starts, with the number it would need.

Passes that run at the same time in one process (jobs of a server) reserve what they hold
(:meth:`MemoryBudget.reserve`), so two of them never plan with the same megabytes.

The default is :data:`DEFAULT_SHARE` of the machine's memory (the cgroup limit where one is set), at
least :data:`MIN_DEFAULT_MB`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from reuse.errors import InvalidInput, ResourceExhausted

ENV_MEMORY_MB = "REUSE_MEMORY_MB"
DEFAULT_SHARE = 0.25
MIN_DEFAULT_MB = 2048
MiB = 1024 * 1024


def machine_bytes() -> int | None:
    """Memory this process may use at most: physical memory, or the cgroup's limit when lower."""
    limits = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            limits.append(int(text))
    return min(limits) if limits else None


def process_rss() -> int:
    """This process's resident memory now, in bytes (its peak where the current value cannot be read)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def default_mb() -> int:
    total = machine_bytes()
    if total is None:
        return MIN_DEFAULT_MB
    return max(MIN_DEFAULT_MB, int(total * DEFAULT_SHARE / MiB))


def parse_mb(value: object, where: str) -> int:
    """A whole number of megabytes >= 1, from a flag or the environment.

    Raises:
        InvalidInput: not a whole positive number; the message names ``where``.
    """
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        from reuse.text import echo

        raise InvalidInput(f"{where} must be a whole number of megabytes, at least 1; received {echo(text)}")
    return int(text)


def fmt_bytes(n: float) -> str:
    """``n`` bytes as a short text (``1.5 GiB``, ``320 MiB``, ``12 KiB``)."""
    for unit, size in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


@dataclass
class MemoryBudget:
    """A cap on the process's memory and what the passes running now have reserved of it.

    Attributes:
        total: the cap in bytes.
        origin: where it came from, for messages (``--memory-mb 512``, ``REUSE_MEMORY_MB=512``, ``default``).
    """

    total: int
    origin: str = "default"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._reserved = 0

    @classmethod
    def from_settings(cls, mb: int | str | None = None) -> MemoryBudget:
        """The budget of ``mb`` (a flag's value), else ``$REUSE_MEMORY_MB``, else the default.

        Raises:
            InvalidInput: a value that is not a whole number of megabytes >= 1.
        """
        if mb is not None:
            n = parse_mb(mb, "--memory-mb")
            return cls(n * MiB, f"--memory-mb {n}")
        raw = os.environ.get(ENV_MEMORY_MB, "").strip()
        if raw:
            n = parse_mb(raw, ENV_MEMORY_MB)
            return cls(n * MiB, f"{ENV_MEMORY_MB}={n}")
        return cls(default_mb() * MiB, f"the default ({DEFAULT_SHARE:.0%} of this machine's memory)")

    @property
    def mb(self) -> int:
        return self.total // MiB

    def available(self) -> int:
        """Bytes left now: the cap less what the process holds and what running passes reserved."""
        with self._lock:
            reserved = self._reserved
        return self.total - process_rss() - reserved

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the duration (another pass planning meanwhile sees less)."""
        with self._lock:
            self._reserved += nbytes
        try:
            yield
        finally:
            with self._lock:
                self._reserved -= nbytes

    def rows_for(self, bytes_per_row: int, *, what: str, share: float = 0.5, cap: int = 4096,
                 fixed: int = 0) -> int:
        """How many rows a pass may hold at once: ``share`` of what is available, less ``fixed`` bytes it
        needs whatever its rows, divided by ``bytes_per_row``; at most ``cap``.

        Raises:
            ResourceExhausted: not even one row fits; the message says how much the budget must be.
        """
        per_row = max(1, int(bytes_per_row))
        room = int(self.available() * share) - fixed
        rows = room // per_row
        if rows < 1:
            self.refuse(f"{what} needs {fmt_bytes(per_row + fixed)} for one row", per_row + fixed, share)
        return int(min(cap, rows))

    def refuse(self, need_text: str, need: int, share: float = 1.0) -> None:
        """Raise the one-line refusal for a pass that needs ``need`` bytes of ``share`` of the budget.

        Raises:
            ResourceExhausted: always.
        """
        used = process_rss()
        enough = (used + need / share) * 1.1 / MiB  # a margin: the process grows a little as it works
        raise ResourceExhausted(
            f"{need_text}, but the memory budget ({self.origin}: {fmt_bytes(self.total)}) leaves "
            f"{fmt_bytes(max(0, self.available()))} with the process already using {fmt_bytes(used)}; "
            f"give at least --memory-mb {int(enough) + 1} (or REUSE_MEMORY_MB), or use smaller inputs "
            "(a smaller image size, a smaller --batch-size)")


_PROCESS: MemoryBudget | None = None
_PROCESS_LOCK = threading.Lock()


def process_budget() -> MemoryBudget:
    """The budget of this process: set by :func:`set_process_budget` (a command's flag), else from the
    environment (read once)."""
    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is None:
            _PROCESS = MemoryBudget.from_settings()
        return _PROCESS


def set_process_budget(mb: int | str | None) -> MemoryBudget:
    """Set this process's budget from a flag's value (``None``: the environment or the default)."""
    return set_budget(MemoryBudget.from_settings(mb))


def set_budget(budget: MemoryBudget) -> MemoryBudget:
    """Make ``budget`` this process's budget (and return it)."""
    global _PROCESS
    with _PROCESS_LOCK:
        _PROCESS = budget
    return budget
