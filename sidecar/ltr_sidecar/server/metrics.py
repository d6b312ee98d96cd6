"""Prometheus metrics of the sidecar (prefix `ltr_`, units in names, `_total` counters).

One `SidecarMetrics` per sidecar, on its own `CollectorRegistry` by default, so several sidecars (and
tests) can live in one process. Every hot-path method is O(1); the online Kendall τ over the last N
completions is computed lazily (at scrape time or when asked) and cached until a new completion
arrives.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ltr.contract import Outcome
from ltr_sidecar.stats import kendall_tau_b

#: `ltr_requests_total{outcome}` label values (all exported from the start, at 0).
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)

#: Fewer completions than this → the online τ reads 0 (too few pairs to mean anything).
MIN_TAU_SAMPLES = 10

QUEUE_WAIT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
SCORING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Output-token histogram buckets, shared by predicted and actual (compare them bucket by bucket).
OUTPUT_TOKEN_BUCKETS = tuple(float(2**k) for k in range(3, 14))  # 8 .. 8192


class SidecarMetrics:
    """The sidecar's metrics; methods are called by the core on the hot path (cheap, thread-safe)."""

    def __init__(self, registry: CollectorRegistry | None = None, online_window: int = 500) -> None:
        if online_window < MIN_TAU_SAMPLES:
            raise ValueError(f"online_window must be >= {MIN_TAU_SAMPLES} completions, got {online_window}")
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._queued = Counter(
            "ltr_requests_queued_total",
            "Requests accepted into the queue, by priority band.",
            ["priority"],
            registry=r,
        )
        self._queue_size = Gauge(
            "ltr_queue_size", "Requests waiting for admission to the engine.", registry=r
        )
        self._queue_predicted = Gauge(
            "ltr_queue_predicted_tokens",
            "Sum of the predicted output tokens of the requests waiting for admission (0 when unknown).",
            registry=r,
        )
        self._in_flight = Gauge(
            "ltr_in_flight_requests", "Requests admitted to the engine and not finished.", registry=r
        )
        self._max_concurrency = Gauge(
            "ltr_max_concurrency", "Current admission limit (changes with max_concurrency=auto).", registry=r
        )
        self._wait = Histogram(
            "ltr_queue_wait_seconds",
            "Time requests spent queued before admission.",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self._requests = Counter(
            "ltr_requests_total", "Finished requests by outcome.", ["outcome"], registry=r
        )
        self._outcome_children = {o: self._requests.labels(outcome=o.value) for o in Outcome}
        self._promotions = Counter(
            "ltr_starvation_promotions_total", "Requests promoted by starvation prevention.", registry=r
        )
        self._scoring = Histogram(
            "ltr_scoring_seconds", "Predictor latency per scoring batch.", buckets=SCORING_BUCKETS, registry=r
        )
        self._batch = Histogram(
            "ltr_scoring_batch_size",
            "Prompts per predictor scoring batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self._predictor_info = Gauge(
            "ltr_predictor_info",
            "The predictor version serving (value 1).",
            ["version", "backbone"],
            registry=r,
        )
        self._fallback = Gauge(
            "ltr_predictor_fallback_fcfs",
            "1 when no predictor is loaded and the sidecar serves FCFS.",
            registry=r,
        )
        self._predicted_tokens = Histogram(
            "ltr_request_predicted_output_tokens",
            "Predicted output tokens (the predictor's calibration) of completed requests, when known.",
            buckets=OUTPUT_TOKEN_BUCKETS,
            registry=r,
        )
        self._output_tokens = Histogram(
            "ltr_request_output_tokens",
            "Actual output tokens of completed requests.",
            buckets=OUTPUT_TOKEN_BUCKETS,
            registry=r,
        )
        self._tau = Gauge(
            "ltr_rank_kendall_tau",
            "Kendall tau-b between predicted order (-score) and actual output tokens over the "
            f"last completions (+1 = perfect; 0 while fewer than {MIN_TAU_SAMPLES}).",
            registry=r,
        )
        self._tau_samples = Gauge(
            "ltr_rank_kendall_tau_samples", "Completions the online Kendall tau is computed over.", registry=r
        )
        self._traces_enabled = Gauge(
            "ltr_traces_enabled", "1 while completions are recorded to trace files.", registry=r
        )
        self._trace_errors = Counter(
            "ltr_trace_errors_total", "Trace directories that could not be used (traces off).", registry=r
        )
        self._trace_drops = Gauge(
            "ltr_trace_records_dropped", "Trace records lost (buffer overflow or write errors).", registry=r
        )
        self._tau.set_function(lambda: self.online_kendall_tau()[0])
        self._tau_samples.set_function(lambda: float(len(self._window)))
        self._queued_children: dict[int, Counter] = {}
        self._window: deque[tuple[float, int]] = deque(maxlen=online_window)
        self._lock = threading.Lock()
        self._generation = 0  # bumped on every completion; the τ cache is valid for one generation
        self._tau_cache: tuple[int, float, int] = (0, 0.0, 0)
        self._fallback.set(1)  # nothing loaded yet

    # -- queue and admission -------------------------------------------------------------------------
    def request_queued(self, priority: int) -> None:
        """A request entered the queue in band `priority`."""
        child = self._queued_children.get(priority)
        if child is None:
            child = self._queued_children[priority] = self._queued.labels(priority=str(priority))
        child.inc()

    def set_queue_size(self, n: int) -> None:
        self._queue_size.set(n)

    def set_queue_predicted_tokens(self, tokens: float) -> None:
        self._queue_predicted.set(max(0.0, tokens))

    def set_in_flight(self, n: int) -> None:
        self._in_flight.set(n)

    def set_max_concurrency(self, n: int) -> None:
        self._max_concurrency.set(n)

    def request_admitted(self, wait_s: float) -> None:
        """A request left the queue for the engine after waiting `wait_s` seconds."""
        self._wait.observe(max(0.0, wait_s))

    def request_finished(self, outcome: Outcome) -> None:
        """Count a finished request (ValueError for a value that is not an `Outcome`)."""
        self._outcome_children[Outcome(outcome)].inc()

    def starvation_promoted(self, n: int = 1) -> None:
        if n > 0:
            self._promotions.inc(n)

    # -- traces --------------------------------------------------------------------------------------
    def set_traces_enabled(self, enabled: bool) -> None:
        self._traces_enabled.set(1 if enabled else 0)

    def trace_error(self) -> None:
        """A trace directory could not be used; the sidecar serves without traces."""
        self._trace_errors.inc()

    def track_trace_drops(self, dropped: Callable[[], int]) -> None:
        """Export the recorder's count of lost records."""
        self._trace_drops.set_function(lambda: float(dropped()))

    # -- predictor -----------------------------------------------------------------------------------
    def scoring_observed(self, seconds: float, batch_size: int) -> None:
        """One predictor call scored `batch_size` prompts in `seconds`."""
        self._scoring.observe(max(0.0, seconds))
        self._batch.observe(batch_size)

    def predictor_loaded(self, version: str, backbone: str) -> None:
        """A predictor version now serves (version "" = none loaded: FCFS fallback)."""
        self._predictor_info.clear()
        if version:
            self._predictor_info.labels(version=version, backbone=backbone).set(1)
        self._fallback.set(0 if version else 1)

    # -- online ranking quality ----------------------------------------------------------------------
    def completion_observed(
        self, score: float, output_tokens: int, predicted_tokens: float | None = None
    ) -> None:
        """A request scored `score` at arrival (predicted `predicted_tokens`, None = unknown) finished
        with `output_tokens` generated tokens."""
        self._output_tokens.observe(output_tokens)
        if predicted_tokens is not None:
            self._predicted_tokens.observe(predicted_tokens)
        with self._lock:
            self._window.append((score, output_tokens))
            self._generation += 1

    def online_kendall_tau(self) -> tuple[float, int]:
        """(τ-b between -score and output tokens over the window, samples); τ is 0 below 10 samples."""
        with self._lock:
            generation = self._generation
            if self._tau_cache[0] == generation:
                return self._tau_cache[1], self._tau_cache[2]
            pairs = list(self._window)
        n = len(pairs)
        tau = 0.0
        if n >= MIN_TAU_SAMPLES:
            value = kendall_tau_b([-s for s, _ in pairs], [t for _, t in pairs])
            tau = 0.0 if value != value else float(value)  # NaN (a constant side) → no information
        with self._lock:
            if self._generation == generation:
                self._tau_cache = (generation, tau, n)
        return tau, n

    # -- exposition ----------------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """Prometheus text exposition of this registry: (body, content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
