"""Replay through the REAL sidecar (gRPC) to the real tiny CPU engine (transformers serve)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ltr_sidecar.bench.metrics import summarize
from ltr_sidecar.bench.policies import select_policies
from ltr_sidecar.bench.replay import run_policy
from ltr_sidecar.bench.workload import WorkItem
from ltr_sidecar.devtools.tiny_engine import start_engine
from ltr_sidecar.predictor.runtime.base import PromptLengthPredictor

pytestmark = pytest.mark.slow

LENGTHS = [60, 4, 40, 8, 24, 2, 12, 30]


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[tuple[str, str]]:
    """An engine of its own: these tests compare timings, and the suite-wide engine may still be
    finishing streams that earlier tests abandoned (the engine does not abort on disconnect)."""
    engine = start_engine(tiny_model_dir, threads=1)
    yield engine.url, engine.model
    engine.stop()


def burst() -> list[WorkItem]:
    """r0 first, the rest 50 ms later while r0 runs: they queue, and the policy orders them."""
    return [
        WorkItem(
            f"r{i}", f"prompt number {i} " + "word " * (3 * i + 1), n, 0.0 if i == 0 else 0.05 + 0.002 * i, 8
        )
        for i, n in enumerate(LENGTHS)
    ]


def completion_order(results: list) -> list[str]:
    return [r.request_id for r in sorted(results, key=lambda r: r.finish_s)]


def test_fcfs_and_oracle_order_through_the_real_sidecar(engine: tuple[str, str]) -> None:
    url, model = engine
    items = burst()
    fcfs_pol, oracle_pol = select_policies(["fcfs", "oracle"])
    fcfs = run_policy(
        url, model, fcfs_pol, None, items, max_concurrency=1, starvation_threshold_s=0, warmup=2
    )
    oracle = run_policy(
        url, model, oracle_pol, None, items, max_concurrency=1, starvation_threshold_s=0, warmup=0
    )
    for results in (fcfs, oracle):
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        assert [r.output_tokens for r in sorted(results, key=lambda r: r.request_id)] == [
            w.output_tokens for w in sorted(items, key=lambda w: w.request_id)
        ]
    assert completion_order(fcfs) == [w.request_id for w in items]
    expected = ["r0"] + [w.request_id for w in sorted(items[1:], key=lambda w: w.output_tokens)]
    assert completion_order(oracle) == expected
    assert summarize(oracle)["mean_per_token_latency_s"] < summarize(fcfs)["mean_per_token_latency_s"]


def test_predictor_scores_order_the_queue(engine: tuple[str, str]) -> None:
    """Prompt-length SJF: the prompts here grow with i, so service follows request index."""
    url, model = engine
    items = burst()
    pol = select_policies(["prompt-length"])[0]
    res = run_policy(
        url, model, pol, PromptLengthPredictor(), items, max_concurrency=1, starvation_threshold_s=0, warmup=0
    )
    assert all(r.ok for r in res)
    assert completion_order(res) == [w.request_id for w in items]
    assert all(r.max_waiting_time_s >= r.ttft_s > 0 for r in res)
