"""Failure classes shared by every layer of the sidecar: each maps to a gRPC status and an HTTP status."""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Failure classes, with their gRPC status name and HTTP status code."""

    INVALID_ARGUMENT = ("INVALID_ARGUMENT", 400)
    TOO_LARGE = ("INVALID_ARGUMENT", 413)  # a size limit (the message names it)
    UNAUTHENTICATED = ("UNAUTHENTICATED", 401)
    NOT_FOUND = ("NOT_FOUND", 404)
    FAILED_PRECONDITION = ("FAILED_PRECONDITION", 409)
    RESOURCE_EXHAUSTED = ("RESOURCE_EXHAUSTED", 429)
    CANCELLED = ("CANCELLED", 499)
    INTERNAL = ("INTERNAL", 500)
    UNAVAILABLE = ("UNAVAILABLE", 503)
    DEADLINE_EXCEEDED = ("DEADLINE_EXCEEDED", 504)

    @property
    def grpc_name(self) -> str:
        return self.value[0]

    @property
    def http_status(self) -> int:
        return self.value[1]


class SidecarError(Exception):
    """An error with a status class and a message a client can act on."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EngineUnreachable(SidecarError):
    """The engine could not be reached at all (connection refused, timeout): UNAVAILABLE.

    Only this failure, or a failed health probe, marks the engine down; an engine that answers one request
    with an error has failed that request alone. `detail` is for logs, never for clients."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, "the engine is unavailable; retry later")
        self.detail = detail
