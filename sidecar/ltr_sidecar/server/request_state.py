"""One request's state inside the core, from arrival to finish, and what it reports when it ends."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ltr.contract import Outcome
from ltr_sidecar.data.traces import TraceRecord
from ltr_sidecar.engine.client import EngineStream
from ltr_sidecar.server.types import FinalResult, SchedulingInfo, SubmitRequest


@dataclass(eq=False)
class RequestState:
    """A request's state from arrival to finish."""

    req: SubmitRequest
    arrival: float  # monotonic
    score: float
    version: str
    admitted: asyncio.Future[None]
    predicted_tokens: float | None = None  # the calibration's expected output tokens; None = unknown
    rank_at_arrival: int = 0
    admitted_at: float = 0.0
    promoted: bool = False
    stream: EngineStream | None = None
    slot_held: bool = False
    outcome: Outcome | None = None  # recorded once in metrics

    def scheduling_info(self, policy: str) -> SchedulingInfo:
        """Explainability of this request's scheduling (the `ltr` object of responses)."""
        return SchedulingInfo(
            score=self.score,
            rank_at_arrival=self.rank_at_arrival,
            queue_wait_s=max(0.0, self.admitted_at - self.arrival),
            promoted=self.promoted,
            policy=policy,
            predictor_version=self.version,
            priority=self.req.priority,
            predicted_output_tokens=self.predicted_tokens,
        )

    def trace_record(self, final: FinalResult, model: str, record_prompts: bool) -> TraceRecord:
        """What the trace files keep of this completed request (the prompt only when allowed)."""
        keep_prompt = record_prompts and not self.req.no_trace
        return TraceRecord(
            timestamp=time.time(),
            request_id=self.req.request_id,
            prompt=self.req.rank_text() if keep_prompt else None,
            prompt_tokens=final.prompt_tokens,
            score=self.score,
            output_tokens=final.completion_tokens,
            predictor_version=self.version,
            model=model,
            policy=final.scheduling.policy,
            finish_reason=final.finish_reason,
        )


class QueuedTokens:
    """The sum of the predicted output tokens of the queued requests (`ltr_queue_predicted_tokens`).

    `add` on enqueue, `discard` whenever a request leaves the queue (idempotent); unknown predictions
    count 0. The running sum is reset to exactly 0 when the queue empties (no float drift)."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self.total = 0.0

    def add(self, request_id: str, tokens: float | None) -> None:
        self.discard(request_id)
        self._tokens[request_id] = float(tokens or 0.0)
        self.total += self._tokens[request_id]

    def discard(self, request_id: str) -> None:
        tokens = self._tokens.pop(request_id, None)
        if tokens is not None:
            self.total = self.total - tokens if self._tokens else 0.0
