"""Workload generation: Poisson arrivals, trace matching by length rank, data loading."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from ltr_sidecar.bench.predictors import split_holdout
from ltr_sidecar.bench.workload import (
    load_trace,
    poisson_arrivals,
    poisson_workload,
    rescale,
    trace_workload,
)
from ltr_sidecar.data.datasets import Example


def test_poisson_rate_and_exponential_gaps() -> None:
    times = poisson_arrivals(20_000, rate=8.0, seed=3)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert statistics.mean(gaps) == pytest.approx(1 / 8, rel=0.03)
    # exponential: the standard deviation equals the mean
    assert statistics.pstdev(gaps) == pytest.approx(1 / 8, rel=0.05)
    assert times == sorted(times)
    assert poisson_arrivals(50, 8.0, seed=3) == times[:50]  # deterministic per seed


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_poisson_rejects_bad_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        poisson_arrivals(10, rate)


def test_poisson_workload_items(synthetic_examples: list[Example]) -> None:
    items = poisson_workload(synthetic_examples, rate=4.0, n=500, seed=1, max_output_tokens=300)
    assert len(items) == 500
    assert len({w.request_id for w in items}) == 500
    assert all(1 <= w.output_tokens <= 300 for w in items)
    assert [w.arrival_s for w in items] == sorted(w.arrival_s for w in items)
    # every example is used before any repeats (shuffled passes)
    assert len({w.prompt for w in items[:200]} | {w.prompt for w in items}) == 200
    assert all(w.prompt_tokens >= 1 for w in items)


def test_trace_matching_by_length_rank(tmp_path: Path) -> None:
    trace_file = tmp_path / "trace.jsonl"
    rows = [
        {"timestamp": 10.0 + i, "input_tokens": 100, "output_tokens": out}
        for i, out in enumerate([500, 20, 300, 80, 1000])
    ]
    trace_file.write_text("\n".join(json.dumps(r) for r in reversed(rows)) + "\n")
    trace = load_trace(trace_file)
    assert [r["timestamp"] for r in trace] == sorted(r["timestamp"] for r in trace)
    examples = [Example(f"p{n}", float(n)) for n in (7, 900, 40, 150, 60)]
    items = trace_workload(examples, trace, n=5, time_scale=2.0)
    # rank of the trace's output length == rank of the prompt's true length, arrivals kept (÷ 2)
    assert [w.output_tokens for w in items] == [150, 7, 60, 40, 900]
    assert [w.arrival_s for w in items] == [0.0, 0.5, 1.0, 1.5, 2.0]
    with pytest.raises(ValueError, match="only 5 requests"):
        trace_workload(examples, trace, n=6)


def test_trace_file_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1"):
        load_trace(bad)


def test_rescale_sets_mean_rate(synthetic_examples: list[Example]) -> None:
    items = rescale(poisson_workload(synthetic_examples, 2.0, 101, seed=2), rate=10.0)
    assert items[0].arrival_s == 0.0
    assert items[-1].arrival_s == pytest.approx(10.0)


def test_holdout_split_is_disjoint_by_prompt(synthetic_examples: list[Example]) -> None:
    doubled = synthetic_examples + [Example(e.prompt, e.length + 1) for e in synthetic_examples]
    train, held = split_holdout(doubled, 0.2, seed=0)
    assert not {e.prompt for e in train} & {e.prompt for e in held}
    assert len({e.prompt for e in held}) == 40
    with pytest.raises(ValueError):
        split_holdout(doubled, 1.5)


@pytest.mark.shared
def test_azure_trace_with_alpaca_prompts(shared_data: Path) -> None:
    from ltr_sidecar.bench.workload import examples_from_file

    alpaca = shared_data / "alpaca-eval" / "responses" / "Meta-Llama-3-8B-Instruct.jsonl"
    examples = examples_from_file(alpaca)
    trace = load_trace(shared_data / "azure-llm-inference-2023" / "conv.jsonl")
    items = trace_workload(examples, trace, n=400, start_s=60.0)
    window = [r for r in trace if r["timestamp"] >= 60.0][:400]
    by_time = sorted(items, key=lambda w: w.arrival_s)
    # same rank order of lengths as the trace slots (ties aside): Spearman-like check on ranks
    trace_rank = sorted(range(400), key=lambda i: (window[i]["output_tokens"], i))
    lengths = [by_time[i].output_tokens for i in trace_rank]
    assert lengths == sorted(lengths)
    assert by_time[-1].arrival_s == pytest.approx(window[-1]["timestamp"] - window[0]["timestamp"])
