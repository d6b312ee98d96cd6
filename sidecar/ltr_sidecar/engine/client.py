"""OpenAI-compatible streaming engine client (vLLM, SGLang, TGI, `transformers serve`).

One `EngineClient` per sidecar holds a pooled aiohttp session. `open_stream()` sends one streaming
`/v1/completions` or `/v1/chat/completions` request and returns an `EngineStream` that yields text
chunks and exactly one `EngineFinal`. An engine that cannot be reached raises
`EngineUnreachable` within `connect_timeout_s`; an engine that answers one request with an error fails
that request only (4xx → INVALID_ARGUMENT, 429 → RESOURCE_EXHAUSTED, 5xx → UNAVAILABLE); a failure
mid-stream ends the stream with finish_reason "error"; a stream silent for `read_timeout_s` is cut.
Messages for clients never carry the engine's address; details go to the log.

Vendor extensions (`ignore_eos`, `top_k`, vLLM's `priority`) are sent only when asked for. Strict
engines (e.g. `transformers serve`) answer them with 400/422 "unexpected field": the client then retries
once without them and stops sending them to that engine (logged once).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ltr_sidecar.errors import EngineUnreachable, ErrorCode, SidecarError
from ltr_sidecar.sampling import SamplingParams

log = logging.getLogger(__name__)

API_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
VENDOR_FIELDS = ("top_k", "ignore_eos", "priority")
FINISH_REASONS = {"stop", "length", "cancelled", "error"}


@dataclass
class EngineRequest:
    """One request as sent to the engine. Exactly one of `prompt` / `messages` is set."""

    model: str
    max_tokens: int
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    priority: int | None = None  # vLLM priority (lower = earlier); None = not sent
    request_id: str = ""


@dataclass
class EngineChunk:
    """Generated text from one engine stream event."""

    text: str
    tokens: int = 1


@dataclass
class EngineFinal:
    """End of an engine stream: finish_reason ∈ stop | length | cancelled | error."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    error: str = ""


def build_body(req: EngineRequest, *, vendor_fields: bool = True, chat: bool = False) -> dict[str, Any]:
    """The JSON body for `req` (pure). `vendor_fields=False` drops non-OpenAI fields; `chat` sends a
    raw prompt to a chat endpoint as one user message."""
    body: dict[str, Any] = {
        "max_tokens": req.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if req.model:
        body["model"] = req.model
    if req.messages is not None:
        body["messages"] = req.messages
    elif chat:
        body["messages"] = [{"role": "user", "content": req.prompt or ""}]
    else:
        body["prompt"] = req.prompt or ""
    body.update(req.sampling.standard_fields())
    if vendor_fields:
        body.update(req.sampling.vendor_fields())
        if req.priority is not None:
            body["priority"] = int(req.priority)
    return body


def parse_event(data: str, chat: bool) -> tuple[str, str | None, dict[str, Any] | None, str]:
    """Parse one SSE `data:` payload → (text, finish_reason, usage, error) (pure)."""
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("stream event is not a JSON object")
    if obj.get("error"):
        err = obj["error"]
        return "", None, None, err.get("message", str(err)) if isinstance(err, dict) else str(err)
    text, finish = "", None
    choices = obj.get("choices") or []
    if choices:
        choice = choices[0]
        text = ((choice.get("delta") or {}).get("content") if chat else choice.get("text")) or ""
        finish = choice.get("finish_reason")
    usage = obj.get("usage")
    return text, finish, usage if isinstance(usage, dict) else None, ""


def _is_vendor_field_rejection(status: int, detail: str) -> bool:
    if status not in (400, 422):
        return False
    lowered = detail.lower()
    words = ("unexpected", "extra", "unrecognized", "not permitted", "unknown", "forbidden")
    return any(f in lowered for f in VENDOR_FIELDS) and any(w in lowered for w in words)


class EngineStream:
    """One open engine response; iterate for `EngineChunk`s then one `EngineFinal`. `close()` aborts."""

    def __init__(self, resp: aiohttp.ClientResponse, chat: bool) -> None:
        self._resp = resp
        self._chat = chat
        self._aborted = False

    def close(self) -> None:
        """Abort the stream (closes the connection; the engine stops generating)."""
        self._aborted = True
        self._resp.close()

    async def __aiter__(self) -> AsyncIterator[EngineChunk | EngineFinal]:
        """Chunks, then exactly one EngineFinal. SSE events already buffered when read are coalesced
        into one chunk (`tokens` = events), so a fast engine costs one relay hop per read, not per token."""
        chunks = 0
        finish: str | None = None
        usage: dict[str, Any] | None = None
        pending = b""
        try:
            async for data in self._resp.content.iter_any():
                lines = (pending + data).split(b"\n")
                pending = lines.pop()  # an incomplete last line waits for the next read
                texts: list[str] = []
                done = False
                for raw in lines:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        break
                    text, fin, use, error = parse_event(payload.decode("utf-8"), self._chat)
                    if error:
                        if texts:
                            yield EngineChunk("".join(texts), len(texts))
                        yield EngineFinal("error", 0, chunks + len(texts), f"engine error: {error}")
                        return
                    if text:
                        texts.append(text)
                    finish = fin or finish
                    usage = use or usage
                if texts:
                    chunks += len(texts)
                    yield EngineChunk("".join(texts), len(texts))
                if done:
                    break
        except (TimeoutError, aiohttp.ClientError, ValueError, UnicodeDecodeError) as exc:
            if self._aborted:
                yield EngineFinal("cancelled", 0, chunks, "aborted")
                return
            log.warning("engine stream failed: %r", exc)
            yield EngineFinal("error", 0, chunks, "the engine stream broke off")
            return
        finally:
            self._resp.release()
        if self._aborted:
            yield EngineFinal("cancelled", 0, chunks, "aborted")
            return
        prompt_tokens = int((usage or {}).get("prompt_tokens") or 0)
        completion_tokens = int((usage or {}).get("completion_tokens") or chunks)
        if finish is None:
            yield EngineFinal("error", prompt_tokens, completion_tokens, "engine stream ended unfinished")
            return
        yield EngineFinal(finish if finish in FINISH_REASONS else "stop", prompt_tokens, completion_tokens)


class EngineClient:
    """Pooled aiohttp client for one OpenAI-compatible engine."""

    def __init__(
        self,
        base_url: str,
        api: str = "completions",
        *,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 120.0,
    ) -> None:
        if api not in API_PATHS:
            raise ValueError(f"engine_api must be one of {sorted(API_PATHS)}, got {api!r}")
        self.base_url = base_url.rstrip("/")
        self.api = api
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.vendor_fields = True
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("EngineClient.start() was not called")
        return self._session

    def _timeout(self, read: float | None = None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None,
            connect=self.connect_timeout_s,
            sock_connect=self.connect_timeout_s,
            sock_read=self.read_timeout_s if read is None else read,
        )

    async def open_stream(self, req: EngineRequest, api: str | None = None) -> EngineStream:
        """Send `req`; returns once the engine answered 200. Raises SidecarError otherwise."""
        api = api or ("chat" if req.messages is not None else self.api)
        url = self.base_url + API_PATHS[api]
        for attempt in range(2):
            body = build_body(req, vendor_fields=self.vendor_fields, chat=api == "chat")
            try:
                resp = await self.session.post(url, json=body, timeout=self._timeout())
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise EngineUnreachable(f"engine at {self.base_url}: {exc!r}") from exc
            if resp.status == 200:
                return EngineStream(resp, chat=api == "chat")
            detail = (await resp.text(errors="replace"))[:500]
            resp.release()
            if attempt == 0 and self.vendor_fields and _is_vendor_field_rejection(resp.status, detail):
                log.warning("engine rejects vendor fields %s (%s); not sending them", VENDOR_FIELDS, detail)
                self.vendor_fields = False
                continue
            raise rejection(resp.status, detail)
        raise SidecarError(ErrorCode.UNAVAILABLE, "engine rejected the request")  # pragma: no cover

    async def stream(self, req: EngineRequest) -> AsyncIterator[EngineChunk | EngineFinal]:
        """Convenience: open a stream and iterate it (closing the generator aborts the stream)."""
        stream = await self.open_stream(req)
        try:
            async for event in stream:
                yield event
        finally:
            stream.close()

    async def _get(self, path: str, timeout_s: float = 3.0) -> tuple[int, str]:
        try:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with self.session.get(self.base_url + path, timeout=timeout) as r:
                return r.status, await r.text(errors="replace")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise EngineUnreachable(f"engine at {self.base_url}: {exc!r}") from exc

    async def list_models(self) -> list[str]:
        """Model ids from the engine's `/v1/models`."""
        return [m.id for m in await self.models()]

    async def models(self) -> list[ModelInfo]:
        """The engine's `/v1/models` entries, with the context length where the engine tells it (vLLM)."""
        status, text = await self._get("/v1/models")
        if status != 200:
            raise SidecarError(ErrorCode.UNAVAILABLE, f"engine /v1/models answered HTTP {status}")
        try:
            return [parse_model(m) for m in json.loads(text).get("data", []) if "id" in m]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SidecarError(ErrorCode.UNAVAILABLE, f"engine /v1/models malformed: {exc}") from exc

    async def count_tokens(
        self, model: str, prompt: str | None, messages: list[dict[str, str]] | None
    ) -> int | None:
        """Prompt tokens by the engine's own tokenizer (vLLM `/tokenize`); None where it has none."""
        body: dict[str, Any] = {"model": model}
        body.update({"messages": messages} if messages is not None else {"prompt": prompt or ""})
        try:
            async with self.session.post(
                self.base_url + "/tokenize", json=body, timeout=self._timeout(5.0)
            ) as r:
                if r.status != 200:
                    return None
                data = await r.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return None
        count = data.get("count") if isinstance(data, dict) else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    async def healthy(self) -> bool:
        """True when the engine answers `/health` (or `/v1/models`) with 200."""
        try:
            status, _ = await self._get("/health")
            if status == 404:
                status, _ = await self._get("/v1/models")
        except SidecarError:
            return False
        return status == 200

    async def num_requests_waiting(self) -> float | None:
        """The engine's own queue length from its Prometheus `/metrics` (vLLM/SGLang), else None."""
        try:
            status, text = await self._get("/metrics", timeout_s=1.0)
        except SidecarError:
            return None
        return parse_waiting(text) if status == 200 else None


WAITING_METRICS = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size")


@dataclass(frozen=True)
class ModelInfo:
    """One served model: its id and, when the engine reports it, its context length in tokens."""

    id: str
    context_length: int | None = None


def parse_model(entry: dict[str, Any]) -> ModelInfo:
    """A `/v1/models` entry (vLLM adds `max_model_len`; SGLang `max_model_len` or `context_length`)."""
    for key in ("max_model_len", "context_length", "max_context_length"):
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return ModelInfo(str(entry["id"]), value)
    return ModelInfo(str(entry["id"]))


def rejection(status: int, detail: str) -> SidecarError:
    """The error of a request the engine answered with HTTP `status`: that request's, never the engine's."""
    if status == 429:
        return SidecarError(ErrorCode.RESOURCE_EXHAUSTED, "the engine is overloaded; retry later")
    if 400 <= status < 500:
        return SidecarError(
            ErrorCode.INVALID_ARGUMENT,
            f"the engine rejected the request (HTTP {status}): {_client_detail(detail)}",
        )
    log.warning("engine answered HTTP %s: %s", status, detail[:300])
    return SidecarError(ErrorCode.UNAVAILABLE, f"the engine failed this request (HTTP {status})")


def _client_detail(detail: str) -> str:
    """The engine's own message (e.g. a context-length error), without URLs or paths, at most 300 chars."""
    try:
        obj = json.loads(detail)
        if isinstance(obj, dict):
            err = obj.get("error", obj.get("detail", obj.get("message", detail)))
            detail = err.get("message", str(err)) if isinstance(err, dict) else str(err)
    except ValueError:
        pass
    return re.sub(r"(https?://\S+|/[\w.-]+(?:/[\w.-]+)+)", "[redacted]", detail)[:300]


def parse_waiting(text: str) -> float | None:
    """Sum of the engine's waiting-queue gauge in a Prometheus exposition, None if absent (pure)."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in WAITING_METRICS:
            try:
                value = float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
            if math.isfinite(value):
                total, seen = total + value, True
    return total if seen else None
