"""One exception hierarchy for the whole core.

Adapters map these to their own vocabulary in exactly one place each: the CLI to a one-line
``Error: ...`` (``reuse.cli``), gRPC to status codes (``reuse.grpc.interceptor``). Nothing here knows
about transports.
"""

from __future__ import annotations


class ReuseError(Exception):
    """Base of every error the core raises on purpose."""


class NotFound(ReuseError, LookupError):
    """A model, version, layer, dataset or job that does not exist."""


class AlreadyExists(ReuseError):
    """Something that must be new exists already."""


class InvalidInput(ReuseError, ValueError):
    """Input that is malformed or does not fit what it is used with."""


class InvalidName(InvalidInput):
    """A model name that is not allowed (it could escape the store, or is malformed)."""


class InvalidPattern(InvalidInput):
    """A scope pattern that is invalid or too long."""


class NoLayersMatched(InvalidInput):
    """A scope pattern that matched none of a model's layers."""


class IncompatibleShapes(InvalidInput):
    """Layers or data whose shapes do not connect."""


class UnsafeModel(InvalidInput):
    """A model file that needs arbitrary code to load (e.g. a Lambda layer) without --unsafe."""


class UntrustedClass(UnsafeModel):
    """A model that names a class neither Keras nor a module the operator trusts (--trust-module) defines."""


class StoreCorrupt(ReuseError):
    """A store file or index that is damaged: checksum mismatch, unreadable file, bad layout."""


class Cancelled(ReuseError):
    """Work stopped on request (a cancelled job, an interrupted run)."""


class ResourceExhausted(ReuseError):
    """A limit was hit: message size, memory cap, queue length, time budget."""


class FailedPrecondition(ReuseError):
    """The request is valid but the system is not in a state to do it (e.g. a job already finished)."""


class Unauthenticated(ReuseError):
    """A missing or wrong credential."""


class CheckFailed(ReuseError):
    """A self-check found results that should agree but do not (e.g. served and local predictions)."""
