"""SidecarMetrics: names, labels and values after a scripted sequence; the online Kendall τ."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ltr_sidecar.server.metrics import OUTCOMES, SidecarMetrics
from ltr_sidecar.stats import kendall_tau_b


def _value(m: SidecarMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_scripted_sequence_values() -> None:
    m = SidecarMetrics()
    m.predictor_loaded("v1", "fast")
    m.request_queued(0)
    m.request_queued(0)
    m.request_queued(5)
    m.set_queue_size(3)
    m.set_max_concurrency(8)
    m.request_admitted(0.004)
    m.request_admitted(2.0)
    m.set_in_flight(2)
    m.request_finished("ok")
    m.request_finished("ok")
    m.request_finished("rejected_full")
    m.starvation_promoted()
    m.starvation_promoted(3)
    m.scoring_observed(0.003, 16)

    assert _value(m, "ltr_requests_queued_total", priority="0") == 2
    assert _value(m, "ltr_requests_queued_total", priority="5") == 1
    assert _value(m, "ltr_queue_size") == 3
    assert _value(m, "ltr_in_flight_requests") == 2
    assert _value(m, "ltr_max_concurrency") == 8
    assert _value(m, "ltr_queue_wait_seconds_count") == 2
    assert _value(m, "ltr_queue_wait_seconds_sum") == pytest.approx(2.004)
    assert _value(m, "ltr_queue_wait_seconds_bucket", le="0.005") == 1
    assert _value(m, "ltr_queue_wait_seconds_bucket", le="+Inf") == 2
    assert _value(m, "ltr_requests_total", outcome="ok") == 2
    assert _value(m, "ltr_requests_total", outcome="rejected_full") == 1
    for outcome in set(OUTCOMES) - {"ok", "rejected_full"}:  # exported at 0 from the start
        assert _value(m, "ltr_requests_total", outcome=outcome) == 0
    assert _value(m, "ltr_starvation_promotions_total") == 4
    assert _value(m, "ltr_scoring_seconds_count") == 1
    assert _value(m, "ltr_scoring_batch_size_sum") == 16
    assert _value(m, "ltr_scoring_batch_size_bucket", le="16.0") == 1
    assert _value(m, "ltr_scoring_batch_size_bucket", le="8.0") == 0
    assert _value(m, "ltr_predictor_info", version="v1", backbone="fast") == 1
    assert _value(m, "ltr_predictor_fallback_fcfs") == 0


def test_predictor_info_replaces_label_set_and_fallback() -> None:
    m = SidecarMetrics()
    assert _value(m, "ltr_predictor_fallback_fcfs") == 1  # nothing loaded yet
    m.predictor_loaded("v1", "fast")
    m.predictor_loaded("v2", "minilm")
    assert _value(m, "ltr_predictor_info", version="v1", backbone="fast") is None
    assert _value(m, "ltr_predictor_info", version="v2", backbone="minilm") == 1
    m.predictor_loaded("", "")
    assert _value(m, "ltr_predictor_info", version="v2", backbone="minilm") is None
    assert _value(m, "ltr_predictor_fallback_fcfs") == 1


def test_render_is_valid_prometheus_text_with_ltr_prefix() -> None:
    m = SidecarMetrics()
    m.request_finished("invalid")
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    expected = {
        "ltr_requests_queued",
        "ltr_queue_size",
        "ltr_in_flight_requests",
        "ltr_max_concurrency",
        "ltr_queue_wait_seconds",
        "ltr_requests",
        "ltr_starvation_promotions",
        "ltr_scoring_seconds",
        "ltr_scoring_batch_size",
        "ltr_predictor_info",
        "ltr_predictor_fallback_fcfs",
        "ltr_rank_kendall_tau",
        "ltr_rank_kendall_tau_samples",
        "ltr_queue_predicted_tokens",
        "ltr_request_predicted_output_tokens",
        "ltr_request_output_tokens",
    }
    assert expected <= set(families)
    assert all(name.startswith("ltr_") for name in families)
    assert families["ltr_requests"].type == "counter"
    assert families["ltr_queue_wait_seconds"].type == "histogram"
    assert families["ltr_request_predicted_output_tokens"].type == "histogram"
    assert families["ltr_queue_predicted_tokens"].type == "gauge"


def test_predicted_and_actual_output_tokens() -> None:
    m = SidecarMetrics()
    m.set_queue_predicted_tokens(120.5)
    assert _value(m, "ltr_queue_predicted_tokens") == 120.5
    m.set_queue_predicted_tokens(0.0)
    assert _value(m, "ltr_queue_predicted_tokens") == 0
    m.completion_observed(-1.0, 100, predicted_tokens=90.0)
    m.completion_observed(-2.0, 300)  # unknown prediction: only the actual tokens are observed
    m.completion_observed(-3.0, 9000, predicted_tokens=5000.0)
    assert _value(m, "ltr_request_output_tokens_count") == 3
    assert _value(m, "ltr_request_output_tokens_sum") == 9400
    assert _value(m, "ltr_request_predicted_output_tokens_count") == 2
    assert _value(m, "ltr_request_predicted_output_tokens_sum") == 5090
    # same buckets, 8 .. 8192 tokens in powers of 2
    for name in ("ltr_request_output_tokens_bucket", "ltr_request_predicted_output_tokens_bucket"):
        assert _value(m, name, le="8.0") == 0 and _value(m, name, le="8192.0") is not None
        assert _value(m, name, le="16384.0") is None
    assert _value(m, "ltr_request_output_tokens_bucket", le="128.0") == 1
    assert _value(m, "ltr_request_output_tokens_bucket", le="8192.0") == 2
    assert _value(m, "ltr_request_predicted_output_tokens_bucket", le="128.0") == 1
    assert m.online_kendall_tau()[1] == 3


def test_unknown_outcome_and_bad_window_are_clear_errors() -> None:
    m = SidecarMetrics()
    with pytest.raises(ValueError, match="'weird' is not a valid Outcome"):
        m.request_finished("weird")
    with pytest.raises(ValueError, match="online_window"):
        SidecarMetrics(online_window=3)


def test_own_registries_do_not_collide() -> None:
    shared = CollectorRegistry()
    a = SidecarMetrics(registry=shared)
    b = SidecarMetrics()
    a.request_finished("ok")
    assert b.registry.get_sample_value("ltr_requests_total", {"outcome": "ok"}) == 0
    assert shared.get_sample_value("ltr_requests_total", {"outcome": "ok"}) == 1


def test_online_tau_matches_kendall_tau_b_over_window() -> None:
    rng = random.Random(7)
    m = SidecarMetrics(online_window=50)
    history: list[tuple[float, int]] = []
    for i in range(9):
        score, tokens = rng.uniform(-3, 3), rng.randint(1, 500)
        m.completion_observed(score, tokens)
        history.append((score, tokens))
        assert m.online_kendall_tau() == (0.0, i + 1)  # fewer than 10: no τ yet
    for _ in range(120):  # wraps the 50-sample window more than twice; ties in tokens included
        tokens = rng.randint(1, 40)
        score = -tokens / 10 + rng.gauss(0, 1.0)  # good but noisy predictor: higher score = shorter
        m.completion_observed(score, tokens)
        history.append((score, tokens))
        window = history[-50:]
        expected = kendall_tau_b([-s for s, _ in window], [t for _, t in window])
        tau, n = m.online_kendall_tau()
        assert n == len(window)
        assert tau == pytest.approx(expected, abs=1e-12)
    assert 0.3 < tau < 1.0  # a useful predictor reads as positive
    assert m.registry.get_sample_value("ltr_rank_kendall_tau") == pytest.approx(tau)
    assert m.registry.get_sample_value("ltr_rank_kendall_tau_samples") == 50


def test_online_tau_sign_and_degenerate_cases() -> None:
    perfect = SidecarMetrics(online_window=20)
    reversed_ = SidecarMetrics(online_window=20)
    constant = SidecarMetrics(online_window=20)
    for tokens in range(1, 21):
        perfect.completion_observed(score=-float(tokens), output_tokens=tokens)  # higher score = shorter
        reversed_.completion_observed(score=float(tokens), output_tokens=tokens)
        constant.completion_observed(score=0.0, output_tokens=tokens)  # no information (FCFS fallback)
    assert perfect.online_kendall_tau() == (pytest.approx(1.0), 20)
    assert reversed_.online_kendall_tau() == (pytest.approx(-1.0), 20)
    assert constant.online_kendall_tau() == (0.0, 20)
