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
import logging
import os
import signal
from pathlib import Path
from typing import Any

from aiohttp import web

from ltr_sidecar.predictor import Predictor, set_scoring_threads
from ltr_sidecar.server.admin import AdminSurface
from ltr_sidecar.server.config import ConfigError, SidecarConfig, file_digest, load_config
from ltr_sidecar.server.core import SchedulerCore
from ltr_sidecar.server.grpc_server import GrpcSurface
from ltr_sidecar.server.http_server import HttpLimits, build_http_app, build_metrics_app
from ltr_sidecar.server.listener import ListenerLimits, bound_port, start_http_server
from ltr_sidecar.server.metrics import SidecarMetrics
from ltr_sidecar.server.traces import TraceRecorder

log = logging.getLogger(__name__)


def trace_dir_for_pod(trace_dir: str | Path) -> Path:
    """Per-pod trace folder: replicas share the trace volume, so each writes (and rotates) only
    `trace_dir/$POD_NAME/` (the operator sets POD_NAME); the retrain job reads all sub-folders."""
    pod = os.environ.get("POD_NAME", "").strip()
    return Path(trace_dir) / pod if pod and "/" not in pod else Path(trace_dir)


def open_traces(config: SidecarConfig, metrics: SidecarMetrics) -> TraceRecorder | None:
    """The trace recorder, or None: traces are auxiliary, so a trace dir that cannot be used means
    serving without traces (warned, and `ltr_traces_enabled` reads 0), never a failed start."""
    if not config.trace_dir:
        metrics.set_traces_enabled(False)
        return None
    try:
        recorder = TraceRecorder(trace_dir_for_pod(config.trace_dir), record_prompts=config.record_prompts)
    except OSError as exc:
        log.warning("traces off: cannot use trace_dir %s: %s", config.trace_dir, exc.strerror or exc)
        metrics.trace_error()
        metrics.set_traces_enabled(False)
        return None
    metrics.set_traces_enabled(True)
    metrics.track_trace_drops(lambda: recorder.dropped)
    return recorder


class SidecarApp:
    """Owns the core, both surfaces, metrics, traces and the config watcher."""

    def __init__(
        self,
        config: SidecarConfig,
        config_path: str | Path | None = None,
        overrides: dict[str, Any] | None = None,
        predictor: Predictor | None = None,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path else None
        self.overrides = dict(overrides or {})
        self.metrics = SidecarMetrics()
        self.traces = open_traces(config, self.metrics)
        self.core = SchedulerCore(config, predictor=predictor, metrics=self.metrics, traces=self.traces)
        self.grpc: GrpcSurface | None = None
        self.admin: AdminSurface | None = None
        self.http_port: int | None = None
        self.metrics_port: int | None = None
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._digest = file_digest(self.config_path) if self.config_path else ""

    @property
    def grpc_port(self) -> int | None:
        return self.grpc.port if self.grpc else None

    async def start(self) -> None:
        set_scoring_threads(self.config.scoring_threads)
        await self.core.start()
        c = self.config
        self.grpc = GrpcSurface(self.core, c.host, c.grpc_port)
        await self.grpc.start()
        if c.admin_token_file:
            self.admin = AdminSurface(self.core, c.admin_token_file, c.admin_host, c.admin_port)
            await self.admin.start()
        else:
            log.warning("admin plane off (no admin_token_file): predictor versions change through the config")
        listen = ListenerLimits(c.idle_timeout_s, c.max_connections)
        app = build_http_app(self.core, self.metrics, HttpLimits.from_config(c))
        self._runners.append(await start_http_server(app, c.host, c.http_port, listen))
        self.http_port = bound_port(self._runners[0])
        if c.metrics_port:
            metrics_app = build_metrics_app(self.metrics)
            self._runners.append(await start_http_server(metrics_app, c.host, c.metrics_port, listen))
            self.metrics_port = bound_port(self._runners[-1])
        self._tasks.append(asyncio.create_task(self.grpc.health_loop(), name="ltr-health"))
        if self.config_path:
            self._tasks.append(asyncio.create_task(self._watch_config(), name="ltr-config-watch"))
        log.info(
            "sidecar serving: gRPC :%s, admin :%s, HTTP :%s, metrics :%s, engine %s, policy %s, predictor %r",
            self.grpc_port,
            self.admin.port if self.admin else "off",
            self.http_port,
            self.metrics_port or "-",
            self.config.engine_url,
            self.core.policy_name,
            self.core.predictor_version,
        )

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
        if self.admin:
            await self.admin.stop(1.0)
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
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
        changed = self.core.config.restart_keys_changed(new)
        if changed:
            log.warning("config keys %s changed; they take effect on restart", changed)
        return await self.core.reload_from_config(new)

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(self.config.config_poll_s)
            try:
                await self.check_config()
            except Exception:  # the watcher must never die
                log.exception("config watch failed")
