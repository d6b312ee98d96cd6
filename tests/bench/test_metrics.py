"""Metrics math on hand-computed cases."""

from __future__ import annotations

import pytest

from ltr_sidecar.bench.metrics import RequestResult, add_ratios, average_metrics, percentile, summarize


def test_per_token_latency_and_waiting_time_by_hand() -> None:
    # arrives at 1.0, first token at 3.0, done at 6.0 with 4 tokens, largest gap 1.5 s
    r = RequestResult(
        "a", arrival_s=1.0, first_token_s=3.0, finish_s=6.0, output_tokens=4, max_token_gap_s=1.5
    )
    assert r.latency_s == 5.0
    assert r.ttft_s == 2.0
    assert r.per_token_latency_s == pytest.approx(1.25)
    assert r.max_waiting_time_s == 2.0  # max(TTFT 2.0, gap 1.5)
    gap_bound = RequestResult("b", 0.0, 0.5, 10.0, 10, max_token_gap_s=4.0)
    assert gap_bound.max_waiting_time_s == 4.0  # a stall mid-stream dominates a quick first token


def test_summarize_by_hand() -> None:
    results = [
        RequestResult("a", 0.0, 1.0, 2.0, 2),  # 1.0 s/token
        RequestResult("b", 1.0, 2.0, 5.0, 1),  # 4.0 s/token, TTFT 1
        RequestResult("c", 2.0, 6.0, 12.0, 10, max_token_gap_s=5.0),  # 1.0 s/token, TTFT 4, wait 5
        RequestResult("d", 3.0, 3.0, 3.0, 1, ok=False, error="boom"),  # excluded
    ]
    m = summarize(results)
    assert m["mean_per_token_latency_s"] == pytest.approx(2.0)
    assert m["p50_per_token_latency_s"] == pytest.approx(1.0)
    assert m["mean_ttft_s"] == pytest.approx((1 + 1 + 4) / 3)
    assert m["max_waiting_time_s"] == pytest.approx(5.0)
    assert m["throughput_tok_s"] == pytest.approx(13 / 12)  # 13 tokens over [0, 12]
    assert m["requests"] == 3 and m["failed"] == 1


def test_percentile_interpolates() -> None:
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([5], 99) == 5
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == pytest.approx(9.1)
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summarize_rejects_all_failed() -> None:
    with pytest.raises(ValueError, match="no successful"):
        summarize([RequestResult("a", 0, 1, 2, 1, ok=False)])


def test_ratios_to_fcfs_and_oracle() -> None:
    pol = {
        "fcfs": {"mean_per_token_latency_s": 4.0},
        "ltr": {"mean_per_token_latency_s": 1.0},
        "oracle": {"mean_per_token_latency_s": 0.8},
    }
    add_ratios(pol)
    assert pol["ltr"]["ratio_to_fcfs"] == pytest.approx(0.25)
    assert pol["ltr"]["ratio_to_oracle"] == pytest.approx(1.25)
    assert pol["fcfs"]["ratio_to_fcfs"] == 1.0


def test_average_metrics_means_rates_and_sums_counts() -> None:
    runs = [
        {"mean_per_token_latency_s": 1.0, "requests": 10.0, "failed": 0.0},
        {"mean_per_token_latency_s": 3.0, "requests": 10.0, "failed": 1.0},
    ]
    avg = average_metrics(runs)
    assert avg == {"mean_per_token_latency_s": 2.0, "requests": 20.0, "failed": 1.0}
    with pytest.raises(ValueError):
        average_metrics([])
