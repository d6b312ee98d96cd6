"""Failure classes shared by every layer of the sidecar: each maps to a gRPC status and an HTTP status."""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Failure classes, with their gRPC status name and HTTP status code."""

    INVALID_ARGUMENT = ("INVALID_ARGUMENT", 400)
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
