"""Per-request timings → per-policy metrics (the paper's definitions), pure functions.

- per-token latency = end-to-end latency ÷ output tokens (the paper's main metric);
- TTFT = first token time − arrival;
- max_waiting_time = max(TTFT, largest gap between consecutive tokens), per request; the policy's
  figure is the maximum over requests (how long the unluckiest request was kept waiting);
- throughput = output tokens ÷ (last finish − first arrival).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ltr_sidecar.stats import percentile


@dataclass(frozen=True)
class RequestResult:
    """Timings of one finished request (seconds on one clock; wall or virtual)."""

    request_id: str
    arrival_s: float
    first_token_s: float
    finish_s: float
    output_tokens: int
    max_token_gap_s: float = 0.0
    ok: bool = True
    error: str = ""

    @property
    def latency_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def per_token_latency_s(self) -> float:
        return self.latency_s / max(1, self.output_tokens)

    @property
    def max_waiting_time_s(self) -> float:
        return max(self.ttft_s, self.max_token_gap_s)


def summarize(results: Sequence[RequestResult]) -> dict[str, float]:
    """Policy-level metrics over the successful requests (contract keys end in `_s` / `_tok_s`)."""
    ok = [r for r in results if r.ok]
    if not ok:
        raise ValueError("no successful requests to summarize")
    ptl = [r.per_token_latency_s for r in ok]
    ttft = [r.ttft_s for r in ok]
    lat = [r.latency_s for r in ok]
    waits = [r.max_waiting_time_s for r in ok]
    span = max(r.finish_s for r in ok) - min(r.arrival_s for r in ok)
    tokens = sum(r.output_tokens for r in ok)
    return {
        "mean_per_token_latency_s": sum(ptl) / len(ptl),
        "p50_per_token_latency_s": percentile(ptl, 50),
        "p90_per_token_latency_s": percentile(ptl, 90),
        "p99_per_token_latency_s": percentile(ptl, 99),
        "mean_latency_s": sum(lat) / len(lat),
        "mean_ttft_s": sum(ttft) / len(ttft),
        "p90_ttft_s": percentile(ttft, 90),
        "max_waiting_time_s": max(waits),
        "p99_waiting_time_s": percentile(waits, 99),
        "throughput_tok_s": tokens / span if span > 0 else 0.0,
        "requests": float(len(ok)),
        "failed": float(len(results) - len(ok)),
        "output_tokens": float(tokens),
    }


def average_metrics(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per-key mean of several runs' metrics; counts (`requests`, `failed`, `output_tokens`) are summed."""
    if not runs:
        raise ValueError("no runs to average")
    summed = {"requests", "failed", "output_tokens"}
    return {k: sum(r[k] for r in runs) / (1 if k in summed else len(runs)) for k in runs[0]}


def add_ratios(policies: dict[str, dict[str, float]], key: str = "mean_per_token_latency_s") -> None:
    """Add `ratio_to_fcfs`, `ratio_to_oracle`, `ratio_to_srtf` in place where those baselines ran."""
    for base in ("fcfs", "oracle", "srtf"):
        ref = policies.get(base, {}).get(key)
        if not ref:
            continue
        for metrics in policies.values():
            metrics[f"ratio_to_{base}"] = metrics[key] / ref
