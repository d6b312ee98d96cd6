"""OpenAI-compatible HTTP front door on the scheduler core (aiohttp).

Routes: POST /v1/completions, POST /v1/chat/completions (streamed as server-sent events or not),
GET /v1/models, GET /health (200 ready / 503 not ready or draining), GET /live (200 while the process
serves), GET /metrics (Prometheus text). Every final response carries an `ltr` object (score, rank at
arrival, queue wait, ...); non-streamed responses also carry `x-ltr-*` headers.

Client disconnects cancel the request (the core's stream is closed, which dequeues it or aborts its
engine stream). `start_http_server()` serves with aiohttp's `handler_cancellation=True`, which does
that at once; under any other runner a watcher checks the connections of waiting requests every
`DISCONNECT_POLL_S` and cancels the handlers whose client went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from ltr.contract import Outcome
from ltr_sidecar.errors import ErrorCode, SidecarError
from ltr_sidecar.server.config import SidecarConfig
from ltr_sidecar.server.metrics import SidecarMetrics
from ltr_sidecar.server.openai_schema import (
    ResponseOptions,
    StreamEncoder,
    completion_body,
    error_body,
    ltr_headers,
    parse_json,
    parse_request,
)
from ltr_sidecar.server.types import FinalResult, PredictorStatus, StreamEvent, SubmitRequest, TokenChunk
from ltr_sidecar.server.validation import REQUEST_ID_RE, REQUEST_ID_RULE, RequestLimits, validate_request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpLimits:
    """The front door's own limits (request size, JSON depth, body timeout, the chat default)."""

    max_body_bytes: int = 2 * 1024 * 1024
    max_json_depth: int = 32
    body_timeout_s: float = 30.0
    default_max_tokens: int = 1024

    @classmethod
    def from_config(cls, config: SidecarConfig) -> HttpLimits:
        # JSON may escape each prompt byte to six (\uXXXX); the rest of a body is small.
        return cls(
            6 * config.max_prompt_bytes + 64 * 1024,
            config.max_json_depth,
            config.body_timeout_s,
            config.default_max_tokens,
        )


DISCONNECT_POLL_S = 0.25
_CORE_KEY: web.AppKey[Any] = web.AppKey("ltr_core", object)
_METRICS_KEY: web.AppKey[SidecarMetrics] = web.AppKey("ltr_metrics", SidecarMetrics)
_HTTP_KEY: web.AppKey[Any] = web.AppKey("ltr_http_limits", object)
_ENGINE_FAILED = 502  # the engine failed mid-generation (no SidecarError code fits a bad upstream)


class Core(Protocol):
    """What the HTTP surface needs from the scheduler core (`server.core.SchedulerCore`)."""

    @property
    def ready(self) -> bool: ...
    @property
    def draining(self) -> bool: ...
    @property
    def served_model(self) -> str: ...
    @property
    def engine_ok(self) -> bool: ...
    @property
    def limits(self) -> RequestLimits: ...

    def submit(self, req: SubmitRequest) -> AsyncGenerator[StreamEvent, None]: ...
    def predictor_status(self) -> PredictorStatus: ...


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(
    code: ErrorCode,
    message: str,
    request_id: str | None = None,
    status: int | None = None,
) -> web.Response:
    headers = {"x-request-id": request_id} if request_id else {}
    if code in (ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.UNAVAILABLE):
        headers["retry-after"] = "1"
    return _json(error_body(code, message), status=status or code.http_status, headers=headers)


def _request_id(request: web.Request) -> str:
    rid = request.headers.get("x-request-id", "")
    if rid:
        if not REQUEST_ID_RE.match(rid):
            raise SidecarError(ErrorCode.INVALID_ARGUMENT, f"x-request-id must be {REQUEST_ID_RULE}")
        return rid
    return uuid.uuid4().hex


def _final_error(final: FinalResult) -> tuple[int, ErrorCode, str] | None:
    """A FinalResult that is not a success → (HTTP status, code, message)."""
    if final.finish_reason == "error":
        message = f"engine failed during generation: {final.error or 'unknown'}"
        return _ENGINE_FAILED, ErrorCode.UNAVAILABLE, message
    if final.finish_reason == "cancelled":
        return (
            ErrorCode.UNAVAILABLE.http_status,
            ErrorCode.UNAVAILABLE,
            f"request cancelled by the sidecar: {final.error or 'shutting down'}",
        )
    return None


class _DisconnectWatcher:
    """Cancels handler tasks whose client connection closed (one polling task for all requests)."""

    def __init__(self, interval_s: float = DISCONNECT_POLL_S) -> None:
        self.interval_s = interval_s
        self._watched: dict[asyncio.Task[Any], web.Request] = {}
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def watch(self, request: web.Request) -> Iterator[None]:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - handlers always run in a task
            yield
            return
        self._watched[task] = request
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ltr-http-disconnect-watch")
        try:
            yield
        finally:
            self._watched.pop(task, None)

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(self.interval_s)
            for task, request in list(self._watched.items()):
                transport = request.transport
                if transport is None or transport.is_closing():
                    del self._watched[task]
                    task.cancel()

    async def close(self, _app: web.Application | None = None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _Handlers:
    def __init__(self, core: Core, metrics: SidecarMetrics, http: HttpLimits) -> None:
        self.core = core
        self.metrics = metrics
        self.http = http
        self.watcher = _DisconnectWatcher()

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        created = int(time.time())
        rid: str | None = None
        try:
            rid = _request_id(request)
            try:
                raw = await asyncio.wait_for(request.read(), timeout=self.http.body_timeout_s)
            except TimeoutError:
                self.metrics.request_finished(Outcome.INVALID)
                late = _error(
                    ErrorCode.INVALID_ARGUMENT,
                    f"the request body did not arrive within body_timeout_s ({self.http.body_timeout_s:g}s)",
                    rid,
                    status=408,
                )
                late.force_close()  # the rest of the body is never read: the connection goes
                return late
            body = parse_json(raw, self.http.max_json_depth)
            limits = self.core.limits
            req, opts = parse_request(
                body,
                chat=chat,
                request_id=rid,
                default_max_tokens=self.http.default_max_tokens,
                max_tokens_limit=limits.max_tokens_limit,
            )
            validate_request(req, limits)
            served = self.core.served_model
            if opts.model and served and opts.model != served:
                raise SidecarError(
                    ErrorCode.NOT_FOUND,
                    f"model {opts.model!r} is not served here; this sidecar serves {served!r}",
                )
        except SidecarError as exc:
            self.metrics.request_finished(Outcome.INVALID)
            return _error(exc.code, exc.message, rid)
        opts = ResponseOptions(
            chat=opts.chat,
            stream=opts.stream,
            include_usage=opts.include_usage,
            model=opts.model or self.core.served_model,
        )
        with self.watcher.watch(request):
            if opts.stream:
                return await self._stream(request, req, opts, created)
            return await self._unary(req, opts, created)

    async def _unary(self, req: SubmitRequest, opts: ResponseOptions, created: int) -> web.Response:
        parts: list[str] = []
        final: FinalResult | None = None
        try:
            async with contextlib.aclosing(self.core.submit(req)) as events:
                async for ev in events:
                    if isinstance(ev, TokenChunk):
                        parts.append(ev.text)
                    elif isinstance(ev, FinalResult):
                        final = ev
                        break
        except SidecarError as exc:
            return _error(exc.code, exc.message, req.request_id)
        except Exception:  # a bug below us: answer as JSON, keep serving
            log.exception("request %s failed", req.request_id)
            return _error(ErrorCode.INTERNAL, "internal error in the sidecar", req.request_id)
        if final is None:
            return _error(
                ErrorCode.INTERNAL, "the scheduler ended the stream without a final result", req.request_id
            )
        failed = _final_error(final)
        if failed is not None:
            status, code, message = failed
            return _error(code, message, req.request_id, status=status)
        headers = {"x-request-id": req.request_id, **ltr_headers(final)}
        return _json(completion_body(opts, req.request_id, created, "".join(parts), final), headers=headers)

    async def _stream(
        self, request: web.Request, req: SubmitRequest, opts: ResponseOptions, created: int
    ) -> web.StreamResponse:
        enc = StreamEncoder(opts, req.request_id, created)
        resp: web.StreamResponse | None = None
        tail = b""  # what ends the stream: the final frames, or an error event
        try:
            async with contextlib.aclosing(self.core.submit(req)) as events:
                async for ev in events:
                    if resp is None:  # first event: admitted and running; errors before this get a status
                        resp = web.StreamResponse(
                            headers={
                                "content-type": "text/event-stream",
                                "cache-control": "no-cache",
                                "x-request-id": req.request_id,
                            }
                        )
                        await resp.prepare(request)
                        start = enc.start()
                        if start:
                            await resp.write(start)
                    if isinstance(ev, TokenChunk):
                        if ev.text:
                            await resp.write(enc.chunk(ev.text))
                    elif isinstance(ev, FinalResult):
                        failed = _final_error(ev)
                        tail = enc.final(ev) if failed is None else enc.error(failed[1], failed[2])
                        break
        except SidecarError as exc:
            if resp is None:
                return _error(exc.code, exc.message, req.request_id)
            tail = enc.error(exc.code, exc.message)
        except ConnectionResetError:  # client went away mid-stream; the core stream is closed above
            log.debug("client disconnected from %s", req.request_id)
            return resp or web.Response(status=499)
        except Exception:  # a bug below us: answer as JSON / an error event, keep serving
            log.exception("request %s failed", req.request_id)
            if resp is None:
                return _error(ErrorCode.INTERNAL, "internal error in the sidecar", req.request_id)
            tail = enc.error(ErrorCode.INTERNAL, "internal error in the sidecar")
        if resp is None:
            return _error(
                ErrorCode.INTERNAL, "the scheduler ended the stream without a final result", req.request_id
            )
        if not tail:
            tail = enc.error(ErrorCode.INTERNAL, "the scheduler ended the stream without a final result")
        with contextlib.suppress(ConnectionResetError):
            await resp.write(tail)
            await resp.write_eof()
        return resp

    async def models(self, request: web.Request) -> web.Response:
        served = self.core.served_model
        data = [{"id": served, "object": "model", "created": 0, "owned_by": "ltr-serving"}] if served else []
        return _json({"object": "list", "data": data})

    def _health_body(self) -> dict[str, Any]:
        """Readiness and the serving predictor; errors and paths stay in the logs and the admin plane."""
        status = self.core.predictor_status()
        tau, n = self.metrics.online_kendall_tau()
        return {
            "ready": self.core.ready,
            "draining": self.core.draining,
            "predictor_version": status.version,
            "fcfs_fallback": status.fallback_fcfs,
            "predictor_backbone": status.backbone,
            "predictor_error": bool(status.last_error),
            "online_kendall_tau": tau,
            "online_samples": n,
        }

    async def health(self, request: web.Request) -> web.Response:
        body = self._health_body()
        ok = body["ready"] and not body["draining"]
        body["status"] = "ok" if ok else ("draining" if body["draining"] else "starting")
        return _json(body, status=200 if ok else 503)

    async def live(self, request: web.Request) -> web.Response:
        return _json({"status": "alive"})

    async def engine_health(self, request: web.Request) -> web.Response:
        """The engine's health as the sidecar's probe last saw it (the engine's own pod probes use this:
        it listens on loopback, out of kubelet's reach)."""
        ok = self.core.engine_ok
        return _json({"engine": "ok" if ok else "unavailable"}, status=200 if ok else 503)

    async def prometheus(self, request: web.Request) -> web.Response:
        payload, content_type = self.metrics.render()
        return web.Response(body=payload, headers={"content-type": content_type})


async def _json_404(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _error(ErrorCode.NOT_FOUND, f"no route {request.method} {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        message = f"method {request.method} not allowed on {request.path}"
        return _json(
            error_body(ErrorCode.INVALID_ARGUMENT, message),
            status=405,
            headers={"allow": ",".join(exc.allowed_methods)},
        )
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[_HTTP_KEY].max_body_bytes
        message = f"the request body exceeds {limit} bytes (6 x max_prompt_bytes + 64 KiB)"
        return _json(error_body(ErrorCode.TOO_LARGE, message), status=413)


def build_http_app(
    core: Core, metrics: SidecarMetrics | None, http: HttpLimits | None = None
) -> web.Application:
    """The aiohttp application of the OpenAI-compatible front door (see module docstring).

    `metrics` should be the core's own SidecarMetrics (so /metrics shows the queue); None gives the
    front door a private one."""
    metrics = metrics if metrics is not None else SidecarMetrics()
    http = http or HttpLimits()
    app = web.Application(client_max_size=http.max_body_bytes, middlewares=[web.middleware(_json_404)])
    app[_CORE_KEY] = core
    app[_METRICS_KEY] = metrics
    app[_HTTP_KEY] = http
    h = _Handlers(core, metrics, http)
    app.router.add_post("/v1/completions", h.completions)
    app.router.add_post("/v1/chat/completions", h.chat_completions)
    app.router.add_get("/v1/models", h.models)
    app.router.add_get("/health", h.health)
    app.router.add_get("/live", h.live)
    app.router.add_get("/engine-health", h.engine_health)
    app.router.add_get("/metrics", h.prometheus)
    app.on_cleanup.append(h.watcher.close)
    return app


def build_metrics_app(metrics: SidecarMetrics) -> web.Application:
    """An application that serves only `GET /metrics` (the Service's metrics port)."""

    async def prometheus(request: web.Request) -> web.Response:
        payload, content_type = metrics.render()
        return web.Response(body=payload, headers={"content-type": content_type})

    app = web.Application(client_max_size=1024, middlewares=[web.middleware(_json_404)])
    app[_HTTP_KEY] = HttpLimits(max_body_bytes=1024)
    app.router.add_get("/metrics", prometheus)
    return app
