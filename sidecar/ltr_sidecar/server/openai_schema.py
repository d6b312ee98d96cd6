"""OpenAI wire format ⇄ surface-neutral types (pure functions, no I/O).

Parsing turns a `/v1/completions` or `/v1/chat/completions` JSON body into a `SubmitRequest` plus the
response options (stream, include_usage), raising `SidecarError(INVALID_ARGUMENT)` with a message
that names the offending field. It checks the wire shape only: sampling values are checked by
`SamplingParams.parse`, the rest of the request by `server.validation` (the same checks as gRPC).
Builders turn `FinalResult`/`TokenChunk` back into OpenAI JSON and server-sent-event frames; every
final response carries an `ltr` object (explainability).

Extensions to the OpenAI schema (all optional): `priority` (int band), `ignore_eos` (bool),
`expected_output_tokens` (int; used by the oracle policy only), `no_trace` (bool: do not record the
prompt), `timeout_s` (seconds a request may wait before it is dropped with 504), `top_k` (int).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from ltr_sidecar.errors import ErrorCode, SidecarError
from ltr_sidecar.sampling import KEYS as SAMPLING_KEYS
from ltr_sidecar.sampling import SamplingParams
from ltr_sidecar.server.types import FinalResult, SchedulingInfo, SubmitRequest

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions

#: Fields we cannot honour: rejected with a clear 400 when set to anything but their default.
_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "best_of": (None, 1),
    "echo": (None, False),
    "logprobs": (None, False, 0),
    "top_logprobs": (None, 0),
    "suffix": (None, ""),
    "tools": (None, []),
    "functions": (None, []),
    "tool_choice": (None, "none", "auto"),
    "function_call": (None, "none", "auto"),
}

#: ErrorCode → OpenAI error `type`.
ERROR_TYPES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "invalid_request_error",
    ErrorCode.TOO_LARGE: "invalid_request_error",
    ErrorCode.UNAUTHENTICATED: "authentication_error",
    ErrorCode.NOT_FOUND: "not_found_error",
    ErrorCode.FAILED_PRECONDITION: "invalid_request_error",
    ErrorCode.RESOURCE_EXHAUSTED: "rate_limit_error",
    ErrorCode.CANCELLED: "cancelled",
    ErrorCode.INTERNAL: "internal_error",
    ErrorCode.UNAVAILABLE: "service_unavailable",
    ErrorCode.DEADLINE_EXCEEDED: "timeout_error",
}


@dataclass(frozen=True)
class ResponseOptions:
    """How to answer: chat or completions shape, streamed or not, usage chunk at the end."""

    chat: bool
    stream: bool
    include_usage: bool
    model: str


def _invalid(message: str) -> SidecarError:
    return SidecarError(ErrorCode.INVALID_ARGUMENT, message)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def _opt_int(body: dict[str, Any], key: str, lo: int | None = None, hi: int | None = None) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if not _is_int(v):
        raise _invalid(f"'{key}' must be an integer, got {json.dumps(v)[:40]}")
    if lo is not None and v < lo:
        raise _invalid(f"'{key}' must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise _invalid(f"'{key}' must be <= {hi}, got {v}")
    return v


def _opt_float(
    body: dict[str, Any], key: str, lo: float, hi: float | None = None, lo_open: bool = False
) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if not _is_number(v):
        raise _invalid(f"'{key}' must be a finite number, got {json.dumps(v)[:40]}")
    if v < lo or (lo_open and v == lo) or (hi is not None and v > hi):
        low = f"> {lo}" if lo_open else f">= {lo}"
        raise _invalid(f"'{key}' must be {low}" + (f" and <= {hi}" if hi is not None else "") + f", got {v}")
    return float(v)


def _opt_bool(body: dict[str, Any], key: str) -> bool:
    v = body.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise _invalid(f"'{key}' must be a boolean, got {json.dumps(v)[:40]}")
    return v


def _prompt(body: dict[str, Any]) -> str:
    if "prompt" not in body or body["prompt"] is None:
        raise _invalid("'prompt' is required")
    p = body["prompt"]
    if isinstance(p, list):
        if len(p) == 1 and isinstance(p[0], str):
            p = p[0]
        elif p and all(isinstance(x, str) for x in p):
            raise _invalid(
                f"'prompt' must be a single string: batched prompts ({len(p)}) are not supported; "
                "send one request per prompt so each is ranked and scheduled on its own"
            )
        else:
            raise _invalid("'prompt' must be a string (token-id prompts are not supported)")
    if not isinstance(p, str):
        raise _invalid(f"'prompt' must be a string, got {type(p).__name__}")
    return p


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not (
                isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            ):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _invalid(f"{where}.content[{j}]: only text parts are supported, got {kind!r}")
            parts.append(part["text"])
        return "".join(parts)
    raise _invalid(f"{where}.content must be a string or a list of text parts")


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    msgs = body.get("messages")
    if msgs is None:
        raise _invalid("'messages' is required")
    if not isinstance(msgs, list) or not msgs:
        raise _invalid("'messages' must be a non-empty list of {role, content} objects")
    out: list[dict[str, str]] = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _invalid(f"{where} must be an object with 'role' and 'content'")
        role = m.get("role")
        if not isinstance(role, str):
            raise _invalid(f"{where}.role must be a string, got {role!r}")
        if m.get("tool_calls"):
            raise _invalid(f"{where}: tool calls are not supported")
        if "content" not in m or m["content"] is None:
            raise _invalid(f"{where}.content is required")
        out.append({"role": role, "content": _content_text(m["content"], where)})
    return out


def _max_tokens(body: dict[str, Any], default: int) -> int:
    a = _opt_int(body, "max_tokens")
    b = _opt_int(body, "max_completion_tokens")
    if a is not None and b is not None and a != b:
        raise _invalid(f"'max_tokens' ({a}) and 'max_completion_tokens' ({b}) disagree; send one of them")
    return b if b is not None else a if a is not None else default


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (iterative: no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def parse_json(raw: bytes, max_depth: int) -> Any:
    """The request body as JSON; INVALID_ARGUMENT for bad JSON or nesting deeper than `max_depth`."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise _invalid(f"the request body nests deeper than max_json_depth ({max_depth})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(f"request body is not valid JSON: {exc}") from None
    if json_depth(body) > max_depth:
        raise _invalid(f"the request body nests deeper than max_json_depth ({max_depth})")
    return body


def parse_request(
    body: Any,
    *,
    chat: bool,
    request_id: str,
    default_max_tokens: int | None = None,
    max_tokens_limit: int | None = None,
    now: float | None = None,
) -> tuple[SubmitRequest, ResponseOptions]:
    """Validate an OpenAI completions (chat=False) or chat completions (chat=True) JSON body.

    Without `max_tokens`, completions default to 16 (OpenAI's default) and chat to `default_max_tokens`
    (else the limit, else 16). Raises SidecarError(INVALID_ARGUMENT) naming the bad field.
    """
    if not isinstance(body, dict):
        raise _invalid("request body must be a JSON object")
    for key, allowed in _UNSUPPORTED.items():
        if key in body and body[key] not in allowed:
            raise _invalid(f"'{key}' is not supported by the LTR sidecar (got {json.dumps(body[key])[:40]})")
    rf = body.get("response_format")
    if rf is not None and not (isinstance(rf, dict) and rf.get("type") == "text"):
        raise _invalid('\'response_format\' other than {"type": "text"} is not supported')

    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _invalid("'model' must be a string")
    stream = _opt_bool(body, "stream")
    include_usage = False
    so = body.get("stream_options")
    if so is not None:
        if not stream:
            raise _invalid("'stream_options' is only allowed when 'stream' is true")
        if not isinstance(so, dict):
            raise _invalid("'stream_options' must be an object")
        include_usage = _opt_bool(so, "include_usage")

    if chat:
        if "prompt" in body:
            raise _invalid("/v1/chat/completions takes 'messages', not 'prompt'")
        prompt, messages = None, _messages(body)
        default = default_max_tokens or max_tokens_limit or COMPLETIONS_DEFAULT_MAX_TOKENS
    else:
        if "messages" in body:
            raise _invalid("/v1/completions takes 'prompt', not 'messages' (use /v1/chat/completions)")
        prompt, messages = _prompt(body), None
        default = COMPLETIONS_DEFAULT_MAX_TOKENS
    if max_tokens_limit is not None:
        default = min(default, max_tokens_limit)
    max_tokens = _max_tokens(body, default)

    sampling = SamplingParams.parse({k: body[k] for k in SAMPLING_KEYS if body.get(k) is not None})

    priority = _opt_int(body, "priority")
    timeout_s = _opt_float(body, "timeout_s", 0.0, lo_open=True)
    deadline = None
    if timeout_s is not None:
        deadline = (time.time() if now is None else now) + timeout_s

    req = SubmitRequest(
        request_id=request_id,
        max_tokens=max_tokens,
        prompt=prompt,
        messages=messages,
        sampling=sampling,
        priority=priority or 0,
        deadline=deadline,
        expected_output_tokens=_opt_int(body, "expected_output_tokens"),
        model=model or None,
        no_trace=_opt_bool(body, "no_trace"),
    )
    return req, ResponseOptions(chat=chat, stream=stream, include_usage=include_usage, model=model or "")


# -- responses ---------------------------------------------------------------------------------------


def error_body(code: ErrorCode, message: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI-style error object: {"error": {"message", "type", "param", "code"}}."""
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(code, "internal_error"),
            "param": param,
            "code": code.grpc_name.lower(),
        }
    }


def ltr_info(s: SchedulingInfo, final: FinalResult) -> dict[str, Any]:
    """The `ltr` explainability object of a response."""
    return {
        "score": s.score,
        "rank_at_arrival": s.rank_at_arrival,
        "queue_wait_s": round(s.queue_wait_s, 6),
        "promoted": s.promoted,
        "policy": s.policy,
        "predictor_version": s.predictor_version,
        "priority": s.priority,
        "predicted_output_tokens": None
        if s.predicted_output_tokens is None
        else round(s.predicted_output_tokens, 1),
        "ttft_s": round(final.ttft_s, 6),
        "total_s": round(final.total_s, 6),
    }


def ltr_headers(final: FinalResult) -> dict[str, str]:
    """`x-ltr-*` response headers (non-streamed responses; streams carry `ltr` in the last chunk)."""
    s = final.scheduling
    return {
        "x-ltr-score": repr(float(s.score)),
        "x-ltr-rank": str(s.rank_at_arrival),
        "x-ltr-queue-wait-ms": f"{s.queue_wait_s * 1000:.3f}",
        "x-ltr-promoted": "true" if s.promoted else "false",
        "x-ltr-policy": s.policy,
        "x-ltr-predictor-version": s.predictor_version,
        "x-ltr-priority": str(s.priority),
    }


def usage(final: FinalResult) -> dict[str, int]:
    return {
        "prompt_tokens": final.prompt_tokens,
        "completion_tokens": final.completion_tokens,
        "total_tokens": final.prompt_tokens + final.completion_tokens,
    }


def response_id(request_id: str, chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + request_id


def completion_body(
    opts: ResponseOptions, request_id: str, created: int, text: str, final: FinalResult
) -> dict[str, Any]:
    """A non-streamed completions or chat completions response body."""
    if opts.chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": final.finish_reason,
        }
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": final.finish_reason}
    return {
        "id": response_id(request_id, opts.chat),
        "object": "chat.completion" if opts.chat else "text_completion",
        "created": created,
        "model": opts.model,
        "choices": [choice],
        "usage": usage(final),
        "ltr": ltr_info(final.scheduling, final),
    }


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class StreamEncoder:
    """Server-sent-event frames of one streamed response; `chunk()` is the hot path (one dumps of the
    text into a precomputed frame)."""

    def __init__(self, opts: ResponseOptions, request_id: str, created: int) -> None:
        self.opts = opts
        self._head = {
            "id": response_id(request_id, opts.chat),
            "object": "chat.completion.chunk" if opts.chat else "text_completion",
            "created": created,
            "model": opts.model,
        }
        head = json.dumps(self._head, separators=(",", ":"))[:-1]
        if opts.chat:
            self._prefix = (f'data: {head},"choices":[{{"index":0,"delta":{{"content":').encode()
            self._suffix = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        else:
            self._prefix = (f'data: {head},"choices":[{{"index":0,"text":').encode()
            self._suffix = b',"logprobs":null,"finish_reason":null}]}\n\n'

    def start(self) -> bytes:
        """The opening frame (chat: the assistant role delta; completions: nothing)."""
        if not self.opts.chat:
            return b""
        return _sse(
            {
                **self._head,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
        )

    def chunk(self, text: str) -> bytes:
        return self._prefix + json.dumps(text).encode() + self._suffix

    def final(self, final: FinalResult) -> bytes:
        """Last content frame (finish_reason + `ltr`), the usage frame when asked, and [DONE]."""
        if self.opts.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {},
                "logprobs": None,
                "finish_reason": final.finish_reason,
            }
        else:
            choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": final.finish_reason}
        out = _sse({**self._head, "choices": [choice], "ltr": ltr_info(final.scheduling, final)})
        if self.opts.include_usage:
            out += _sse({**self._head, "choices": [], "usage": usage(final)})
        return out + SSE_DONE

    def error(self, code: ErrorCode, message: str) -> bytes:
        """An error frame for a failure after the stream started, then [DONE]."""
        return _sse(error_body(code, message)) + SSE_DONE
