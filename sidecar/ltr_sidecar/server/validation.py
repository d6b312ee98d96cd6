"""Request validation, once, for both surfaces: the core calls `validate_request` on every request.

The surfaces only translate their wire format (protobuf, OpenAI JSON) into a `SubmitRequest`; sampling
parameters are checked when their `SamplingParams` is built. Everything else about a request (ids,
prompt or messages, token budget, priority band, hints, deadline) is checked here, with a message
naming the field. Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ltr_sidecar.errors import ErrorCode, SidecarError
from ltr_sidecar.server.config import SidecarConfig
from ltr_sidecar.server.types import SubmitRequest

CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
REQUEST_ID_RULE = "1-128 characters of [A-Za-z0-9._:@/+=-]"


@dataclass(frozen=True)
class RequestLimits:
    """The configured bounds a request is checked against."""

    max_tokens_limit: int
    priority_bands: tuple[int, ...]

    @classmethod
    def from_config(cls, config: SidecarConfig) -> RequestLimits:
        return cls(config.max_tokens_limit, tuple(config.priority_bands))


def invalid(message: str) -> SidecarError:
    """An INVALID_ARGUMENT error (the client's request is wrong)."""
    return SidecarError(ErrorCode.INVALID_ARGUMENT, message)


def check_request_id(request_id: str) -> None:
    """Raise unless `request_id` is empty (the core assigns one) or matches REQUEST_ID_RE."""
    if request_id and not REQUEST_ID_RE.match(request_id):
        raise invalid(f"request_id must be {REQUEST_ID_RULE}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_input(req: SubmitRequest) -> None:
    if (req.prompt is None) == (req.messages is None):
        raise invalid("exactly one of prompt or chat messages must be given")
    if req.prompt is not None:
        if not isinstance(req.prompt, str) or not req.prompt.strip():
            raise invalid("prompt must be a non-empty string")
        return
    msgs = req.messages
    if not isinstance(msgs, list) or not msgs:
        raise invalid("chat messages must be a non-empty list")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise invalid(f"messages[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in CHAT_ROLES:
            raise invalid(
                f"messages[{i}].role must be one of {', '.join(sorted(CHAT_ROLES))}, got {m['role']!r}"
            )
        if not isinstance(m["content"], str):
            raise invalid(f"messages[{i}].content must be a string")
    if not any(m["content"].strip() for m in msgs):
        raise invalid("chat messages hold no text")


def validate_request(req: SubmitRequest, limits: RequestLimits) -> None:
    """Raise SidecarError(INVALID_ARGUMENT) naming the field for a request that cannot be served."""
    if not isinstance(req.request_id, str):
        raise invalid("request_id must be a string")
    check_request_id(req.request_id)
    _check_input(req)
    mt = req.max_tokens
    if not _is_int(mt) or not 1 <= mt <= limits.max_tokens_limit:
        raise invalid(f"max_tokens must be an integer in [1, {limits.max_tokens_limit}], got {mt!r}")
    if req.priority not in limits.priority_bands:
        raise invalid(
            f"unknown priority band {req.priority!r}; configured bands: {list(limits.priority_bands)}"
        )
    eo = req.expected_output_tokens
    if eo is not None and (not _is_int(eo) or eo < 0):
        raise invalid(f"expected_output_tokens must be an integer >= 0, got {eo!r}")
    dl = req.deadline
    if dl is not None and (isinstance(dl, bool) or not isinstance(dl, int | float) or not math.isfinite(dl)):
        raise invalid("deadline must be a Unix timestamp in seconds")
