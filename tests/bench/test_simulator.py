"""Engine simulator invariants: conservation, FCFS order, LTR vs FCFS at low and high load."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from ltr_sidecar.bench.engine_model import (
    A100_LLAMA3_8B_LINEAR_MS,
    H100_LLAMA2_7B_LINEAR_MS,
    PROFILES,
    get_profile,
)
from ltr_sidecar.bench.metrics import summarize
from ltr_sidecar.bench.simulator import simulate
from ltr_sidecar.bench.workload import WorkItem, poisson_workload
from ltr_sidecar.data.datasets import Example

A100 = get_profile("a100-llama3-8b")


def noisy_scores(items: list[WorkItem], sigma: float = 0.5, seed: int = 0) -> list[float]:
    """Imperfect predictor: -length × lognormal noise (higher score = shorter)."""
    rng = random.Random(seed)
    return [-w.output_tokens * rng.lognormvariate(0, sigma) for w in items]


def test_step_time_grows_with_batch_and_context() -> None:
    small = A100.step_time_s(1, 500)
    assert 0.010 < small < 0.016  # ~12 ms per decode step for Llama-3-8B on A100 (vLLM ballpark)
    assert A100.step_time_s(64, 64 * 500) > small
    assert A100.step_time_s(64, 64 * 2000) > A100.step_time_s(64, 64 * 500)
    assert A100.step_time_s(0, 0, [2000]) > A100.step_time_s(0, 0, [200])
    assert PROFILES["h100-llama3-8b"].step_time_s(64, 64 * 500) < A100.step_time_s(64, 64 * 500)
    with pytest.raises(ValueError, match="unknown engine profile"):
        get_profile("tpu")


@pytest.mark.parametrize("policy", ["fcfs", "ltr", "oracle"])
def test_conservation_every_request_finishes_with_its_tokens(
    synthetic_examples: list[Example], policy: str
) -> None:
    items = poisson_workload(synthetic_examples, rate=60.0, n=600, seed=4)
    sim = simulate(items, A100, policy, scores=noisy_scores(items))
    assert len(sim.results) == len(items)
    by_id = {w.request_id: w for w in items}
    for r in sim.results:
        w = by_id[r.request_id]
        assert r.output_tokens == w.output_tokens
        assert w.arrival_s <= r.first_token_s <= r.finish_s <= sim.end_s
        assert r.max_token_gap_s >= 0
    assert sim.steps >= max(w.output_tokens for w in items)


def test_kv_pressure_preempts_and_still_conserves(synthetic_examples: list[Example]) -> None:
    tight = replace(A100, kv_capacity_tokens=6000)
    items = poisson_workload(synthetic_examples, rate=50.0, n=300, seed=5)
    sim = simulate(items, tight, "fcfs")
    assert sim.preemptions > 0
    assert sorted(r.request_id for r in sim.results) == sorted(w.request_id for w in items)
    assert sum(r.output_tokens for r in sim.results) == sum(w.output_tokens for w in items)
    # a preempted request waits for re-admission: its largest token gap exceeds one step
    assert max(r.max_token_gap_s for r in sim.results) > 10 * A100.step_time_s(1, 100)


def test_oversized_request_is_a_clear_error() -> None:
    tiny = replace(A100, kv_capacity_tokens=100)
    with pytest.raises(ValueError, match="KV tokens"):
        simulate([WorkItem("x", "p", 200, 0.0, 10)], tiny)


def test_fcfs_serves_in_arrival_order() -> None:
    one_at_a_time = replace(A100, max_num_seqs=1)
    lengths = [50, 5, 30, 1, 20, 8]
    items = [WorkItem(f"r{i}", "p", n, 0.001 * i, 10) for i, n in enumerate(lengths)]
    sim = simulate(items, one_at_a_time, "fcfs")
    order = [r.request_id for r in sorted(sim.results, key=lambda r: r.first_token_s)]
    assert order == [w.request_id for w in items]
    oracle = simulate(items, one_at_a_time, "oracle")
    order = [r.request_id for r in sorted(oracle.results, key=lambda r: r.first_token_s)]
    # r0 is alone when it arrives; then shortest first
    assert order == ["r0", "r3", "r1", "r5", "r4", "r2"]


def test_policies_equal_at_very_low_load(synthetic_examples: list[Example]) -> None:
    items = poisson_workload(synthetic_examples, rate=0.5, n=60, seed=6)
    fcfs = summarize(simulate(items, A100, "fcfs").results)
    ltr = summarize(simulate(items, A100, "ltr", scores=noisy_scores(items)).results)
    assert ltr["mean_per_token_latency_s"] == pytest.approx(fcfs["mean_per_token_latency_s"], rel=0.01)


def test_ltr_beats_fcfs_at_high_load_and_oracle_beats_ltr(synthetic_examples: list[Example]) -> None:
    items = poisson_workload(synthetic_examples, rate=120.0, n=2400, seed=7)
    key = "mean_per_token_latency_s"
    fcfs = summarize(simulate(items, A100, "fcfs").results)[key]
    ltr = summarize(simulate(items, A100, "ltr", scores=noisy_scores(items)).results)[key]
    oracle = summarize(simulate(items, A100, "oracle").results)[key]
    assert ltr < 0.6 * fcfs
    assert oracle <= ltr


def test_starvation_threshold_caps_waiting(synthetic_examples: list[Example]) -> None:
    items = poisson_workload(synthetic_examples, rate=120.0, n=2400, seed=8)
    scores = noisy_scores(items)
    plain = summarize(simulate(items, A100, "ltr", scores=scores).results)
    guarded = summarize(simulate(items, A100, "ltr", scores=scores, starvation_threshold_s=8.0).results)
    assert guarded["max_waiting_time_s"] < plain["max_waiting_time_s"]


def test_scores_must_match_items() -> None:
    with pytest.raises(ValueError, match="scores"):
        simulate([WorkItem("x", "p", 5, 0.0, 3)], A100, "ltr", scores=[1.0, 2.0])


@pytest.mark.shared
def test_shipped_step_tables_match_vidur_profiles(shared_data: Path) -> None:
    """The constants in engine_model.py are the Vidur medians (non-attention ops, TP 1)."""
    import csv
    import statistics

    for name, table in (
        ("a100_Meta-Llama-3-8B_mlp.csv", A100_LLAMA3_8B_LINEAR_MS),
        ("h100_Llama-2-7b-hf_mlp.csv", H100_LLAMA2_7B_LINEAR_MS),
    ):
        with (shared_data / "vidur-profiling" / name).open() as fh:
            rows = [r for r in csv.DictReader(fh) if r["num_tensor_parallel_workers"] == "1"]
        ops = sorted({k.split(".")[1] for k in rows[0] if k.startswith("time_stats")} - {"emb"})
        by_tokens: dict[int, list[float]] = {}
        for r in rows:
            by_tokens.setdefault(int(r["num_tokens"]), []).append(
                sum(float(r[f"time_stats.{op}.median"]) for op in ops)
            )
        for tokens, ms in table:
            assert statistics.mean(by_tokens[tokens]) == pytest.approx(ms, abs=1e-3), (name, tokens)
