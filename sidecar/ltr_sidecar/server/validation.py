"""Request validation, once, for both surfaces: the core calls `validate_request` on every request.

The surfaces only translate their wire format (protobuf, OpenAI JSON) into a `SubmitRequest`; sampling
parameters are checked when their `SamplingParams` is built. Everything else about a request (ids,
prompt or messages, token budget, priority band, hints, deadline) is checked here, with a message
naming the field. Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ltr_sidecar.errors import ErrorCode, SidecarError
from ltr_sidecar.server.config import SidecarConfig
from ltr_sidecar.server.types import SubmitRequest

CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
REQUEST_ID_RULE = "1-128 characters of [A-Za-z0-9._:@/+=-]"
MAX_MESSAGES = 1024


@dataclass(frozen=True)
class RequestLimits:
    """The bounds a request is checked against (`context_length`: the engine's, when known)."""

    max_tokens_limit: int
    priority_bands: tuple[int, ...]
    max_prompt_bytes: int = 32 * 1024
    context_length: int | None = None

    @classmethod
    def from_config(cls, config: SidecarConfig, context_length: int | None = None) -> RequestLimits:
        return cls(
            config.max_tokens_limit, tuple(config.priority_bands), config.max_prompt_bytes, context_length
        )


def too_large(message: str) -> SidecarError:
    """A request over a size limit (HTTP 413, gRPC INVALID_ARGUMENT); the message names the limit."""
    return SidecarError(ErrorCode.TOO_LARGE, message)


def text_bytes(field_name: str, text: str) -> int:
    """UTF-8 size of `text`; INVALID_ARGUMENT naming the field for text no engine can take (a lone
    surrogate)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise invalid(
            f"{field_name} is not valid Unicode text (a lone surrogate at position {exc.start})"
        ) from None


def prompt_bytes(req: SubmitRequest) -> int:
    """UTF-8 bytes of the prompt, or of every chat message's content (validated text)."""
    if req.prompt is not None:
        return text_bytes("prompt", req.prompt)
    return sum(text_bytes(f"messages[{i}].content", m["content"]) for i, m in enumerate(req.messages or []))


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
    if len(msgs) > MAX_MESSAGES:
        raise too_large(f"{len(msgs)} chat messages; the limit is {MAX_MESSAGES}")
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
    """Raise SidecarError(INVALID_ARGUMENT, or TOO_LARGE for a size limit) naming the field or limit."""
    if not isinstance(req.request_id, str):
        raise invalid("request_id must be a string")
    check_request_id(req.request_id)
    _check_input(req)
    size = prompt_bytes(req)
    if size > limits.max_prompt_bytes:
        raise too_large(
            f"the prompt is {size} bytes; the limit max_prompt_bytes is {limits.max_prompt_bytes}"
        )
    for i, s in enumerate(req.sampling.stop):
        text_bytes(f"stop[{i}]", s)
    if req.model is not None:
        text_bytes("model", req.model)
    mt = req.max_tokens
    if not _is_int(mt) or not 1 <= mt <= limits.max_tokens_limit:
        raise invalid(f"max_tokens must be an integer in [1, {limits.max_tokens_limit}], got {mt!r}")
    if limits.context_length is not None and mt >= limits.context_length:
        raise invalid(f"max_tokens ({mt}) must be below the model's context length {limits.context_length}")
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


def validate_rank(prompts: Sequence[str], limits: RequestLimits, max_prompts: int) -> None:
    """A Rank call: 1..max_prompts prompts, each valid text within max_prompt_bytes."""
    if not prompts:
        raise invalid("give at least one prompt to rank")
    if len(prompts) > max_prompts:
        raise invalid(f"at most {max_prompts} prompts per Rank call")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise invalid("prompts must be strings")
        if text_bytes(f"prompts[{i}]", p) > limits.max_prompt_bytes:
            raise too_large(f"prompts[{i}] is over max_prompt_bytes ({limits.max_prompt_bytes})")
