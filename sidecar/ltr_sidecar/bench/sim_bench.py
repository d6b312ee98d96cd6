"""Policies side by side on the engine simulator, at one rate or over a rate sweep."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ltr_sidecar.bench.calibration import LengthCalibration
from ltr_sidecar.bench.engine_model import EngineProfile
from ltr_sidecar.bench.metrics import RequestResult, add_ratios, summarize
from ltr_sidecar.bench.policies import PAPER_GUARD, BenchPolicy, Scorer, score_prompts
from ltr_sidecar.bench.preemption import PAPER, PreemptionConfig, make_estimator
from ltr_sidecar.bench.simulator import simulate
from ltr_sidecar.bench.workload import WorkItem


@dataclass(frozen=True)
class SimSettings:
    """Run-wide simulator options beyond the profile (preemptive policies use the first three)."""

    preemption: PreemptionConfig = field(default_factory=PreemptionConfig)
    calibration: LengthCalibration | None = None  # score -> expected tokens (learned estimators)
    prefix_caching: bool = False


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
    settings: SimSettings = SimSettings(),
) -> dict[str, PolicyRun]:
    """Simulate each policy on the same workload; metrics carry ratios to fcfs/oracle when present."""
    prompts = [w.prompt for w in items]
    scores_by_scorer = {
        name: score_prompts(scorers[name], prompts) for name in {p.scorer for p in policies if p.scorer}
    }
    lengths = [w.output_tokens for w in items]
    runs: dict[str, PolicyRun] = {}
    for pol in policies:
        scores = scores_by_scorer[pol.scorer] if pol.scorer else None
        preemption = estimator = None
        if pol.estimator is not None:
            preemption = PAPER if pol.guard == PAPER_GUARD else settings.preemption
            estimator = make_estimator(
                pol.estimator, lengths, scores, settings.calibration, preemption.rerank_every
            )
        sim = simulate(
            items,
            profile,
            pol.queue_policy,
            scores=scores,
            starvation_threshold_s=starvation_threshold_s if pol.starvation else 0.0,
            estimator=estimator,
            preemption=preemption,
            prefix_caching=settings.prefix_caching,
        )
        metrics = summarize(sim.results)
        metrics.update(
            preemptions=float(sim.preemptions),
            promotions=float(sim.promotions),
            engine_steps=float(sim.steps),
            priority_preemptions=float(sim.priority_preemptions),
            recomputed_tokens=float(sim.recomputed_tokens),
            reused_tokens=float(sim.reused_tokens),
            recompute_overhead=sim.recomputed_tokens / max(1.0, metrics["output_tokens"]),
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
    settings: SimSettings = SimSettings(),
) -> list[tuple[float, dict[str, PolicyRun]]]:
    """One `run_policies` per rate, in the given order."""
    out = []
    for rate in rates:
        runs = run_policies(make_items(rate), policies, scorers, profile, starvation_threshold_s, settings)
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
