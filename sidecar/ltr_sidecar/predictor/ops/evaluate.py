"""Evaluation through one path for every predictor and baseline: τ-b against true lengths plus
scoring latency (single request p50/p99 and batched per-request)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from ltr_sidecar.data.datasets import Example
from ltr_sidecar.predictor.runtime.base import Predictor
from ltr_sidecar.stats import kendall_tau_b, percentile


def latency(
    predictor: Predictor, prompts: Sequence[str], single_n: int = 200, batch: int = 64
) -> dict[str, float]:
    """Score latency in ms: per single-prompt call (p50/p99) and per request when batched."""
    sample = list(prompts[:single_n])
    if not sample:
        return {
            "score_ms_p50": float("nan"),
            "score_ms_p99": float("nan"),
            "batch_ms_per_request": float("nan"),
        }
    predictor.score(sample[:2])  # warm-up
    single = []
    for p in sample:
        t = time.perf_counter()
        predictor.score([p])
        single.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    for i in range(0, len(sample), batch):
        predictor.score(sample[i : i + batch])
    batched = (time.perf_counter() - t) * 1000 / len(sample)
    return {
        "score_ms_p50": round(statistics.median(single), 4),
        "score_ms_p99": round(percentile(single, 99), 4),
        "batch_ms_per_request": round(batched, 4),
    }


def evaluate(
    predictor: Predictor, examples: Sequence[Example], with_latency: bool = True, single_n: int = 200
) -> dict[str, Any]:
    """τ-b of the predictor's scores vs shortness on `examples` (+ latency figures)."""
    if len(examples) < 2:
        raise ValueError(f"need at least 2 examples to evaluate, got {len(examples)}")
    prompts = [e.prompt for e in examples]
    scores = predictor.score(prompts)
    if len(scores) != len(prompts):
        raise RuntimeError(f"predictor returned {len(scores)} scores for {len(prompts)} prompts")
    tau = kendall_tau_b(scores, [-e.length for e in examples])
    out: dict[str, Any] = {
        "kendall_tau": round(tau, 4),
        "n": len(examples),
        "version": predictor.version,
        "backbone": predictor.backbone,
    }
    if with_latency:
        out.update(latency(predictor, prompts, single_n=single_n))
    return out
