"""The facade the adapters call: :class:`Service` (:mod:`reuse.service.local`), one method per
operation on a local store; :class:`~reuse.service.protocol.Facade`, what the CLI calls, which
``Service`` and :class:`reuse.remote.RemoteService` both satisfy; :mod:`reuse.service.state`, what a
serving process holds beside its store (the inference engine, the job desk)."""

from __future__ import annotations

from reuse.service.local import Service

__all__ = ["Service"]
