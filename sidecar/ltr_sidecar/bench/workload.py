"""Replay workloads: (prompt, true output length, arrival time) triples.

Arrival times come from a Poisson process at a given rate, or from a real arrival trace (the Azure
LLM inference traces 2023) with prompts matched to trace slots by output-length rank: the i-th
shortest trace request gets the i-th shortest prompt, so the trace's length/arrival correlation is
kept while the prompts (and therefore the predictor's inputs) are real.

All builders are pure: examples and arrivals in, a sorted list of `WorkItem` out.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ltr_sidecar.data.datasets import Example, load_examples


@dataclass(frozen=True)
class WorkItem:
    """One request of a replay workload. `arrival_s` is relative to the start of the replay."""

    request_id: str
    prompt: str
    output_tokens: int
    arrival_s: float
    prompt_tokens: int


def approx_prompt_tokens(text: str) -> int:
    """Rough token count of a prompt (≈4 characters per token, English BPE), at least 1."""
    return max(1, math.ceil(len(text) / 4))


def poisson_arrivals(n: int, rate: float, seed: int = 0) -> list[float]:
    """`n` arrival times (seconds from 0) of a Poisson process with `rate` requests per second."""
    if n < 0:
        raise ValueError("n must be >= 0")
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a positive finite number of requests/s, got {rate!r}")
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def load_trace(path: str | Path) -> list[dict[str, float]]:
    """Read an Azure-style trace JSONL (`timestamp`, `input_tokens`, `output_tokens` per line)."""
    rows: list[dict[str, float]] = []
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rows.append(
                    {
                        "timestamp": float(rec["timestamp"]),
                        "input_tokens": int(rec["input_tokens"]),
                        "output_tokens": int(rec["output_tokens"]),
                    }
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a trace record ({exc})") from None
    rows.sort(key=lambda r: r["timestamp"])
    return rows


def sample_examples(examples: Sequence[Example], n: int, seed: int = 0) -> list[Example]:
    """`n` examples: a shuffled pass over all of them, repeated (with a new shuffle) when n > len."""
    if not examples:
        raise ValueError("no examples to sample from")
    rng = random.Random(seed)
    out: list[Example] = []
    while len(out) < n:
        batch = list(examples)
        rng.shuffle(batch)
        out.extend(batch[: n - len(out)])
    return out


def poisson_workload(
    examples: Sequence[Example], rate: float, n: int, seed: int = 0, max_output_tokens: int | None = None
) -> list[WorkItem]:
    """`n` requests drawn from `examples` arriving as a Poisson process at `rate` req/s."""
    chosen = sample_examples(examples, n, seed)
    return _make_items(chosen, poisson_arrivals(n, rate, seed + 1), max_output_tokens)


def trace_workload(
    examples: Sequence[Example],
    trace: Sequence[dict[str, float]],
    n: int,
    start_s: float = 0.0,
    time_scale: float = 1.0,
    seed: int = 0,
    max_output_tokens: int | None = None,
) -> list[WorkItem]:
    """`n` consecutive trace requests from `start_s` on, each given the prompt of equal length rank.

    `time_scale` > 1 compresses time (2.0 = twice the trace's request rate).
    """
    if time_scale <= 0:
        raise ValueError("time_scale must be > 0")
    window = [r for r in trace if r["timestamp"] >= start_s][:n]
    if len(window) < n:
        raise ValueError(f"trace has only {len(window)} requests after {start_s}s, {n} requested")
    chosen = sample_examples(examples, n, seed)
    by_len = sorted(chosen, key=lambda e: e.length)
    slots = sorted(range(n), key=lambda i: (window[i]["output_tokens"], i))
    matched: list[Example | None] = [None] * n
    for slot, example in zip(slots, by_len, strict=True):
        matched[slot] = example
    t0 = window[0]["timestamp"] if window else 0.0
    arrivals = [(r["timestamp"] - t0) / time_scale for r in window]
    return _make_items([m for m in matched if m is not None], arrivals, max_output_tokens)


def _make_items(
    examples: Sequence[Example], arrivals: Sequence[float], max_output_tokens: int | None
) -> list[WorkItem]:
    items = []
    for i, (ex, t) in enumerate(zip(examples, arrivals, strict=True)):
        out = max(1, round(ex.length))
        if max_output_tokens:  # None or 0: no cap
            out = min(out, max_output_tokens)
        items.append(WorkItem(f"r{i:05d}", ex.prompt, out, float(t), approx_prompt_tokens(ex.prompt)))
    items.sort(key=lambda w: (w.arrival_s, w.request_id))
    return items


def rescale(items: Sequence[WorkItem], rate: float) -> list[WorkItem]:
    """The same requests with arrival times stretched so the mean rate is `rate` req/s."""
    if len(items) < 2:
        return list(items)
    span = items[-1].arrival_s - items[0].arrival_s
    target = (len(items) - 1) / rate
    factor = target / span if span > 0 else 0.0
    return [replace(w, arrival_s=(w.arrival_s - items[0].arrival_s) * factor) for w in items]


def examples_from_file(path: str | Path, model_name: str | None = None) -> list[Example]:
    """Examples with a positive length from a data file or dataset directory (the shared loader).

    Lengths in words (most shared data) are used as token counts: fine for scheduling comparisons.
    """
    out = [e for e in load_examples(path, model_name) if e.prompt.strip() and e.length >= 1]
    if not out:
        raise ValueError(f"{path}: no usable (prompt, output length) examples")
    return out
