"""Admission control: how many requests the engine may hold at once (backpressure).

The sidecar's order only matters if the engine's own FCFS queue stays near empty, so requests are
admitted only while `in_flight < limit`. The limit is either fixed or `auto`: an AIMD controller
(pure, time passed in) that

* shrinks the limit ×`decrease` when the engine shows it is queueing — its own waiting-queue gauge
  (`vllm:num_requests_waiting` & co., when the engine exports one) is above zero, or else the
  engine-side time-to-first-token (TTFT) of recent requests exceeds `ttft_ratio` × the engine's
  current time per output token (TPOT) + `ttft_margin_s`. A continuous-batching engine starts a
  request it has room for within a step or two, so a first token many steps late means the request
  waited in the engine's own queue. (Before any TPOT is known, the minimum TTFT seen is the yardstick.)
* grows it (by an eighth, at least one) when the limit was actually the bottleneck (requests waited
  in our queue while the engine was full) and the engine kept up.

Decisions are taken at most once per `interval_s`, on the samples seen since the last decision.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class AutoTuning:
    """Knobs of the `auto` controller (defaults suit engines from tiny CPU models to vLLM on GPUs)."""

    initial: int = 8
    minimum: int = 1
    maximum: int = 512
    interval_s: float = 0.5
    ttft_ratio: float = 4.0
    ttft_margin_s: float = 0.01
    decrease: float = 0.75
    baseline_drift: float = 0.02  # the baseline creeps up 2 %/decision so it can follow a slower engine


class Admission:
    """The current admission limit: fixed (an int) or `auto` (see module doc)."""

    def __init__(self, max_concurrency: int | str, tuning: AutoTuning = AutoTuning()) -> None:
        self.auto = max_concurrency == "auto"
        if not self.auto and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ValueError(f"max_concurrency must be 'auto' or an integer >= 1, got {max_concurrency!r}")
        self.tuning = tuning
        self.limit = tuning.initial if self.auto else int(max_concurrency)
        self.baseline_ttft: float | None = None
        self._samples: list[float] = []
        self._tpot: deque[float] = deque(maxlen=64)
        self._waiting: float | None = None
        self._saturated = False
        self._last_decision: float | None = None
        self._last_congested = False
        self.decisions = {"grow": 0, "shrink": 0}

    def has_room(self, in_flight: int) -> bool:
        return in_flight < self.limit

    def observe_saturation(self, in_flight: int, queued: int) -> None:
        """Record that requests waited in our queue while the engine was at the limit."""
        if queued > 0 and in_flight >= self.limit:
            self._saturated = True

    def observe_ttft(self, engine_ttft_s: float) -> None:
        """Time from sending a request to the engine to its first token."""
        if engine_ttft_s >= 0:
            self._samples.append(engine_ttft_s)
            if self.baseline_ttft is None or engine_ttft_s < self.baseline_ttft:
                self.baseline_ttft = engine_ttft_s

    def observe_tpot(self, seconds_per_token: float) -> None:
        """Mean time between output tokens of a finished request (the engine's current step time)."""
        if seconds_per_token > 0:
            self._tpot.append(seconds_per_token)

    def observe_engine_waiting(self, waiting: float | None) -> None:
        """The engine's own waiting-queue length (None when it exports none)."""
        self._waiting = waiting

    def congested(self) -> bool | None:
        """Whether the engine queues (None = no evidence either way yet)."""
        if self._waiting is not None:
            return self._waiting > 0
        if not self._samples or self.baseline_ttft is None:
            return None
        t = self.tuning
        recent = statistics.median(self._samples)
        if self._tpot:
            return recent > t.ttft_ratio * statistics.median(self._tpot) + t.ttft_margin_s
        return recent > max(self.baseline_ttft * t.ttft_ratio, self.baseline_ttft + t.ttft_margin_s)

    def update(self, now: float) -> int:
        """Take an AIMD decision if `interval_s` passed since the last one; returns the limit."""
        if not self.auto:
            return self.limit
        if self._last_decision is None:
            self._last_decision = now
            return self.limit
        t = self.tuning
        if now - self._last_decision < t.interval_s:
            return self.limit
        congested = self.congested()
        if congested is None:  # no new first tokens this window: keep the last verdict
            congested = self._last_congested
        self._last_congested = congested
        if congested:
            self.limit = max(t.minimum, min(self.limit - 1, int(self.limit * t.decrease)))
            self.decisions["shrink"] += 1
        elif self._saturated:
            self.limit = min(t.maximum, self.limit + max(1, self.limit // 8))
            self.decisions["grow"] += 1
        if self.baseline_ttft is not None:
            self.baseline_ttft *= 1.0 + t.baseline_drift
        self._samples.clear()
        self._saturated = False
        self._last_decision = now
        return self.limit
