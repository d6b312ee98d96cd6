"""RankQueue and policies (pure): bands, policy order, starvation promotion FIFO, removal, bounds."""

from __future__ import annotations

import pytest

from ltr_sidecar.scheduling import QueueFullError, QueueItem, RankQueue, get_policy


def item(
    rid: str, arrival: float, score: float = 0.0, priority: int = 0, expected: int | None = None
) -> QueueItem:
    return QueueItem(rid, arrival, score=score, priority=priority, expected_output_tokens=expected)


def drain(q: RankQueue, now: float) -> list[str]:
    out = []
    while (it := q.pop(now)) is not None:
        out.append(it.request_id)
    return out


def test_ltr_serves_highest_score_first_ties_by_arrival() -> None:
    q = RankQueue("ltr")
    for rid, t, s in [("a", 0, -5), ("b", 1, -1), ("c", 2, -9), ("d", 3, -1)]:
        q.push(item(rid, t, s))
    assert [i.request_id for i in q.ordered(4)] == ["b", "d", "a", "c"]
    assert drain(q, 4) == ["b", "d", "a", "c"]


def test_fcfs_and_oracle() -> None:
    q = RankQueue("fcfs")
    for rid, t, s in [("a", 0, -5), ("b", 1, -1), ("c", 2, -9)]:
        q.push(item(rid, t, s))
    assert drain(q, 3) == ["a", "b", "c"]
    q = RankQueue("oracle")
    for rid, t, e in [("a", 0, 30), ("b", 1, None), ("c", 2, 10)]:
        q.push(item(rid, t, expected=e))
    assert drain(q, 3) == ["c", "a", "b"]  # unhinted last


def test_bands_first_then_rank_within_band() -> None:
    q = RankQueue("ltr")
    for rid, s, p in [("low-short", -1, 0), ("high-long", -100, 2), ("mid", -5, 1), ("high-short", -2, 2)]:
        q.push(item(rid, 0, s, p))
    assert q.per_band() == {0: 1, 1: 1, 2: 2}
    assert drain(q, 1) == ["high-short", "high-long", "mid", "low-short"]


def test_starvation_promotes_overdue_fifo_ahead_of_better_scores() -> None:
    q = RankQueue("ltr", starvation_threshold=5.0)
    q.push(item("long1", 0.0, -100))
    q.push(item("long2", 1.0, -200))
    q.push(item("short", 6.5, -1))
    assert [i.request_id for i in q.ordered(7.0)] == ["long1", "long2", "short"]
    assert q.rank_of("short", 7.0) == 2 and q.rank_of("long2", 7.0) == 1
    assert drain(q, 7.0) == ["long1", "long2", "short"]
    assert q.promotions_total == 2


def test_starvation_never_crosses_bands_and_zero_disables() -> None:
    q = RankQueue("ltr", starvation_threshold=1.0)
    q.push(item("old-low", 0.0, -1, priority=0))
    q.push(item("new-high", 9.0, -50, priority=1))
    assert drain(q, 10.0) == ["new-high", "old-low"]
    q = RankQueue("ltr", starvation_threshold=0)
    q.push(item("old", 0.0, -100))
    q.push(item("new", 1000.0, -1))
    assert drain(q, 2000.0) == ["new", "old"] and q.promotions_total == 0


def test_remove_and_peek_wait() -> None:
    q = RankQueue("ltr", starvation_threshold=2.0)
    q.push(item("a", 0.0, -1))
    q.push(item("b", 1.0, -2))
    assert q.peek_wait(3.0) == 3.0
    assert q.remove("a") is not None and q.remove("a") is None
    assert "a" not in q and len(q) == 1 and q.peek_wait(3.0) == 2.0
    assert drain(q, 10.0) == ["b"] and q.peek_wait(10.0) == 0.0


def test_bounded_duplicates_and_bad_args() -> None:
    q = RankQueue("ltr", max_length=2)
    q.push(item("a", 0))
    with pytest.raises(ValueError, match="already queued"):
        q.push(item("a", 1))
    q.push(item("b", 1))
    with pytest.raises(QueueFullError, match="full"):
        q.push(item("c", 2))
    q.remove("a")
    q.push(item("c", 2))
    with pytest.raises(ValueError, match="unknown policy"):
        get_policy("sjf")
    with pytest.raises(ValueError):
        RankQueue("ltr", starvation_threshold=-1)


def test_rank_of_matches_ordered_under_mixed_state() -> None:
    q = RankQueue("ltr", starvation_threshold=3.0)
    import random

    rng = random.Random(7)
    for i in range(60):
        q.push(item(f"r{i}", i * 0.1, rng.uniform(-50, 0), priority=rng.choice([0, 1])))
    q.pop(4.0)  # promote some
    for rid in ("r5", "r17", "r33"):
        q.remove(rid)
    ordered = [i.request_id for i in q.ordered(5.0)]
    assert [q.rank_of(r, 5.0) for r in ordered] == list(range(len(ordered)))
