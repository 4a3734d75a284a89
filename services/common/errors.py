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


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a handler's exception is reported with."""
    if isinstance(exc, DomainError):
        return exc.code, exc.message
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        # A downstream call failed. Its caller-facing meaning is "a dependency failed",
        # except when the dependency is down, which stays UNAVAILABLE.
        code = exc.code()
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return grpc.StatusCode.UNAVAILABLE, f"dependency unavailable: {detail}"
        return grpc.StatusCode.INTERNAL, f"dependency call failed ({code.name}): {detail}"
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"
