"""The one table between our exception hierarchy and gRPC status codes, used both ways.

The server interceptor looks an exception's class up along its MRO (so subclasses such as InvalidName
get their parent's code); the client turns a status code back into the matching exception class.
"""

from __future__ import annotations

import grpc

from reuse.errors import (
    AlreadyExists,
    Cancelled,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    ResourceExhausted,
    ReuseError,
    StoreCorrupt,
    Unauthenticated,
)

STATUS_OF: dict[type[ReuseError], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    StoreCorrupt: grpc.StatusCode.DATA_LOSS,
    Cancelled: grpc.StatusCode.CANCELLED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    ReuseError: grpc.StatusCode.UNKNOWN,
}
ERROR_OF: dict[grpc.StatusCode, type[ReuseError]] = {code: cls for cls, code in reversed(STATUS_OF.items())}


def status_of(exc: BaseException) -> grpc.StatusCode | None:
    """The status code for one of our exceptions (nearest class in its MRO), or None for others."""
    for cls in type(exc).__mro__:
        code = STATUS_OF.get(cls)  # type: ignore[arg-type]
        if code is not None:
            return code
    return None


def error_of(code: grpc.StatusCode, details: str) -> ReuseError:
    """The exception a client raises for a failed call: ours by code, else a plain ReuseError."""
    cls = ERROR_OF.get(code, ReuseError)
    text = details or code.name
    if cls is ReuseError and code not in (grpc.StatusCode.UNKNOWN,):
        text = f"{code.name}: {text}"
    return cls(text)
