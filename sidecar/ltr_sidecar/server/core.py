"""SchedulerCore: score at arrival → rank-ordered queue → admission to the engine → stream back.

The core is surface-neutral (gRPC and HTTP both call `submit`). One asyncio loop owns all state; the
predictor runs in one worker thread, fed by a micro-batcher so concurrent arrivals share one call.

Life of a request (`submit`): validate → score (batched) → push into the `RankQueue` → wait until the
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
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltr_sidecar.engine.client import EngineChunk, EngineClient, EngineRequest, EngineStream
from ltr_sidecar.scheduling import QueueFullError, QueueItem, RankQueue
from ltr_sidecar.server.admission import Admission
from ltr_sidecar.server.config import SidecarConfig
from ltr_sidecar.server.types import (
    ErrorCode,
    FinalResult,
    SchedulingInfo,
    SidecarError,
    StreamEvent,
    SubmitRequest,
    TokenChunk,
)

log = logging.getLogger(__name__)

CHAT_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
SAMPLING_KEYS = frozenset({"temperature", "top_p", "top_k", "stop", "seed", "ignore_eos", "presence_penalty",
                           "frequency_penalty"})
MAX_REQUEST_ID = 256
ENGINE_PROBE_S = 2.0


# -- public dataclasses (mirror the proto messages) ------------------------------------------------
@dataclass
class QueueEntryInfo:
    request_id: str
    score: float
    priority: int
    waited_s: float
    promoted: bool


@dataclass
class QueueSnapshot:
    """Mirrors ltr.v1.QueueSnapshot (durations in seconds)."""

    queue_length: int
    in_flight: int
    max_concurrency: int
    per_band: dict[int, int]
    oldest_wait_s: float
    predictor_version: str
    policy: str
    starvation_threshold_s: float
    entries: list[QueueEntryInfo] = field(default_factory=list)
    draining: bool = False


@dataclass
class PredictorStatus:
    """Mirrors ltr.v1.PredictorStatus (loaded_at: Unix seconds, None when nothing is loaded)."""

    version: str
    backbone: str
    loaded_at: float | None
    last_error: str
    online_kendall_tau: float
    online_samples: int
    fallback_fcfs: bool = False


# -- validation (pure) ------------------------------------------------------------------------------
def _invalid(message: str) -> SidecarError:
    return SidecarError(ErrorCode.INVALID_ARGUMENT, message)


def _check_number(key: str, value: Any, low: float | None, high: float | None, integer: bool = False) -> None:
    wrong_type = not isinstance(value, int | float) or (integer and not isinstance(value, int))
    if isinstance(value, bool) or wrong_type:
        raise _invalid(f"sampling.{key} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value != value or (low is not None and value < low) or (high is not None and value > high):
        raise _invalid(f"sampling.{key} must be in [{low}, {high}], got {value!r}")


def validate_request(req: SubmitRequest, config: SidecarConfig) -> None:
    """Raise SidecarError(INVALID_ARGUMENT) with a precise message for bad input (pure)."""
    if not isinstance(req.request_id, str) or len(req.request_id) > MAX_REQUEST_ID:
        raise _invalid(f"request_id must be a string of at most {MAX_REQUEST_ID} characters")
    if (req.prompt is None) == (req.messages is None):
        raise _invalid("exactly one of prompt or chat messages must be given")
    if req.prompt is not None:
        if not isinstance(req.prompt, str) or not req.prompt.strip():
            raise _invalid("prompt must be a non-empty string")
    else:
        msgs = req.messages
        if not isinstance(msgs, list) or not msgs:
            raise _invalid("chat messages must be a non-empty list")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
                raise _invalid(f"chat message {i} must be an object with 'role' and 'content'")
            if m["role"] not in CHAT_ROLES:
                raise _invalid(f"chat message {i}: unknown role {m['role']!r} (expected one of "
                               f"{', '.join(sorted(CHAT_ROLES))})")
            if not isinstance(m["content"], str):
                raise _invalid(f"chat message {i}: content must be a string")
        if not any(m["content"].strip() for m in msgs):
            raise _invalid("chat messages hold no text")
    mt = req.max_tokens
    if isinstance(mt, bool) or not isinstance(mt, int) or not 1 <= mt <= config.max_tokens_limit:
        raise _invalid(f"max_tokens must be an integer in [1, {config.max_tokens_limit}], got {mt!r}")
    if req.priority not in config.priority_bands:
        raise _invalid(f"unknown priority band {req.priority!r}; configured bands: {config.priority_bands}")
    eo = req.expected_output_tokens
    if eo is not None and (isinstance(eo, bool) or not isinstance(eo, int) or eo < 0):
        raise _invalid(f"expected_output_tokens must be an integer >= 0, got {eo!r}")
    if not isinstance(req.sampling, dict):
        raise _invalid("sampling must be a mapping")
    unknown = set(req.sampling) - SAMPLING_KEYS
    if unknown:
        raise _invalid(f"unknown sampling parameter(s) {sorted(unknown)}; known: {sorted(SAMPLING_KEYS)}")
    s = req.sampling
    checks: dict[str, tuple[float | None, float | None, bool]] = {
        "temperature": (0.0, 100.0, False), "top_p": (0.0, 1.0, False), "top_k": (0, None, True),
        "seed": (None, None, True), "presence_penalty": (-2.0, 2.0, False),
        "frequency_penalty": (-2.0, 2.0, False)}
    for key, (low, high, integer) in checks.items():
        if s.get(key) is not None:
            _check_number(key, s[key], low, high, integer)
    if s.get("top_p") is not None and s["top_p"] <= 0:
        raise _invalid("sampling.top_p must be > 0")
    stop = s.get("stop")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(x, str) and x for x in stop)):
        raise _invalid("sampling.stop must be a list of non-empty strings")
    if "ignore_eos" in s and not isinstance(s["ignore_eos"], bool):
        raise _invalid("sampling.ignore_eos must be true or false")
    dl = req.deadline
    if dl is not None and (isinstance(dl, bool) or not isinstance(dl, int | float)):
        raise _invalid("deadline must be a Unix timestamp in seconds")


# -- predictor resolution ---------------------------------------------------------------------------
def resolve_predictor_path(config: SidecarConfig, version: str | None = None,
                           path: str | None = None) -> Path:
    """Where to load a predictor from: explicit path, else store/version, else config dir, else bundled."""
    if path:
        return Path(path)
    if version:
        if not config.predictor_store:
            raise SidecarError(ErrorCode.FAILED_PRECONDITION,
                               f"cannot load version {version!r}: no predictor_store configured")
        return _store_resolve(config.predictor_store, version)
    if config.predictor_dir:
        return Path(config.predictor_dir)
    if config.predictor_store and config.predictor_version:
        return _store_resolve(config.predictor_store, config.predictor_version)
    # No version named: the bundled generic predictor (cold start). Never "latest in the store": an
    # unpromoted candidate published by a retrain job must not reach pods on a restart.
    from ltr_sidecar.predictor import bundled_predictor_path

    return Path(bundled_predictor_path())


def _store_resolve(store: str, version: str) -> Path:
    """Directory of `version` in the predictor store ("latest" names the newest)."""
    from ltr_sidecar.predictor.store import StoreError, open_store

    try:
        return Path(open_store(store).resolve(version))
    except StoreError as exc:
        code = ErrorCode.NOT_FOUND if "unknown" in str(exc) or "no versions" in str(exc) \
            else ErrorCode.FAILED_PRECONDITION
        raise SidecarError(code, f"predictor version {version!r}: {exc}") from exc
    except OSError as exc:
        raise SidecarError(ErrorCode.FAILED_PRECONDITION, f"predictor store {store}: {exc}") from exc


def _load_predictor_dir(path: Path) -> Any:
    from ltr_sidecar.predictor import load_predictor

    return load_predictor(path)


# -- internals -------------------------------------------------------------------------------------
class _NullMetrics:
    """Metrics disabled: every SidecarMetrics method is a no-op."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None

    def online_kendall_tau(self) -> tuple[float, int]:
        return 0.0, 0


class _Scorer:
    """Micro-batcher: arrivals within `window_s` (or during a running call) share one predictor call."""

    def __init__(self, window_s: float, metrics: Any) -> None:
        self.window_s = window_s
        self.metrics = metrics
        self.predictor: Any = None
        self._pending: list[tuple[str, asyncio.Future[tuple[float, str]]]] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltr-scorer")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ltr-scorer")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(SidecarError(ErrorCode.UNAVAILABLE, "sidecar is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def score(self, texts: Sequence[str]) -> list[tuple[float, str]]:
        """(score, predictor version) per text; (0.0, "") when no predictor is loaded."""
        if self.predictor is None:
            return [(0.0, "")] * len(texts)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in texts]
        self._pending.extend(zip(texts, futures, strict=True))
        self._wake.set()
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if self.window_s > 0:
                await asyncio.sleep(self.window_s)
            self._wake.clear()
            batch, self._pending = self._pending, []
            batch = [(t, f) for t, f in batch if not f.done()]
            if not batch:
                continue
            predictor = self.predictor
            texts = [t for t, _ in batch]
            start = time.perf_counter()
            try:
                if predictor is None:
                    scores, version = [0.0] * len(texts), ""
                else:
                    raw = await loop.run_in_executor(self._executor, predictor.score, texts)
                    scores, version = [float(x) for x in raw], str(predictor.version)
                    if len(scores) != len(texts):
                        raise RuntimeError(f"predictor gave {len(scores)} scores for {len(texts)} prompts")
            except Exception:  # a broken predictor must not take requests down: score 0 (FCFS)
                log.exception("predictor scoring failed; scoring the batch 0 (FCFS order)")
                scores, version = [0.0] * len(texts), ""
            self.metrics.scoring_observed(time.perf_counter() - start, len(texts))
            for (_, fut), s in zip(batch, scores, strict=True):
                if not fut.done():
                    fut.set_result((s if s == s else 0.0, version))


@dataclass(eq=False)
class _Request:
    """A request's state from arrival to finish."""

    req: SubmitRequest
    arrival: float  # monotonic
    score: float
    version: str
    admitted: asyncio.Future[None]
    rank_at_arrival: int = 0
    admitted_at: float = 0.0
    promoted: bool = False
    stream: EngineStream | None = None
    slot_held: bool = False
    outcome: str | None = None  # recorded once in metrics (ok, error, cancelled, deadline, ...)


class SchedulerCore:
    """The scheduling core shared by the gRPC and HTTP surfaces (see module doc)."""

    def __init__(self, config: SidecarConfig, predictor: Any = None, metrics: Any = None,
                 traces: Any = None, engine: EngineClient | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else _NullMetrics()
        self.traces = traces
        self.engine = engine or EngineClient(config.engine_url, config.engine_api)
        self.admission = Admission(config.max_concurrency)
        self.queue = RankQueue(config.policy, config.starvation_threshold, config.max_queue)
        self._scorer: _Scorer | None = None
        self._initial_predictor = predictor
        self._predictor: Any = None
        self._loaded_at: float | None = None
        self._last_error = ""
        self._active: dict[str, _Request] = {}
        self._in_flight = 0
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._draining = False
        self._engine_ok = False
        self._served_model = config.model
        self._promotions_seen = 0
        self._load_lock: asyncio.Lock | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the scorer, the admission loop and the engine probe; load the initial predictor."""
        if self._started:
            return
        self._wake, self._idle = asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._load_lock = asyncio.Lock()
        self._scorer = _Scorer(self.config.scoring_window_ms / 1000.0, self.metrics)
        self._scorer.start()
        await self.engine.start()
        if self._initial_predictor is not None:
            self._install(self._initial_predictor)
        else:
            await self._load_initial()
        self.metrics.set_max_concurrency(self.admission.limit)
        await self._probe_engine()
        self._tasks = [asyncio.create_task(self._admission_loop(), name="ltr-admission"),
                       asyncio.create_task(self._engine_loop(), name="ltr-engine-probe")]
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
            state: _Request = item.payload
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
        return self._started and not self._draining and self._engine_ok

    @property
    def served_model(self) -> str:
        return self._served_model

    @property
    def predictor_version(self) -> str:
        return str(getattr(self._predictor, "version", "")) if self._predictor is not None else ""

    @property
    def fallback_fcfs(self) -> bool:
        """True when the policy needs a predictor and none is loaded (the sidecar serves FCFS)."""
        return self._predictor is None and self.queue.policy.uses_predictor

    @property
    def policy_name(self) -> str:
        return "fcfs" if self.fallback_fcfs else self.queue.policy.name

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- requests ----------------------------------------------------------------------------------
    async def submit(self, req: SubmitRequest) -> AsyncIterator[StreamEvent]:
        """Queue `req` and stream its output; see the module doc for the error contract."""
        state = await self._enqueue(req)
        try:
            await self._wait_admission(state)
            async for event in self._run_engine(state):
                yield event
        finally:
            self._finish(state)

    async def _enqueue(self, req: SubmitRequest) -> _Request:
        if not self._started or self._draining:
            self.metrics.request_finished("unavailable")
            why = "sidecar is draining (shutting down)" if self._draining else "sidecar not started"
            raise SidecarError(ErrorCode.UNAVAILABLE, why)
        try:
            validate_request(req, self.config)
        except SidecarError:
            self.metrics.request_finished("invalid")
            raise
        if not req.request_id:
            req.request_id = uuid.uuid4().hex
        if req.request_id in self._active:
            self.metrics.request_finished("invalid")
            raise _invalid(f"request id {req.request_id!r} is already in progress")
        if req.deadline is not None and req.deadline <= time.time():
            self.metrics.request_finished("deadline")
            raise SidecarError(ErrorCode.DEADLINE_EXCEEDED, "the request's deadline has already passed")
        if len(self.queue) >= self.config.max_queue:  # fail fast, before spending predictor time
            self.metrics.request_finished("rejected_full")
            raise SidecarError(ErrorCode.RESOURCE_EXHAUSTED,
                               f"queue is full ({self.config.max_queue} requests waiting); retry later")
        assert self._scorer is not None
        ((score, version),) = await self._scorer.score([req.rank_text()])
        if self._draining:
            self.metrics.request_finished("unavailable")
            raise SidecarError(ErrorCode.UNAVAILABLE, "sidecar is draining (shutting down)")
        now = time.monotonic()
        state = _Request(req, now, score, version, asyncio.get_running_loop().create_future())
        item = QueueItem(req.request_id, now, score, req.priority, req.expected_output_tokens, payload=state)
        try:
            self.queue.push(item)
        except QueueFullError as exc:
            self.metrics.request_finished("rejected_full")
            raise SidecarError(ErrorCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except ValueError as exc:
            self.metrics.request_finished("invalid")
            raise _invalid(str(exc)) from None
        self._active[req.request_id] = state
        assert self._idle is not None and self._wake is not None
        self._idle.clear()
        state.rank_at_arrival = self.queue.rank_of(req.request_id, now) if len(self.queue) > 1 else 0
        self.metrics.request_queued(req.priority)
        self.admission.observe_saturation(self._in_flight, len(self.queue))
        self._refresh_gauges()
        self._wake.set()
        return state

    async def _wait_admission(self, state: _Request) -> None:
        deadline = state.req.deadline
        try:
            if deadline is None:
                await state.admitted
            else:
                timeout = max(0.0, deadline - time.time())
                await asyncio.wait_for(asyncio.shield(state.admitted), timeout=timeout)
        except TimeoutError:
            if self.queue.remove(state.req.request_id) is not None:
                self._record(state, "deadline")
                raise SidecarError(ErrorCode.DEADLINE_EXCEEDED,
                                   "deadline passed while the request was queued") from None
            await state.admitted  # admitted at the same instant: serve it
        except SidecarError:
            self._record(state, "unavailable")
            raise

    def _record(self, state: _Request, outcome: str) -> None:
        if state.outcome is None:
            state.outcome = outcome
            self.metrics.request_finished(outcome)

    async def _run_engine(self, state: _Request) -> AsyncIterator[StreamEvent]:
        req = state.req
        model = req.model or self._served_model
        sent = time.monotonic()
        engine_req = EngineRequest(
            model=model, max_tokens=req.max_tokens, prompt=req.prompt, messages=req.messages,
            sampling=req.sampling, request_id=req.request_id,
            priority=(-req.priority * 1_000_000 + min(state.rank_at_arrival, 999_999))
            if self.config.send_priority else None)
        try:
            state.stream = await self.engine.open_stream(engine_req)
        except SidecarError as exc:
            if exc.code is ErrorCode.UNAVAILABLE:
                self._engine_ok = False
            self._record(state, "unavailable" if exc.code is ErrorCode.UNAVAILABLE else "invalid")
            raise
        self._engine_ok = True
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
                    finish_reason=ev.finish_reason, prompt_tokens=ev.prompt_tokens,
                    completion_tokens=ev.completion_tokens, scheduling=self._scheduling_info(state),
                    ttft_s=(first or end) - state.arrival, total_s=end - state.arrival, error=ev.error)
                self._completed(state, final, model)
                self._record(state, {"stop": "ok", "length": "ok", "cancelled": "cancelled"}.get(
                    ev.finish_reason, "error"))
                yield final
                return
        finally:
            if state.outcome is None:  # the client went away mid-stream: stop the engine's work
                state.stream.close()

    def _scheduling_info(self, state: _Request) -> SchedulingInfo:
        return SchedulingInfo(
            score=state.score, rank_at_arrival=state.rank_at_arrival,
            queue_wait_s=max(0.0, state.admitted_at - state.arrival), promoted=state.promoted,
            policy=self.policy_name, predictor_version=state.version, priority=state.req.priority)

    def _completed(self, state: _Request, final: FinalResult, model: str) -> None:
        if final.finish_reason not in ("stop", "length"):
            return
        self.metrics.completion_observed(state.score, final.completion_tokens)
        if self.traces is None:
            return
        from ltr_sidecar.server.traces import TraceRecord

        keep_prompt = self.config.record_prompts and not state.req.no_trace
        self.traces.record(TraceRecord(
            timestamp=time.time(), request_id=state.req.request_id,
            prompt=state.req.rank_text() if keep_prompt else None, prompt_tokens=final.prompt_tokens,
            score=state.score, output_tokens=final.completion_tokens, predictor_version=state.version,
            model=model, policy=final.scheduling.policy, finish_reason=final.finish_reason))

    def _finish(self, state: _Request) -> None:
        """Release everything the request holds (idempotent; runs on every exit path)."""
        rid = state.req.request_id
        self.queue.remove(rid)
        self._record(state, "cancelled")
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
            state: _Request = item.payload
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
        self.metrics.set_in_flight(self._in_flight)

    async def _probe_engine(self) -> None:
        self._engine_ok = await self.engine.healthy()
        if self._engine_ok and not self._served_model:
            with contextlib.suppress(SidecarError):
                models = await self.engine.list_models()
                if models:
                    self._served_model = models[0]
        if self.admission.auto and self._engine_ok:
            self.admission.observe_engine_waiting(await self.engine.num_requests_waiting())

    async def _engine_loop(self) -> None:
        while True:
            await asyncio.sleep(ENGINE_PROBE_S)
            try:
                await self._probe_engine()
            except Exception:  # the probe must never die
                log.exception("engine probe failed")

    # -- ranking and predictor ---------------------------------------------------------------------
    async def rank(self, prompts: Sequence[str]) -> tuple[list[float], str]:
        """Scores (higher = shorter) for `prompts` without queueing, and the predictor version."""
        if not self._started or self._scorer is None:
            raise SidecarError(ErrorCode.UNAVAILABLE, "sidecar not started")
        if not prompts:
            raise _invalid("give at least one prompt to rank")
        if len(prompts) > self.config.max_queue:
            raise _invalid(f"at most {self.config.max_queue} prompts per Rank call")
        if not all(isinstance(p, str) for p in prompts):
            raise _invalid("prompts must be strings")
        results = await self._scorer.score(list(prompts))
        version = results[0][1] if results else ""
        return [s for s, _ in results], version

    def snapshot(self, include_entries: bool = False, limit: int = 100) -> QueueSnapshot:
        now = time.monotonic()
        entries: list[QueueEntryInfo] = []
        if include_entries:
            limit = 100 if limit <= 0 else limit
            for item in self.queue.ordered(now):
                if len(entries) >= limit:
                    break
                entries.append(QueueEntryInfo(item.request_id, item.score, item.priority,
                                              max(0.0, now - item.arrival),
                                              self.queue.is_due(item, now)))
        return QueueSnapshot(
            queue_length=len(self.queue), in_flight=self._in_flight, max_concurrency=self.admission.limit,
            per_band=self.queue.per_band(), oldest_wait_s=self.queue.peek_wait(now),
            predictor_version=self.predictor_version, policy=self.policy_name,
            starvation_threshold_s=self.queue.starvation_threshold, entries=entries, draining=self._draining)

    def predictor_status(self) -> PredictorStatus:
        tau, n = self.metrics.online_kendall_tau()
        p = self._predictor
        return PredictorStatus(
            version=self.predictor_version, backbone=str(getattr(p, "backbone", "")) if p is not None else "",
            loaded_at=self._loaded_at, last_error=self._last_error, online_kendall_tau=float(tau),
            online_samples=int(n), fallback_fcfs=self.fallback_fcfs)

    def _install(self, predictor: Any) -> None:
        self._predictor = predictor
        if self._scorer is not None:
            self._scorer.predictor = predictor
        self._loaded_at = time.time() if predictor is not None else None
        self.metrics.predictor_loaded(self.predictor_version, str(getattr(predictor, "backbone", "")))

    async def load_predictor(self, version: str | None = None, path: str | None = None) -> PredictorStatus:
        """Load and atomically swap in a predictor; on failure keep the old one and raise SidecarError.

        Queued requests keep the score they were given at arrival (no re-scoring)."""
        assert self._load_lock is not None, "start() first"
        async with self._load_lock:
            try:
                target = resolve_predictor_path(self.config, version, path)
                predictor = await asyncio.to_thread(_load_predictor_dir, target)
            except SidecarError as exc:
                self._last_error = exc.message
                raise
            except Exception as exc:  # PredictorLoadError, OSError, torch errors...
                self._last_error = f"loading predictor failed: {exc}"
                missing = isinstance(exc, FileNotFoundError)
                code = ErrorCode.NOT_FOUND if missing else ErrorCode.FAILED_PRECONDITION
                raise SidecarError(code, self._last_error) from exc
            self._install(predictor)
            self._last_error = ""
            log.info("predictor %s (%s) loaded from %s", self.predictor_version,
                     getattr(predictor, "backbone", "?"), target)
            return self.predictor_status()

    async def _load_initial(self) -> None:
        """Configured source, else the bundled default; if nothing loads, serve FCFS (never an outage)."""
        attempts: list[tuple[str | None, str | None]] = [(None, None)]
        if self.config.predictor_dir or self.config.predictor_store:
            from ltr_sidecar.predictor import bundled_predictor_path

            attempts.append((None, str(bundled_predictor_path())))
        errors = []
        for version, path in attempts:
            try:
                await self.load_predictor(version, path)
                if errors:
                    self._last_error = "; ".join(errors)
                return
            except SidecarError as exc:
                errors.append(exc.message)
            except ImportError as exc:
                errors.append(f"predictor package unavailable: {exc}")
        self._last_error = "; ".join(errors) + "; serving FCFS"
        log.warning("no predictor could be loaded (%s)", self._last_error)
        self._install(None)

    async def reload_from_config(self, config: SidecarConfig) -> bool:
        """Apply a changed config file: hot-reload the predictor if its source keys changed.

        Returns True when a new predictor was loaded. Other keys need a restart (logged)."""
        changed = [k for k in ("policy", "starvation_threshold", "max_queue", "max_concurrency", "grpc_port",
                               "http_port", "engine_url") if getattr(config, k) != getattr(self.config, k)]
        if changed:
            log.warning("config keys %s changed; they take effect on restart", changed)
        if config.predictor_source() == self.config.predictor_source():
            return False
        old = self.config
        self.config = SidecarConfig(**{**old.__dict__, "predictor_dir": config.predictor_dir,
                                       "predictor_store": config.predictor_store,
                                       "predictor_version": config.predictor_version})
        try:
            await self.load_predictor()
        except SidecarError as exc:
            log.error("predictor hot reload failed, keeping %r: %s", self.predictor_version, exc.message)
            return False
        return True
