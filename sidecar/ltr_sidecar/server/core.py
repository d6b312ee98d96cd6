"""SchedulerCore: score at arrival → rank-ordered queue → admission to the engine → stream back.

The core is surface-neutral (gRPC and HTTP both call `submit`). One asyncio loop owns all state; the
predictor runs in one worker thread (`scorer.MicroBatchScorer`) and the serving predictor lives in a
`predictor_slot.PredictorSlot`. Requests arrive validated: each surface checks its input at the edge
with `validation.validate_request(req, core.limits)` before calling `submit`.

Life of a request (`submit`): score (batched) → push into the `RankQueue` → wait until the
admission loop pops it (engine has room) → stream from the engine → exactly one `FinalResult`.
Errors before the first event are raised as `SidecarError`; closing the generator is a client
cancellation (removed from the queue, or its engine stream aborted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from ltr.contract import Outcome
from ltr_sidecar.engine.client import EngineChunk, EngineClient, EngineRequest
from ltr_sidecar.errors import EngineUnreachable, ErrorCode, SidecarError
from ltr_sidecar.predictor.runtime.base import Predictor
from ltr_sidecar.scheduling import QueueFullError, QueueItem, RankQueue
from ltr_sidecar.server.admission import Admission
from ltr_sidecar.server.config import SidecarConfig
from ltr_sidecar.server.engine_monitor import EngineMonitor
from ltr_sidecar.server.metrics import SidecarMetrics
from ltr_sidecar.server.predictor_slot import PredictorSlot
from ltr_sidecar.server.protocols import CoreMetrics, TraceSink
from ltr_sidecar.server.request_state import QueuedTokens, RequestState
from ltr_sidecar.server.scorer import MicroBatchScorer
from ltr_sidecar.server.types import (
    FinalResult,
    PredictorStatus,
    QueueSnapshot,
    StreamEvent,
    SubmitRequest,
    TokenChunk,
)
from ltr_sidecar.server.validation import RequestLimits, invalid, validate_rank

log = logging.getLogger(__name__)

FINISH_OUTCOMES = {"stop": Outcome.OK, "length": Outcome.OK, "cancelled": Outcome.CANCELLED}


class SchedulerCore:
    """The scheduling core shared by the gRPC and HTTP surfaces (see module doc)."""

    def __init__(
        self,
        config: SidecarConfig,
        predictor: Predictor | None = None,
        metrics: CoreMetrics | None = None,
        traces: TraceSink | None = None,
        engine: EngineClient | None = None,
    ) -> None:
        self.config = config
        self.metrics: CoreMetrics = metrics if metrics is not None else SidecarMetrics()
        self.traces = traces
        self.engine = engine or EngineClient(config.engine_url, config.engine_api)
        self.admission = Admission(config.max_concurrency)
        self.queue = RankQueue(config.policy, config.starvation_threshold, config.max_queue)
        self._scorer: MicroBatchScorer | None = None
        self._initial_predictor = predictor
        self._slot = PredictorSlot(config, self._predictor_changed)
        self._active: dict[str, RequestState] = {}
        self._queued_tokens = QueuedTokens()  # predicted output tokens waiting in the queue
        self._in_flight = 0
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._draining = False
        self.monitor = EngineMonitor(
            self.engine, self.admission, config.model, context_length=config.engine_context_length or None
        )
        self._promotions_seen = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the scorer, the admission loop and the engine probe; load the initial predictor."""
        if self._started:
            return
        self._wake, self._idle = asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._scorer = MicroBatchScorer(self.config.scoring_window_ms / 1000.0, self.metrics)
        self._scorer.start()
        await self.engine.start()
        if self._initial_predictor is not None:
            self._slot.install(self._initial_predictor)
        else:
            await self._slot.load_initial()
        self.metrics.set_max_concurrency(self.admission.limit)
        await self.monitor.probe()
        self._tasks = [
            asyncio.create_task(self._admission_loop(), name="ltr-admission"),
            asyncio.create_task(self.monitor.run(), name="ltr-engine-probe"),
        ]
        self._started = True

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: refuse new requests, finish queued + in-flight within `grace_s`, then abort the rest."""
        if not self._started:
            return
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        self._draining = True
        assert self._idle is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace)
        leftover = self._abort_all("sidecar shut down before the request could be served")
        if leftover:
            log.warning("drain grace %.1fs over: aborted %d request(s)", grace, leftover)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=5.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._scorer:
            await self._scorer.close()
        await self.engine.close()
        self._started = False

    def _abort_all(self, reason: str) -> int:
        n = 0
        while (item := self.queue.pop(time.monotonic())) is not None:
            state: RequestState = item.payload
            self._queued_tokens.discard(item.request_id)
            if not state.admitted.done():
                state.admitted.set_exception(SidecarError(ErrorCode.UNAVAILABLE, reason))
                n += 1
        for state in list(self._active.values()):
            if state.stream is not None:
                state.stream.close()
                n += 1
        self._refresh_gauges()
        return n

    # -- properties --------------------------------------------------------------------------------
    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def ready(self) -> bool:
        """Accepting requests and the engine answers."""
        return self._started and not self._draining and self.monitor.ok

    @property
    def engine_ok(self) -> bool:
        """The engine answered the last probe (or the last request reached it)."""
        return self.monitor.ok

    @property
    def served_model(self) -> str:
        return self.monitor.served_model

    @property
    def predictor_version(self) -> str:
        return self._slot.version

    @property
    def fallback_fcfs(self) -> bool:
        """True when the policy needs a predictor and none is loaded (the sidecar serves FCFS)."""
        return self._slot.predictor is None and self.queue.policy.uses_predictor

    @property
    def policy_name(self) -> str:
        return "fcfs" if self.fallback_fcfs else self.queue.policy.name

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def limits(self) -> RequestLimits:
        """What the surfaces validate requests against (with the engine's context length once known)."""
        return RequestLimits.from_config(self.config, self.monitor.context_length)

    # -- requests ----------------------------------------------------------------------------------
    async def submit(self, req: SubmitRequest) -> AsyncGenerator[StreamEvent, None]:
        """Queue `req` and stream its output; see the module doc for the error contract."""
        state = await self._enqueue(req)
        try:
            await self._wait_admission(state)
            async for event in self._run_engine(state):
                yield event
        finally:
            self._finish(state)

    async def _enqueue(self, req: SubmitRequest) -> RequestState:
        if not self._started or self._draining:
            self.metrics.request_finished(Outcome.UNAVAILABLE)
            why = "sidecar is draining (shutting down)" if self._draining else "sidecar not started"
            raise SidecarError(ErrorCode.UNAVAILABLE, why)
        if not req.request_id:
            req.request_id = uuid.uuid4().hex
        if req.request_id in self._active:
            self.metrics.request_finished(Outcome.INVALID)
            raise invalid(f"request id {req.request_id!r} is already in progress")
        if req.deadline is not None and req.deadline <= time.time():
            self.metrics.request_finished(Outcome.DEADLINE)
            raise SidecarError(ErrorCode.DEADLINE_EXCEEDED, "the request's deadline has already passed")
        if len(self.queue) >= self.config.max_queue:  # fail fast, before spending predictor time
            self.metrics.request_finished(Outcome.REJECTED_FULL)
            raise SidecarError(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"queue is full ({self.config.max_queue} requests waiting); retry later",
            )
        try:
            await self.monitor.check_fits(req.model or self.monitor.served_model, req)
        except SidecarError:
            self.metrics.request_finished(Outcome.INVALID)
            raise
        assert self._scorer is not None
        ((score, version, predicted),) = await self._scorer.score([req.rank_text()])
        if self._draining:
            self.metrics.request_finished(Outcome.UNAVAILABLE)
            raise SidecarError(ErrorCode.UNAVAILABLE, "sidecar is draining (shutting down)")
        now = time.monotonic()
        state = RequestState(req, now, score, version, asyncio.get_running_loop().create_future(), predicted)
        item = QueueItem(req.request_id, now, score, req.priority, req.expected_output_tokens, payload=state)
        try:
            self.queue.push(item)
        except QueueFullError as exc:
            self.metrics.request_finished(Outcome.REJECTED_FULL)
            raise SidecarError(ErrorCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except ValueError as exc:
            self.metrics.request_finished(Outcome.INVALID)
            raise invalid(str(exc)) from None
        self._active[req.request_id] = state
        self._queued_tokens.add(req.request_id, state.predicted_tokens)
        assert self._idle is not None and self._wake is not None
        self._idle.clear()
        state.rank_at_arrival = self.queue.rank_of(req.request_id, now) if len(self.queue) > 1 else 0
        self.metrics.request_queued(req.priority)
        self.admission.observe_saturation(self._in_flight, len(self.queue))
        self._refresh_gauges()
        self._wake.set()
        return state

    async def _wait_admission(self, state: RequestState) -> None:
        deadline = state.req.deadline
        try:
            if deadline is None:
                await state.admitted
            else:
                timeout = max(0.0, deadline - time.time())
                await asyncio.wait_for(asyncio.shield(state.admitted), timeout=timeout)
        except TimeoutError:
            if self.queue.remove(state.req.request_id) is not None:
                self._record(state, Outcome.DEADLINE)
                raise SidecarError(
                    ErrorCode.DEADLINE_EXCEEDED, "deadline passed while the request was queued"
                ) from None
            await state.admitted  # admitted at the same instant: serve it
        except SidecarError:
            self._record(state, Outcome.UNAVAILABLE)
            raise

    def _record(self, state: RequestState, outcome: Outcome) -> None:
        if state.outcome is None:
            state.outcome = outcome
            self.metrics.request_finished(outcome)

    async def _run_engine(self, state: RequestState) -> AsyncIterator[StreamEvent]:
        req = state.req
        model = req.model or self.monitor.served_model
        sent = time.monotonic()
        engine_req = EngineRequest(
            model=model,
            max_tokens=req.max_tokens,
            prompt=req.prompt,
            messages=req.messages,
            sampling=req.sampling,
            request_id=req.request_id,
            priority=(-req.priority * 1_000_000 + min(state.rank_at_arrival, 999_999))
            if self.config.send_priority
            else None,
        )
        try:
            state.stream = await self.engine.open_stream(engine_req)
        except EngineUnreachable as exc:
            self.monitor.ok = False  # only an unreachable engine is marked down
            log.warning("engine unreachable: %s", exc.detail)
            self._record(state, Outcome.UNAVAILABLE)
            raise
        except SidecarError as exc:  # the engine answered this request with an error: its error alone
            self._record(state, Outcome.INVALID if exc.code is ErrorCode.INVALID_ARGUMENT else Outcome.ERROR)
            raise
        self.monitor.ok = True
        first: float | None = None
        try:
            async for ev in state.stream:
                if isinstance(ev, EngineChunk):
                    if first is None:
                        first = time.monotonic()
                        self.admission.observe_ttft(first - sent)
                    yield TokenChunk(ev.text, ev.tokens)
                    continue
                end = time.monotonic()
                if first is not None and ev.completion_tokens > 1:
                    self.admission.observe_tpot((end - first) / (ev.completion_tokens - 1))
                final = FinalResult(
                    finish_reason=ev.finish_reason,
                    prompt_tokens=ev.prompt_tokens,
                    completion_tokens=ev.completion_tokens,
                    scheduling=state.scheduling_info(self.policy_name),
                    ttft_s=(first or end) - state.arrival,
                    total_s=end - state.arrival,
                    error=ev.error,
                )
                self._completed(state, final, model)
                self._record(state, FINISH_OUTCOMES.get(ev.finish_reason, Outcome.ERROR))
                yield final
                return
        finally:
            if state.outcome is None:  # the client went away mid-stream: stop the engine's work
                state.stream.close()

    def _completed(self, state: RequestState, final: FinalResult, model: str) -> None:
        if final.finish_reason not in ("stop", "length"):
            return
        self.metrics.completion_observed(state.score, final.completion_tokens, state.predicted_tokens)
        if self.traces is None:
            return
        self.traces.record(state.trace_record(final, model, self.config.record_prompts))

    def _finish(self, state: RequestState) -> None:
        """Release everything the request holds (idempotent; runs on every exit path)."""
        rid = state.req.request_id
        self.queue.remove(rid)
        self._queued_tokens.discard(rid)
        self._record(state, Outcome.CANCELLED)
        if not state.admitted.done():
            state.admitted.cancel()
        if self._active.get(rid) is state:
            del self._active[rid]
        if state.slot_held:
            state.slot_held = False
            self._in_flight -= 1
        self._refresh_gauges()
        assert self._wake is not None and self._idle is not None
        self._wake.set()
        if not self._active:
            self._idle.set()

    # -- admission ---------------------------------------------------------------------------------
    async def _admission_loop(self) -> None:
        assert self._wake is not None
        tick = self.admission.tuning.interval_s if self.admission.auto else None
        while True:
            if tick is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=tick)
            self._wake.clear()
            now = time.monotonic()
            before = self.admission.limit
            if self.admission.update(now) != before:
                self.metrics.set_max_concurrency(self.admission.limit)
            self._admit(now)

    def _admit(self, now: float) -> None:
        admitted = False
        while self.admission.has_room(self._in_flight) and len(self.queue):
            item = self.queue.pop(now)
            if item is None:
                break
            self._queued_tokens.discard(item.request_id)
            state: RequestState = item.payload
            if state.admitted.done():
                continue
            state.admitted_at, state.promoted, state.slot_held = now, item.promoted, True
            self._in_flight += 1
            self.metrics.request_admitted(now - state.arrival)
            state.admitted.set_result(None)
            admitted = True
        self.admission.observe_saturation(self._in_flight, len(self.queue))
        promoted = self.queue.promotions_total - self._promotions_seen
        if promoted:
            self._promotions_seen = self.queue.promotions_total
            self.metrics.starvation_promoted(promoted)
        if admitted:
            self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        self.metrics.set_queue_size(len(self.queue))
        self.metrics.set_queue_predicted_tokens(self._queued_tokens.total)
        self.metrics.set_in_flight(self._in_flight)

    # -- ranking and predictor ---------------------------------------------------------------------
    async def rank(self, prompts: Sequence[str]) -> tuple[list[float], str]:
        """Scores for `prompts` without queueing (`ltr.contract` convention), and the predictor version."""
        if not self._started or self._scorer is None:
            raise SidecarError(ErrorCode.UNAVAILABLE, "sidecar not started")
        validate_rank(prompts, self.limits, self.config.max_queue)
        results = await self._scorer.score(list(prompts))
        return [r.score for r in results], results[0].version if results else ""

    def snapshot(self, include_entries: bool = False, limit: int = 100) -> QueueSnapshot:
        return QueueSnapshot.of(
            self.queue,
            time.monotonic(),
            in_flight=self._in_flight,
            max_concurrency=self.admission.limit,
            predictor_version=self.predictor_version,
            policy=self.policy_name,
            draining=self._draining,
            limit=(limit if limit > 0 else 100) if include_entries else 0,
        )

    def predictor_status(self) -> PredictorStatus:
        tau, n = self.metrics.online_kendall_tau()
        slot = self._slot
        return PredictorStatus(
            version=slot.version,
            backbone=slot.backbone,
            loaded_at=slot.loaded_at,
            last_error=slot.last_error,
            online_kendall_tau=float(tau),
            online_samples=int(n),
            fallback_fcfs=self.fallback_fcfs,
        )

    def _predictor_changed(self, predictor: Predictor | None) -> None:
        if self._scorer is not None:
            self._scorer.predictor = predictor
        self.metrics.predictor_loaded(self.predictor_version, str(predictor.backbone) if predictor else "")

    async def load_predictor(self, version: str | None = None, path: str | None = None) -> PredictorStatus:
        """Load and atomically swap in a predictor; on failure keep the old one and raise SidecarError.

        Queued requests keep the score they were given at arrival (no re-scoring)."""
        await self._slot.load(version, path)
        return self.predictor_status()

    async def reload_from_config(self, config: SidecarConfig) -> bool:
        """Apply a changed config file's predictor source (hot reload); True when a new predictor loaded."""
        if config.predictor_source() == self.config.predictor_source():
            return False
        self.config = self.config.with_predictor_source(config)
        return await self._slot.reload_from_config(self.config)
