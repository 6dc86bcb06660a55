"""The one table between our exception hierarchy and HTTP status codes.

Looked up along the exception's MRO, like the gRPC table (reuse.grpc.status). The codes follow the
HTTP mapping of google.rpc.Code, which the gRPC table's codes come from, so one error answers with the
matching status on both wires: INVALID_ARGUMENT and FAILED_PRECONDITION are 400, NOT_FOUND 404,
ALREADY_EXISTS 409, RESOURCE_EXHAUSTED 429, CANCELLED 499, UNAUTHENTICATED 401, DATA_LOSS and UNKNOWN
500. A body over the cap is 413, from the body reader itself. Anything that is not a ReuseError is a
500 with a generic message; its traceback goes to the server log.
"""

from __future__ import annotations

import logging

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
from reuse.text import cut

log = logging.getLogger(__name__)
MAX_MESSAGE = 4000  # as the gRPC details: a message echoes user values clipped, and this caps the rest


class BodyTooLarge(ReuseError):
    """A request body above the cap: HTTP 413 (it has no gRPC twin: grpc refuses such a message itself)."""


HTTP_OF: dict[type[ReuseError], int] = {
    BodyTooLarge: 413,
    InvalidInput: 400,
    FailedPrecondition: 400,
    Unauthenticated: 401,
    NotFound: 404,
    AlreadyExists: 409,
    ResourceExhausted: 429,
    Cancelled: 499,
    StoreCorrupt: 500,
    ReuseError: 500,
}


def http_error(exc: BaseException, where: str) -> tuple[int, str]:
    """The HTTP status and message a request that raised ``exc`` ends with (unexpected errors logged)."""
    for cls in type(exc).__mro__:
        code = HTTP_OF.get(cls)  # type: ignore[arg-type]
        if code is not None:
            return code, cut(str(exc) or type(exc).__name__, MAX_MESSAGE)
    log.error("unexpected error in %s", where, exc_info=exc)
    return 500, "internal error; the server log has the details"
