"""Whether the engine is up, which model it serves (and its context length), and its own queue length.

Probed every `period_s`. Only a failed probe, or a request that could not reach the engine at all, marks
it down; an engine that answers one request with an error has failed that request alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ltr_sidecar.engine.client import EngineClient
from ltr_sidecar.errors import SidecarError
from ltr_sidecar.server.admission import Admission
from ltr_sidecar.server.types import SubmitRequest
from ltr_sidecar.server.validation import invalid, prompt_bytes

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
        context_length: int | None = None,
    ) -> None:
        self.engine = engine
        self.admission = admission
        self.served_model = served_model
        self.period_s = period_s
        self.context_length = context_length  # configured, else learnt from the engine's /v1/models
        self._context_configured = context_length is not None
        self.ok = False

    async def probe(self) -> None:
        """Health, the served model and its context length (when not configured) and, for `auto`
        admission, the engine's own queue."""
        self.ok = await self.engine.healthy()
        learn_context = not self._context_configured and self.context_length is None
        if self.ok and (not self.served_model or learn_context):
            with contextlib.suppress(SidecarError):
                models = await self.engine.models()
                ours = [m for m in models if m.id == self.served_model] or models[:1]
                if ours:
                    self.served_model = self.served_model or ours[0].id
                    if learn_context:
                        self.context_length = ours[0].context_length
        if self.admission.auto and self.ok:
            self.admission.observe_engine_waiting(await self.engine.num_requests_waiting())

    async def check_fits(self, model: str, req: SubmitRequest) -> None:
        """Refuse a prompt that cannot fit the engine's context with its max_tokens (INVALID_ARGUMENT).

        Counted by the engine's tokenizer only when the byte length leaves it in doubt (a token is at
        least one byte); an engine that cannot count decides itself."""
        context = self.context_length
        if context is None or prompt_bytes(req) + req.max_tokens <= context:
            return
        tokens = await self.engine.count_tokens(model, req.prompt, req.messages)
        if tokens is not None and tokens + req.max_tokens > context:
            raise invalid(
                f"the prompt ({tokens} tokens) plus max_tokens ({req.max_tokens}) exceeds the model's "
                f"context length {context}"
            )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.probe()
            except Exception:  # the probe must never die
                log.exception("engine probe failed")
