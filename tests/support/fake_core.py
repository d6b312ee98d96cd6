"""A scripted fake scheduler core: a test double for the HTTP layer only (the e2e tests use the real one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from ltr_sidecar.errors import ErrorCode, SidecarError
from ltr_sidecar.server.metrics import SidecarMetrics
from ltr_sidecar.server.types import (
    FinalResult,
    PredictorStatus,
    SchedulingInfo,
    StreamEvent,
    SubmitRequest,
    TokenChunk,
)
from ltr_sidecar.server.validation import RequestLimits


@dataclass
class FakeCore:
    """Scripted stand-in for SchedulerCore: yields `tokens` then one FinalResult.

    `fail_before` raises before the first event (like queue-full); `fail_after` raises after the
    tokens; `omit_final` ends without a FinalResult (a broken core); `gate` (when set) holds every
    request "queued" until it is set; `finish_reason` shapes the final result. Records submitted
    requests and which streams were closed early."""

    tokens: tuple[str, ...] = ("Hello", " world", "!")
    served_model: str = "tiny-model"
    ready: bool = True
    engine_ok: bool = True
    draining: bool = False
    finish_reason: str = "length"
    fail_before: Exception | None = None
    fail_after: Exception | None = None
    omit_final: bool = False
    gate: asyncio.Event | None = None
    version: str = "v7"
    submitted: list[SubmitRequest] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    closed_early: list[str] = field(default_factory=list)
    limits: RequestLimits = field(default_factory=lambda: RequestLimits(4096, (0, 1, 2, 3)))
    metrics: SidecarMetrics | None = None

    def predictor_status(self) -> PredictorStatus:
        return PredictorStatus(
            version=self.version,
            backbone="fast" if self.version else "",
            loaded_at=None,
            last_error="",
            online_kendall_tau=0.0,
            online_samples=0,
            fallback_fcfs=not self.version,
        )

    async def submit(self, req: SubmitRequest) -> AsyncGenerator[StreamEvent, None]:
        self.submitted.append(req)
        if self.fail_before is not None:
            raise self.fail_before
        done = False
        try:
            if self.gate is not None:
                await self.gate.wait()
            for t in self.tokens:
                yield TokenChunk(text=t)
                await asyncio.sleep(0)
            if self.fail_after is not None:
                raise self.fail_after
            if self.omit_final:
                return
            info = SchedulingInfo(
                score=1.5,
                rank_at_arrival=2,
                queue_wait_s=0.0125,
                promoted=False,
                policy="ltr",
                predictor_version=self.version,
                priority=req.priority,
            )
            done = True
            self.finished.append(req.request_id)
            yield FinalResult(
                finish_reason=self.finish_reason,
                prompt_tokens=5,
                completion_tokens=len(self.tokens),
                scheduling=info,
                ttft_s=0.02,
                total_s=0.05,
                error="boom" if self.finish_reason == "error" else "",
            )
        finally:
            if not done:
                self.closed_early.append(req.request_id)


QUEUE_FULL = SidecarError(ErrorCode.RESOURCE_EXHAUSTED, "queue is full (2 requests waiting); retry later")
