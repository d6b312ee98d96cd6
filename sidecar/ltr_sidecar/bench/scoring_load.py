"""`ltr bench scoring`: can the sidecar's scorer keep up with arrivals? Poisson arrivals at `--rate`
for `--duration` seconds go through the real `MicroBatchScorer` (one worker thread, micro-batching
window, `--threads` torch threads as the sidecar's `scoring_threads`), for each predictor side by side
on the same arrival times. Reports the time from arrival to score (p50/p99/max), the achieved
scoring rate and the mean batch size. Writes `<out>/<name>.{json,md}`.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ltr_sidecar.bench.report import write_result_files
from ltr_sidecar.data.datasets import SAMPLE_HELDOUT, load_examples
from ltr_sidecar.predictor.runtime.base import Predictor, set_scoring_threads
from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path, load_predictor
from ltr_sidecar.server.metrics import SidecarMetrics
from ltr_sidecar.server.scorer import MicroBatchScorer
from ltr_sidecar.stats import percentile


class _BatchRecorder(SidecarMetrics):
    """The sidecar's metrics, also keeping every scoring batch's size."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def scoring_observed(self, seconds: float, batch_size: int) -> None:
        self.batches.append(batch_size)
        super().scoring_observed(seconds, batch_size)


def arrivals(rate: float, duration: float, seed: int) -> list[float]:
    """Poisson arrival offsets (seconds) at `rate` per second within `duration`."""
    rng, t = random.Random(seed), 0.0
    out: list[float] = []
    while True:
        t += rng.expovariate(rate)
        if t >= duration:
            return out
        out.append(t)


async def drive(
    predictor: Predictor, prompts: Sequence[str], times: Sequence[float], window_s: float
) -> dict[str, Any]:
    """Send one prompt per arrival time through a fresh scorer; latencies and batch sizes."""
    metrics = _BatchRecorder()
    batches = metrics.batches
    scorer = MicroBatchScorer(window_s, metrics)
    scorer.predictor = predictor
    scorer.start()
    await scorer.score([prompts[0]])  # warm-up (first call allocates)
    batches.clear()
    latencies: list[float] = []
    start = time.perf_counter()

    async def one(i: int, at: float) -> None:
        await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
        t0 = time.perf_counter()
        await scorer.score([prompts[i % len(prompts)]])
        latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(one(i, at) for i, at in enumerate(times)))
    elapsed = time.perf_counter() - start
    await scorer.close()
    return {
        "requests": len(times),
        "scored_per_s": len(times) / elapsed,
        "arrival_to_score_ms_p50": percentile(latencies, 50),
        "arrival_to_score_ms_p99": percentile(latencies, 99),
        "arrival_to_score_ms_max": max(latencies),
        "mean_batch": sum(batches) / max(1, len(batches)),
    }


def render(result: dict[str, Any]) -> str:
    m = result["meta"]
    lines = [
        f"# Scoring under load ({m['device']})",
        "",
        f"Poisson arrivals at {m['rate']} req/s for {m['duration']} s through the sidecar's "
        f"`MicroBatchScorer` (window {m['window_ms']} ms, {m['threads']} torch thread(s)); "
        f"prompts: {m['data']}.",
        "",
        "| predictor | requests | scored/s | arrival→score p50 ms | p99 ms | max ms | mean batch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["predictors"].items():
        lines.append(
            f"| {name} | {r['requests']} | {r['scored_per_s']:.1f} | {r['arrival_to_score_ms_p50']:.2f} "
            f"| {r['arrival_to_score_ms_p99']:.2f} | {r['arrival_to_score_ms_max']:.1f} "
            f"| {r['mean_batch']:.2f} |"
        )
    return "\n".join([*lines, "", f"Run: `{m['command']}`", ""])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ltr bench scoring", description=__doc__.splitlines()[0])
    p.add_argument(
        "--predictor", action="append", default=[], help="artifact dir (repeatable; default: bundled)"
    )
    p.add_argument(
        "--data", default=str(SAMPLE_HELDOUT), help="prompts (default: the shipped held-out sample)"
    )
    p.add_argument("--model-name", default=None)
    p.add_argument("--rate", type=float, default=64.0, help="arrivals per second (64)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals (20)")
    p.add_argument("--window-ms", type=float, default=2.0, help="micro-batching window (sidecar default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (sidecar scoring_threads, 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--name", default="scoring-load")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        print("ltr bench scoring: error: --rate and --duration must be positive", file=sys.stderr)
        return 2
    set_scoring_threads(args.threads)
    prompts = [e.prompt for e in load_examples(args.data, args.model_name)]
    times = arrivals(args.rate, args.duration, args.seed)
    results: dict[str, Any] = {}
    for spec in args.predictor or [str(bundled_predictor_path())]:
        predictor = load_predictor(spec)
        name = f"{predictor.version} ({predictor.backbone})"
        print(
            f"[bench scoring] {name}: {len(times)} arrivals at {args.rate}/s ...", file=sys.stderr, flush=True
        )
        results[name] = asyncio.run(drive(predictor, prompts, times, args.window_ms / 1000))
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": f"CPU ({platform.machine()})",
        "rate": args.rate,
        "duration": args.duration,
        "window_ms": args.window_ms,
        "threads": args.threads,
        "data": Path(args.data).name,
        "command": "ltr bench scoring " + " ".join(argv),
    }
    result = {"meta": meta, "predictors": results}
    md = render(result)
    write_result_files(args.out, args.name, result, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
