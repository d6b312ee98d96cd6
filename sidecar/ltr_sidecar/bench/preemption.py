"""Preemptive scheduling, pure: remaining-length estimators, the guard rails, the victim choice.

A preemptive policy orders waiting AND running requests by an estimate of their remaining output
tokens (lower first; ties by higher predictor score). A waiting request takes the seat (and KV
space) of the worst running ones when it beats each of them by the margin. What keeps that sane
(`PreemptionConfig`): a relative margin (hysteresis against score noise), a minimum progress since
the victim's last admission (its prefill is not wasted at once), a cap on preemptions per request
(after it, the request runs to completion) and per engine step (bounds the recompute burst). With
starvation prevention, requests past the threshold are never victims (re-queued, they would be
promoted at once: pure churn), and promoted candidates take the next free seat without preempting
(at overload most waiting requests are overdue, and preempting for them multiplies recomputation).
KV-cache room is the engine's: candidates must fit once the victims' KV is freed.

Estimators map (request index, tokens generated so far) to expected remaining tokens:
- `TrueRemaining`: L - g (the `srtf` limit);
- `StaticEstimate`: calibrated expected total, never updated (the paper: score once at arrival);
- `MinusGenerated`: calibrated expected total - g (floored at 1 token), re-anchored every K tokens;
- `ResidualEstimate`: E[L - g | L > g, score] (`LengthCalibration.expected_remaining`), re-evaluated
  every K tokens and counting down in between (TRAIL/ELIS-style re-ranking without the text).
This module could move to `ltr_sidecar.scheduling` as-is when the sidecar preempts (issue 15 step 3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ltr_sidecar.bench.calibration import LengthCalibration

Key = tuple[float, float]  # (expected remaining tokens, -score): smaller is served first


@dataclass(frozen=True)
class PreemptionConfig:
    """The guard rails of priority preemption (defaults: see docs/bench.md, chosen by a sweep)."""

    margin: float = 0.5  # preempt only if victim's estimate >= (1 + margin) × candidate's
    min_progress_tokens: int = 16  # tokens a request emits after (re)admission before it may be a victim
    max_preemptions: int = 4  # per request; after that it is never preempted for priority
    max_per_step: int = 8  # priority preemptions per engine step
    rerank_every: int = 16  # tokens between re-estimates of a running request (re-ranking estimators)

    def __post_init__(self) -> None:
        if (
            self.margin < 0
            or self.min_progress_tokens < 0
            or self.max_preemptions < 0
            or self.max_per_step < 0
        ):
            raise ValueError("preemption parameters must be >= 0")
        if self.rerank_every < 1:
            raise ValueError("rerank_every must be >= 1 token")


PAPER = PreemptionConfig(
    margin=0.0, min_progress_tokens=0, max_preemptions=1 << 30, max_per_step=1 << 30, rerank_every=1
)  # vllm-ltr: sort everything by score every step, no guard rails


class Estimator(Protocol):
    """Expected remaining output tokens of request `index` after `generated` tokens."""

    def remaining(self, index: int, generated: int) -> float: ...


@dataclass(frozen=True)
class TrueRemaining:
    lengths: Sequence[int]

    def remaining(self, index: int, generated: int) -> float:
        return float(self.lengths[index] - generated)


@dataclass(frozen=True)
class StaticEstimate:
    totals: Sequence[float]

    def remaining(self, index: int, generated: int) -> float:
        return self.totals[index]


class _Anchored:
    """Re-evaluate `fn(index, anchor)` at anchors every `every` tokens; count down in between."""

    def __init__(self, fn: Callable[[int, int], float], every: int) -> None:
        self._fn, self._every = fn, every
        self._cache: dict[tuple[int, int], float] = {}

    def remaining(self, index: int, generated: int) -> float:
        anchor = generated - generated % self._every
        value = self._cache.get((index, anchor))
        if value is None:
            value = self._cache[(index, anchor)] = self._fn(index, anchor)
        return max(1.0, value - (generated - anchor))


class MinusGenerated(_Anchored):
    def __init__(self, totals: Sequence[float], every: int) -> None:
        super().__init__(lambda i, g: max(1.0, totals[i] - g), every)


class ResidualEstimate(_Anchored):
    def __init__(self, calibration: LengthCalibration, scores: Sequence[float], every: int) -> None:
        super().__init__(lambda i, g: calibration.expected_remaining(scores[i], g), every)


ESTIMATORS = ("true", "static", "minus", "residual")


def make_estimator(
    kind: str,
    lengths: Sequence[int],
    scores: Sequence[float] | None,
    calibration: LengthCalibration | None,
    every: int,
) -> Estimator:
    """The estimator `kind` (one of ESTIMATORS) for requests with these true lengths and scores."""
    if kind == "true":
        return TrueRemaining(lengths)
    if scores is None or calibration is None:
        raise ValueError(f"the {kind!r} remaining-length estimator needs predictor scores and a calibration")
    if kind == "static":
        return StaticEstimate([calibration.expected_total(s) for s in scores])
    if kind == "minus":
        return MinusGenerated([calibration.expected_total(s) for s in scores], every)
    if kind == "residual":
        return ResidualEstimate(calibration, scores, every)
    raise ValueError(f"unknown estimator {kind!r}; expected one of {', '.join(ESTIMATORS)}")


@dataclass(frozen=True)
class Running:
    """What the victim choice needs to know about one running request."""

    request_id: str
    key: Key
    progress: int  # tokens emitted since its latest admission
    preemptions: int
    protected: bool  # starvation-promoted or past the starvation threshold
    kv_tokens: int


def beats(candidate: Key, victim: Key, margin: float) -> bool:
    """Whether a waiting request with `candidate` key should displace a running one with `victim`."""
    return victim > candidate and victim[0] >= (1.0 + margin) * candidate[0]


def choose_victims(
    candidate: Key, running: Sequence[Running], seats_short: int, kv_short: int, config: PreemptionConfig
) -> list[str] | None:
    """Running requests to preempt so the candidate fits, worst first; None if it cannot or should not.

    `seats_short`/`kv_short`: seats and KV tokens missing for the candidate. Only eligible requests
    the candidate beats are taken.
    """
    eligible = [
        r
        for r in running
        if not r.protected
        and r.preemptions < config.max_preemptions
        and r.progress >= config.min_progress_tokens
        and beats(candidate, r.key, config.margin)
    ]
    eligible.sort(key=lambda r: r.key, reverse=True)
    victims: list[str] = []
    for r in eligible:
        if seats_short <= 0 and kv_short <= 0:
            break
        victims.append(r.request_id)
        seats_short -= 1
        kv_short -= r.kv_tokens
    return victims if victims and seats_short <= 0 and kv_short <= 0 else None
