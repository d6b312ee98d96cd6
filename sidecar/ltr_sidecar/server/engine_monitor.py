"""Whether the engine is up, which model it serves, and its own queue length (for `auto` admission).

Probed every `period_s`; a failure to connect while opening a request stream marks it down at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ltr_sidecar.engine.client import EngineClient
from ltr_sidecar.errors import SidecarError
from ltr_sidecar.server.admission import Admission

log = logging.getLogger(__name__)

ENGINE_PROBE_S = 2.0


class EngineMonitor:
    """Engine health as the core sees it (`ok`), kept fresh by `run()`."""

    def __init__(
        self,
        engine: EngineClient,
        admission: Admission,
        served_model: str = "",
        period_s: float = ENGINE_PROBE_S,
    ) -> None:
        self.engine = engine
        self.admission = admission
        self.served_model = served_model
        self.period_s = period_s
        self.ok = False

    async def probe(self) -> None:
        """Health, the served model (when not configured) and, for `auto` admission, the engine's queue."""
        self.ok = await self.engine.healthy()
        if self.ok and not self.served_model:
            with contextlib.suppress(SidecarError):
                models = await self.engine.list_models()
                if models:
                    self.served_model = models[0]
        if self.admission.auto and self.ok:
            self.admission.observe_engine_waiting(await self.engine.num_requests_waiting())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.probe()
            except Exception:  # the probe must never die
                log.exception("engine probe failed")
