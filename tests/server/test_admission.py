"""Admission limits: fixed, and the `auto` AIMD controller (pure, time passed in)."""

from __future__ import annotations

import pytest

from ltr_sidecar.server.admission import Admission, AutoTuning


def test_fixed_limit_never_changes() -> None:
    a = Admission(3)
    assert a.has_room(2) and not a.has_room(3)
    for t in range(10):
        a.observe_saturation(3, 10)
        a.observe_ttft(5.0 if t % 2 else 0.01)
        assert a.update(float(t)) == 3
    with pytest.raises(ValueError):
        Admission(0)
    with pytest.raises(ValueError):
        Admission("lots")  # type: ignore[arg-type]


def test_auto_grows_while_engine_keeps_up_and_only_when_saturated() -> None:
    a = Admission("auto", AutoTuning(initial=4, interval_s=1.0))
    a.update(0.0)
    a.observe_ttft(0.010)
    assert a.update(1.0) == 4  # not saturated: no reason to grow
    for t in range(2, 8):
        a.observe_saturation(in_flight=a.limit, queued=5)
        a.observe_ttft(0.012)
        a.update(float(t))
    assert a.limit == 10 and a.decisions["grow"] == 6


def test_auto_shrinks_when_ttft_rises_above_baseline() -> None:
    a = Admission("auto", AutoTuning(initial=16, interval_s=1.0))
    a.update(0.0)
    a.observe_ttft(0.010)
    a.update(1.0)
    for t in range(2, 5):
        a.observe_saturation(a.limit, 3)
        a.observe_ttft(0.5)  # 50x baseline: the engine queues internally
        a.update(float(t))
    assert a.limit == 6 and a.decisions["shrink"] == 3  # 16 → 12 → 9 → 6
    assert a.update(4.5) == 6  # no decision within interval_s


def test_auto_uses_engine_waiting_gauge_when_present_and_respects_bounds() -> None:
    a = Admission("auto", AutoTuning(initial=2, minimum=2, maximum=3, interval_s=0.1))
    a.update(0.0)
    for t in range(1, 6):
        a.observe_engine_waiting(0.0)
        a.observe_saturation(a.limit, 1)
        a.update(t * 0.2)
    assert a.limit == 3  # capped at maximum
    for t in range(6, 12):
        a.observe_engine_waiting(4.0)
        a.update(t * 0.2)
    assert a.limit == 2  # floored at minimum


def test_auto_judges_ttft_against_the_engines_step_time() -> None:
    a = Admission("auto", AutoTuning(initial=8, interval_s=1.0, ttft_ratio=4.0, ttft_margin_s=0.01))
    a.update(0.0)
    a.observe_tpot(0.050)  # a big batch: 50 ms per step
    a.observe_saturation(8, 4)
    a.observe_ttft(0.120)  # 2.4 steps: admitted promptly, not queued in the engine
    assert a.update(1.0) == 9 and a.congested() is None  # samples consumed by the decision
    a.observe_ttft(0.400)  # 8 steps late: queued inside the engine
    assert a.congested() is True
    assert a.update(2.0) == 6
