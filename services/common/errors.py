"""Domain errors and the one place they become gRPC status codes.

Domain and store code raise these; the server interceptor turns them into a status with the
message. Anything else escaping a handler is a bug on our side and becomes INTERNAL.
"""

from __future__ import annotations

import grpc


class DomainError(Exception):
    """Base class: a refusal the caller can act on. `code` is the gRPC status it maps to."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """Bad input. The message names the offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    """A rule refused the action. The message starts with the rule's name."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, rule: str, detail: str):
        super().__init__(f"{rule}: {detail}")
        self.rule = rule


class Unavailable(DomainError):
    """A dependency (another service, a provider, the broker) cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE


# A peer's refusal keeps its code and message: the caller asked for something that cannot be
# done, whichever service found out. A peer that is down stays UNAVAILABLE; anything else a
# peer answers (INTERNAL, UNAUTHENTICATED between services, ...) is a fault on our side.
PASSED_ON = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE,
})
UNAVAILABLE_PEER = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# A status message travels in a header (grpc-message, percent-encoded: up to 12 bytes per
# character), and peers and clients refuse headers over 8 KiB by default. Messages that echo
# a caller's value are cut so that the status always arrives with its code.
MAX_MESSAGE_CHARS = 300
MAX_MESSAGE_BYTES = 600


def shorten(message: str) -> str:
    """`message` if it fits MAX_MESSAGE_CHARS characters and MAX_MESSAGE_BYTES of UTF-8, else its
    prefix and how much was cut (the result fits too, so shortening twice changes nothing)."""
    encoded = message.encode("utf-8", "replace")
    if len(message) <= MAX_MESSAGE_CHARS and len(encoded) <= MAX_MESSAGE_BYTES:
        return message
    room = 48  # for the note on what was cut
    cut = message[:MAX_MESSAGE_CHARS - room].encode("utf-8", "replace")[:MAX_MESSAGE_BYTES - room]
    prefix = cut.decode("utf-8", "ignore")
    return f"{prefix}... [{len(message) - len(prefix)} more characters cut]"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a handler's exception is reported with (message shortened)."""
    code, message = _status_for(exc)
    return code, shorten(message)


def _status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, DomainError):
        return exc.code, exc.message
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        code = exc.code()
        detail = (exc.details() if hasattr(exc, "details") else None) or str(exc)
        if code in PASSED_ON:
            return code, detail
        if code in UNAVAILABLE_PEER:
            return grpc.StatusCode.UNAVAILABLE, f"dependency unavailable: {detail}"
        return grpc.StatusCode.INTERNAL, f"dependency call failed ({code.name}): {detail}"
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"
