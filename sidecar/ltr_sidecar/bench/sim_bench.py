"""Policies side by side on the engine simulator, at one rate or over a rate sweep."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ltr_sidecar.bench.engine_model import EngineProfile
from ltr_sidecar.bench.metrics import RequestResult, add_ratios, summarize
from ltr_sidecar.bench.policies import BenchPolicy, Scorer, score_prompts
from ltr_sidecar.bench.simulator import simulate
from ltr_sidecar.bench.workload import WorkItem


@dataclass(frozen=True)
class PolicyRun:
    """Metrics and per-request results of one policy."""

    metrics: dict[str, float]
    results: list[RequestResult]


def run_policies(
    items: Sequence[WorkItem],
    policies: Sequence[BenchPolicy],
    scorers: Mapping[str, Scorer],
    profile: EngineProfile,
    starvation_threshold_s: float,
) -> dict[str, PolicyRun]:
    """Simulate each policy on the same workload; metrics carry ratios to fcfs/oracle when present."""
    prompts = [w.prompt for w in items]
    scores_by_scorer = {
        name: score_prompts(scorers[name], prompts) for name in {p.scorer for p in policies if p.scorer}
    }
    runs: dict[str, PolicyRun] = {}
    for pol in policies:
        sim = simulate(
            items,
            profile,
            pol.queue_policy,
            scores=scores_by_scorer[pol.scorer] if pol.scorer else None,
            starvation_threshold_s=starvation_threshold_s if pol.starvation else 0.0,
        )
        metrics = summarize(sim.results)
        metrics.update(
            preemptions=float(sim.preemptions),
            promotions=float(sim.promotions),
            engine_steps=float(sim.steps),
        )
        runs[pol.name] = PolicyRun(metrics, sim.results)
    add_ratios({n: r.metrics for n, r in runs.items()})
    return runs


def sweep(
    make_items: Callable[[float], list[WorkItem]],
    rates: Sequence[float],
    policies: Sequence[BenchPolicy],
    scorers: Mapping[str, Scorer],
    profile: EngineProfile,
    starvation_threshold_s: float,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[float, dict[str, PolicyRun]]]:
    """One `run_policies` per rate, in the given order."""
    out = []
    for rate in rates:
        runs = run_policies(make_items(rate), policies, scorers, profile, starvation_threshold_s)
        out.append((rate, runs))
        if progress:
            ratio = runs["ltr"].metrics.get("ratio_to_fcfs") if "ltr" in runs else None
            progress(
                f"rate {rate:g} req/s: {len(runs)} policies simulated"
                + (f", ltr/fcfs {ratio:.3f}" if ratio else "")
            )
    return out


def sweep_rows(runs: Sequence[tuple[float, Mapping[str, PolicyRun]]]) -> list[dict[str, Any]]:
    """JSON rows `[{"rate": r, "policies": {name: metrics}}, ...]`."""
    return [
        {"rate": rate, "policies": {n: r.metrics for n, r in by_policy.items()}} for rate, by_policy in runs
    ]
