"""Surface-neutral request/response types shared by the core and the gRPC/HTTP surfaces.

The core (`SchedulerCore`) speaks only these types; each surface translates its wire format
(protobuf, OpenAI JSON) to and from them, and maps `SidecarError.code` to its status codes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class SubmitRequest:
    """One generation request, as the core sees it.

    Exactly one of `prompt` (completions) or `messages` (chat, OpenAI format dicts with `role`
    and `content`) is set. `deadline` is a Unix timestamp (seconds) or None.
    `sampling` holds engine pass-through parameters: temperature, top_p, top_k, stop, seed,
    ignore_eos, presence_penalty, frequency_penalty (absent keys = engine defaults).
    """

    request_id: str
    max_tokens: int
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    deadline: float | None = None
    expected_output_tokens: int | None = None
    model: str | None = None
    no_trace: bool = False

    def rank_text(self) -> str:
        """The text the predictor scores: the prompt, or the chat messages joined."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in self.messages or [])


@dataclass
class SchedulingInfo:
    """Explainability for one scheduling decision (score: higher = shorter expected output)."""

    score: float
    rank_at_arrival: int
    queue_wait_s: float
    promoted: bool
    policy: str
    predictor_version: str
    priority: int


@dataclass
class TokenChunk:
    """Newly generated text from the engine stream."""

    text: str
    tokens: int = 1


@dataclass
class FinalResult:
    """Last event of every stream. finish_reason: "stop" | "length" | "cancelled" | "error"."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    scheduling: SchedulingInfo
    ttft_s: float
    total_s: float
    error: str = ""


StreamEvent = TokenChunk | FinalResult
