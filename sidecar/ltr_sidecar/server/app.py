"""The sidecar process: core + gRPC + HTTP front door on one asyncio loop, config polling, SIGTERM drain.

`SidecarApp(config).run()` serves until SIGTERM/SIGINT, then drains: health turns NOT_SERVING, new
requests get UNAVAILABLE, queued and in-flight requests finish within `drain_grace_s`, the rest are
aborted, and the process exits. When started from a config file, the file is polled every
`config_poll_s` (by content: Kubernetes swaps ConfigMap mounts by symlink) and predictor changes are
hot-reloaded without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from pathlib import Path
from typing import Any

from ltr_sidecar.server.config import ConfigError, SidecarConfig, file_digest, load_config
from ltr_sidecar.server.core import SchedulerCore
from ltr_sidecar.server.grpc_server import GrpcSurface

log = logging.getLogger(__name__)


def _optional(module: str) -> Any:
    """Import a sibling surface module if it exists (None when that part is not installed)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


class SidecarApp:
    """Owns the core, both surfaces, metrics, traces and the config watcher."""

    def __init__(self, config: SidecarConfig, config_path: str | Path | None = None,
                 overrides: dict[str, Any] | None = None, predictor: Any = None) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path else None
        self.overrides = dict(overrides or {})
        metrics_mod = _optional("ltr_sidecar.server.metrics")
        self.metrics = metrics_mod.SidecarMetrics() if metrics_mod else None
        self.traces = None
        if config.trace_dir:
            from ltr_sidecar.server.traces import TraceRecorder

            self.traces = TraceRecorder(config.trace_dir, record_prompts=config.record_prompts)
        self.core = SchedulerCore(config, predictor=predictor, metrics=self.metrics, traces=self.traces)
        self.grpc: GrpcSurface | None = None
        self.http_port: int | None = None
        self._http_runner: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._digest = file_digest(self.config_path) if self.config_path else ""

    @property
    def grpc_port(self) -> int | None:
        return self.grpc.port if self.grpc else None

    async def start(self) -> None:
        await self.core.start()
        self.grpc = GrpcSurface(self.core, self.config.host, self.config.grpc_port)
        await self.grpc.start()
        http_mod = _optional("ltr_sidecar.server.http_server")
        if http_mod is not None and hasattr(http_mod, "build_http_app"):
            from aiohttp import web

            runner = web.AppRunner(http_mod.build_http_app(self.core, self.metrics), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, self.config.host, self.config.http_port)
            await site.start()
            self._http_runner = runner
            sockets = getattr(site._server, "sockets", None) or []
            self.http_port = sockets[0].getsockname()[1] if sockets else self.config.http_port
        else:
            log.warning("HTTP front door not available (ltr_sidecar.server.http_server missing); gRPC only")
        self._tasks.append(asyncio.create_task(self.grpc.health_loop(), name="ltr-health"))
        if self.config_path:
            self._tasks.append(asyncio.create_task(self._watch_config(), name="ltr-config-watch"))
        log.info("sidecar serving: gRPC :%s, HTTP :%s, engine %s, policy %s, predictor %r",
                 self.grpc_port, self.http_port, self.config.engine_url, self.core.policy_name,
                 self.core.predictor_version)

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain and shut down (idempotent)."""
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        drain = asyncio.create_task(self.core.stop(grace))
        await asyncio.sleep(0)  # core.stop sets draining before its first await
        if self.grpc:
            await self.grpc.sync_health()  # NOT_SERVING right away: load balancers stop sending
        await drain
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.grpc:
            await self.grpc.stop(1.0)
        if self._http_runner is not None:
            await self._http_runner.cleanup()
            self._http_runner = None
        if self.traces is not None:
            await asyncio.to_thread(self.traces.close)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then drain."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            await self._stop.wait()
            log.info("stop requested: draining for up to %.1fs", self.config.drain_grace_s)
        finally:
            await self.stop()

    async def check_config(self) -> bool:
        """Re-read the config file if its content changed; hot-reload the predictor. True if reloaded."""
        if not self.config_path:
            return False
        digest = await asyncio.to_thread(file_digest, self.config_path)
        if not digest or digest == self._digest:
            return False
        self._digest = digest
        try:
            new = await asyncio.to_thread(load_config, self.config_path, self.overrides)
        except ConfigError as exc:
            log.error("config file changed but is invalid, keeping the running config: %s", exc)
            return False
        return await self.core.reload_from_config(new)

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(self.config.config_poll_s)
            try:
                await self.check_config()
            except Exception:  # the watcher must never die
                log.exception("config watch failed")
