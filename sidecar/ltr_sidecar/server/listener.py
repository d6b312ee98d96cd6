"""HTTP listeners with connection hygiene: an idle timeout, a connection cap, rate-limited error logs.

* A connection that holds no request in progress (idle keep-alive, or headers that never complete) is
  closed after `idle_timeout_s` (aiohttp's keep-alive timer runs from the connection's start).
* At most `max_connections` connections are served per listener, and never more than the process's
  descriptor limit allows (minus a reserve for the engine client, files and gRPC); a connection over
  the cap gets `503` and is closed at once, so the listener keeps working instead of failing `accept`.
* Repeated log records of the same kind (EMFILE storms, broken clients) are rate limited.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass

from aiohttp import web

LINGER_S = 1.0
FD_RESERVE = 64  # descriptors kept for the engine client, trace files, gRPC and the admin plane
_REFUSAL_BODY = (
    b'{"error":{"message":"too many connections","type":"service_unavailable","code":"unavailable"}}'
)
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"retry-after: 1\r\ncontent-length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)


@dataclass(frozen=True)
class ListenerLimits:
    """Connection hygiene of one listener."""

    idle_timeout_s: float = 15.0
    max_connections: int = 1024


def connection_cap(requested: int, soft_limit: int | None = None) -> int:
    """`requested`, lowered so that connections cannot exhaust the process's descriptors (pure)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if soft_limit is None else soft_limit
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return requested
    return max(1, min(requested, soft - FD_RESERVE))


class _Refuse(asyncio.Protocol):
    """Answers 503 and closes: what a connection over the cap gets."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(REFUSAL)
        transport.close()


class GuardedSite(web.TCPSite):
    """A TCP site whose protocol factory refuses connections over the cap."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, cap: int) -> None:
        super().__init__(runner, host, port)
        self.cap = cap
        self.refused = 0

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert isinstance(server, web.Server)

        def factory() -> asyncio.Protocol:
            if len(server.connections) >= self.cap:
                self.refused += 1
                return _Refuse()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(factory, self._host, self._port, backlog=self._backlog)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


async def start_http_server(
    app: web.Application, host: str = "127.0.0.1", port: int = 8080, limits: ListenerLimits | None = None
) -> web.AppRunner:
    """Serve `app` (client-disconnect cancellation on, hygiene as in the module doc); returns the runner."""
    limits = limits or ListenerLimits()
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        keepalive_timeout=limits.idle_timeout_s,
        lingering_time=LINGER_S,  # aiohttp drains an unread body this long before it closes (default 10 s)
    )
    await runner.setup()
    await GuardedSite(runner, host, port, connection_cap(limits.max_connections)).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on (useful with port=0)."""
    for site in runner.sites:
        if isinstance(site, web.TCPSite):
            return site.port
    raise RuntimeError("the runner has no listening TCP site")


class RateLimitFilter(logging.Filter):
    """Lets through at most `burst` records of one kind (logger + message template) per `window_s`;
    the first record after a quiet spell says how many were suppressed."""

    def __init__(self, burst: int = 5, window_s: float = 10.0) -> None:
        super().__init__()
        self.burst, self.window_s = burst, window_s
        self._seen: dict[tuple[str, str], tuple[float, int, int]] = {}  # key -> (window start, n, dropped)

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        start, n, dropped = self._seen.get(key, (now, 0, 0))
        if now - start >= self.window_s:
            if dropped:
                record.msg = f"{record.msg} [{dropped} similar messages suppressed]"
            start, n, dropped = now, 0, 0
        if n >= self.burst:
            self._seen[key] = (start, n, dropped + 1)
            return False
        self._seen[key] = (start, n + 1, dropped)
        if len(self._seen) > 10_000:  # bounded memory under a storm of distinct messages
            self._seen.clear()
        return True


def install_log_rate_limit(burst: int = 5, window_s: float = 10.0) -> RateLimitFilter:
    """Rate-limit every handler of the root logger (idempotent per handler)."""
    flt = RateLimitFilter(burst, window_s)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RateLimitFilter) for f in handler.filters):
            handler.addFilter(flt)
    return flt
